"""The built image, run as `docker run` would run it: podman, the image's own CMD, HEALTHCHECK, USER and VOLUME.

Run by tests/deploy/container/run.py (`make test-container`), which builds the image and starts this module inside a
private network namespace: every container joins it, so the container's 127.0.0.1 is ours, the fake GitHub
served here is reachable at 127.0.0.1 from inside, and the image's port 8080 is free. Not collected by `make test`
(the file name does not match test_*.py), since it needs root, podman and a built image.

Every container runs with a read-only root filesystem, the state volume and a tmpfs on /tmp only, so every check
below also shows that hookbot needs nothing else writable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.fake_github import FakeGitHub
from tests.helpers import fixture_bytes, github_headers

IMAGE = os.environ.get("HOOKBOT_TEST_IMAGE", "")
# Strong enough for any start-up check on the secret (hookbot refuses short ones).
SECRET = hashlib.sha256(b"hookbot container test secret").hexdigest()
STATE = "/var/lib/hookbot"
URL = "http://127.0.0.1:8080"
DEADLINE = 90.0  # seconds to wait for a condition: generous, the machine is shared

pytestmark = pytest.mark.skipif(not IMAGE, reason="run through `make test-container`, which builds the image")


def podman(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *argv], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def wait_for(
    condition: Callable[[], bool],
    what: str,
    explain: Callable[[], str] = str,
    hopeless: Callable[[], bool] = lambda: False,
) -> None:
    """Poll until ``condition`` holds; fail, saying what did not happen, after DEADLINE or as soon as
    ``hopeless`` says it never will (a container that exited)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if hopeless():
            raise AssertionError(f"{what}: it never will\n{explain()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE:.0f} s\n{explain()}")
        time.sleep(0.2)


def get_json(path: str) -> Any:
    with urllib.request.urlopen(URL + path, timeout=5) as response:
        return json.load(response)


def healthz_answers() -> bool:
    try:
        return bool(get_json("/healthz")["status"] == "ok")
    except (OSError, ValueError):
        return False


def post_delivery(fixture: str, event: str) -> int:
    body = fixture_bytes(fixture)
    request = urllib.request.Request(URL + "/webhook", body, github_headers(body, event, secret=SECRET))
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@dataclass
class StallingGitHub(FakeGitHub):
    """The fake GitHub, but while ``stalling`` a request for issue comments is held unanswered (and listed in
    ``stalled``): a delivery in progress that SIGTERM finds still waiting on GitHub."""

    stalling: bool = False
    stalled: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.stalling and request.path.endswith("/comments"):
            self.stalled.append(f"{request.method} {request.path}")
            while self.stalling:
                await asyncio.sleep(0.1)
            return web.json_response({"message": "stalled request released"}, status=503)
        return await super().handle(request)


@dataclass
class ServedFake:
    fake: StallingGitHub
    url: str


@pytest.fixture
def github() -> Iterator[ServedFake]:
    """The fake GitHub on this namespace's loopback, served from a thread so that the checks can block."""
    fake = StallingGitHub()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield ServedFake(fake, f"http://127.0.0.1:{port}")
    finally:
        fake.stalling = False
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


class Containers:
    """Containers and volumes one check makes; all removed at its end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.made: list[str] = []
        self.volumes: list[str] = []

    def volume(self) -> str:
        name = f"{self.name}-state-{len(self.volumes)}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def start(self, volume: str, env: dict[str, str]) -> str:
        """The image's own CMD in this namespace, with only the volume and /tmp writable."""
        name = f"{self.name}-{len(self.made)}"
        self.made.append(name)
        environment = [f"--env={key}={value}" for key, value in env.items()]
        network = f"--network=ns:/proc/{os.getpid()}/ns/net"
        podman(
            "run", "--detach", "--name", name, network, "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
            "--volume", f"{volume}:{STATE}", *environment, IMAGE,
        )  # fmt: skip
        wait_for(healthz_answers, f"{name} answering /healthz", lambda: self.logs(name), lambda: self.exited(name))
        return name

    def exited(self, name: str) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true"

    def logs(self, name: str) -> str:
        return podman("logs", name, check=False).stderr[-4000:]

    def remove(self) -> None:
        for name in self.made:
            podman("rm", "--force", "--time", "0", name, check=False)
        for name in self.volumes:
            podman("volume", "rm", "--force", name, check=False)


@pytest.fixture
def containers(request: pytest.FixtureRequest) -> Iterator[Containers]:
    made = Containers(f"hookbot-check-{os.getpid()}-{request.node.name.replace('_', '-')[:40]}")
    try:
        yield made
    finally:
        made.remove()


def live_env(github: ServedFake) -> dict[str, str]:
    """A bot that acts (a token), talking to the fake GitHub on the host side of the shared loopback."""
    return {"GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_TOKEN": "ghp_container_check", "GITHUB_API_URL": github.url}


def host_uid(container: str) -> int:
    """The real uid of the container's main process, read from the host's /proc (rootful podman maps no uids)."""
    pid = podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
    with open(f"/proc/{pid}/status") as status:
        uid_line = next(line for line in status if line.startswith("Uid:"))
    return int(uid_line.split()[1])


def test_serves_healthz_passes_its_healthcheck_as_uid_10001_on_a_read_only_root(containers: Containers) -> None:
    name = containers.start(containers.volume(), {"GITHUB_WEBHOOK_SECRET": SECRET})
    assert get_json("/healthz")["pending"] == 0
    healthcheck = podman("healthcheck", "run", name, check=False)
    assert healthcheck.returncode == 0, f"the image's HEALTHCHECK failed: {healthcheck.stdout}{healthcheck.stderr}"
    assert host_uid(name) == 10001
    # The root filesystem really is read-only, and the volume really is where the state went.
    writes = podman("exec", name, "python", "-c", "open('/opt/hookbot/probe', 'w')", check=False)
    assert writes.returncode != 0 and "Read-only file system" in writes.stderr
    listing = podman("exec", name, "python", "-c", f"import os; print(sorted(os.listdir('{STATE}')))").stdout
    assert "inbox" in listing, listing


def test_a_signed_issues_opened_is_accepted_and_greeted_through_github(
    containers: Containers, github: ServedFake
) -> None:
    name = containers.start(containers.volume(), live_env(github))
    payload = json.loads(fixture_bytes("github/issues.opened.json"))
    assert post_delivery("github/issues.opened.json", "issues") == 202
    wait_for(lambda: len(github.fake.posted_comments()) == 1, "the greeter's comment at the fake GitHub")
    path, body = github.fake.posted_comments()[0]
    assert path == f"/repos/{payload['repository']['full_name']}/issues/{payload['issue']['number']}/comments"
    assert f"@{payload['issue']['user']['login']}" in body
    assert all(r.headers["Authorization"] == "token ghp_container_check" for r in github.fake.requests), name


def test_docker_stop_mid_delivery_exits_0_and_the_next_container_finishes_it_once(
    containers: Containers, github: ServedFake
) -> None:
    volume = containers.volume()
    first = containers.start(volume, live_env(github))
    github.fake.stalling = True
    assert post_delivery("github/issues.opened.json", "issues") == 202
    wait_for(lambda: bool(github.fake.stalled), "the delivery reaching the (stalled) fake GitHub")

    started = time.monotonic()
    podman("stop", "--time", "10", first)  # docker stop: SIGTERM, then SIGKILL after 10 s (exit code 137)
    print(f"\nstop with a delivery in progress took {time.monotonic() - started:.1f} s")
    state = json.loads(podman("inspect", "--format", "{{json .State}}", first).stdout)
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']} (137: killed, SIGTERM did not stop it)"
    assert github.fake.posted_comments() == []

    github.fake.stalling = False
    containers.start(volume, live_env(github))
    wait_for(lambda: len(github.fake.posted_comments()) == 1, "the second container finishing the delivery")
    wait_for(lambda: get_json("/healthz")["pending"] == 0, "the journal emptied")
    assert len(github.fake.posted_comments()) == 1, "the delivery ran more than once"


def test_the_image_holds_no_test_tools_and_its_size_is_printed() -> None:
    # Test tools, and the installers that the build stage used and removed.
    tools = ("pytest", "moto", "mypy", "pip", "setuptools")
    probe = f"import importlib.util as u; print([m for m in {tools!r} if u.find_spec(m)])"
    found = podman("run", "--rm", "--network=none", IMAGE, "python", "-c", probe).stdout.strip()
    assert found == "[]", f"the image's python can import {found}"
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB")
