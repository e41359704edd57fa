"""Fixtures that start real protocol peers on loopback: a fake GitHub API and moto in server mode."""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestServer

from tests.fake_github import FakeGitHub

if TYPE_CHECKING:
    from tests.processes import Server


@pytest.fixture
async def fake_github(aiohttp_server: Callable[..., object]) -> AsyncIterator[tuple[FakeGitHub, str]]:
    """A recording fake GitHub API; yields the fake and its base URL (what GITHUB_API_URL should be)."""
    fake = FakeGitHub()
    server: TestServer = await aiohttp_server(fake.app())  # type: ignore[misc]
    yield fake, str(server.make_url("")).rstrip("/")


HANDED_OUT: set[int] = set()  # every port free_port gave in this session: never given twice


def free_port() -> int:
    """A loopback port free now, and below the kernel's ephemeral range.

    Tests kill a server and restart it on the same port; a port from the ephemeral range (what binding port 0
    gives) can meanwhile be handed to any outgoing connection on the machine, and the restart then fails with
    "Address already in use". Ports below that range are only ever taken by an explicit bind. No port is handed out
    twice in a session: two servers made before either binds (a crash test's restart, prepared in advance) must not
    get the same one.
    """
    low = ephemeral_range_start()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        if port in HANDED_OUT:  # free now, but perhaps promised to a server of this session that has not bound it yet
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # a crowded machine: any free port
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode, shared by the session; boto3 finds it through AWS_ENDPOINT_URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def moto(moto_server: str) -> str:
    """A clean moto for one test (its state is reset through moto's own API)."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return moto_server


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """`hookbot serve` subprocesses a test starts (append them); any still running at the end are killed."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process is not None and server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


@pytest.fixture(autouse=True)
def keep_root_logging() -> Iterator[None]:
    """Commands run in-process install their own JSON log handler on stderr; put the root logger back after each
    test so later tests do not write to a stream pytest has already closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run `bot.cli.main` in-process as a new user would: no GitHub or hookbot variables, in an empty directory
    (so no ./hookbot.toml is found), with state under tmp_path; returns that directory."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "HOOKBOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOOKBOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
