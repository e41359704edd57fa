"""Issue 12: exec passes data, never options; keeps the secrets it hands out; runs each hook once per delivery.

Real child processes through the real Dispatcher, and the JSON log formatter hookbot writes its lines with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.config import load_settings
from bot.delivery import Delivery
from bot.dispatch import DispatchResult
from bot.logs import JsonFormatter
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import SECRET, fixture_bytes

DEPLOY_KEY = "dk-7f3a9c2e51b84d06"  # what a hook gets through `env`; it must come back nowhere

# Appends one line per run to the file it is given, and prints its arguments.
COUNTER = """\
import pathlib, sys
with pathlib.Path(sys.argv[1]).open("a") as fh:
    fh.write("run\\n")
print(sys.argv[2:])
"""

# Starts a process in its own group (stdout and stderr closed, so the hook is done at once) and exits 0.
DETACHER = """\
import pathlib, subprocess, sys
child = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
"""

Build = Callable[[str], Runtime]


@pytest.fixture
async def build(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Build]:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_token_value")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GITHUB_API_URL", fake_github[1])
    monkeypatch.setenv("HOOKBOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEPLOY_KEY", DEPLOY_KEY)
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


def hook_toml(command: list[str], **extra: Any) -> str:
    lines = ["[[exec.hooks]]", 'events = ["issues.opened"]', f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def issue_titled(title: str) -> Delivery:
    payload = json.loads(fixture_bytes("github/issues.opened.json"))
    payload["issue"]["title"] = title
    return Delivery("issues", str(uuid.uuid4()), payload, orjson.dumps(payload), "github-http")


def failed(result: DispatchResult) -> list[tuple[str, bool]]:
    return [(o.error or "", o.permanent) for o in result.outcomes if o.status == "failed"]


async def test_an_option_like_title_is_refused_for_that_hook(build: Build, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    counter = str(tmp_path / "counter.py")
    Path(counter).write_text(COUNTER)
    runtime = build(hook_toml([sys.executable, counter, str(runs), "{issue.title}"], name="tag"))
    result = await runtime.dispatcher.dispatch(issue_titled("--output=pwned.txt"))
    assert failed(result) == [
        (
            "HookRefused: hook 'tag': the value for '{issue.title}' begins with '-' and would be read as an option "
            "(set allow_option_like = true, with '--' before it in the command, to pass such text) "
            "in this issues.opened delivery",
            True,
        )
    ]
    assert not runs.exists()


async def test_allow_option_like_passes_the_text_after_a_double_dash(build: Build, tmp_path: Path) -> None:
    counter = str(tmp_path / "counter.py")
    Path(counter).write_text(COUNTER)
    command = [sys.executable, counter, str(tmp_path / "runs"), "--", "{issue.title}"]
    runtime = build(hook_toml(command, allow_option_like=True))
    result = await runtime.dispatcher.dispatch(issue_titled("--output=pwned.txt"))
    assert result.ok, failed(result)
    assert result.actions == [f"ran hook hook-1: {sys.executable} {counter} {tmp_path / 'runs'} -- --output=pwned.txt"]


async def test_an_env_value_the_hook_echoes_is_in_no_log_line_outcome_or_comment(
    build: Build, tmp_path: Path, fake_github: tuple[FakeGitHub, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = fake_github
    echo = "import os, sys; key = os.environ['DEPLOY_KEY']; print('key', key); print('key', key, file=sys.stderr)"
    runtime = build(
        hook_toml([sys.executable, "-c", echo], env=["DEPLOY_KEY"], comment_output=True, name="ok")
        + hook_toml([sys.executable, "-c", echo + "; sys.exit(2)"], env=["DEPLOY_KEY"], name="fails")
    )
    with caplog.at_level(logging.INFO):
        result = await runtime.dispatcher.dispatch(issue_titled("Deploy please"))
    (error,) = [o.error or "" for o in result.outcomes if o.status == "failed"]
    assert error == "HookError: hook 'fails' exited with 2: key [redacted]"
    ((_, comment),) = fake.posted_comments()
    assert comment.startswith("key [redacted]\n")
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any('"stdout":"key [redacted]\\n"' in line for line in lines), lines
    assert not [line for line in lines if DEPLOY_KEY in line]
    assert all(DEPLOY_KEY not in str(getattr(record, "fields", "")) for record in caplog.records)


async def test_a_nul_title_fails_for_good_and_its_sibling_runs_once(build: Build, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    counter = str(tmp_path / "counter.py")
    Path(counter).write_text(COUNTER)
    runtime = build(
        hook_toml([sys.executable, counter, str(tmp_path / "unused"), "{issue.title}"], name="titled")
        + hook_toml([sys.executable, counter, str(runs), "{issue.number}"], name="sibling")
    )
    issue = issue_titled("bad\0title")
    first = await runtime.dispatcher.dispatch(issue)
    ((error, permanent),) = failed(first)
    assert permanent, "a NUL byte cannot be passed on any retry"
    assert "hook 'titled': a value for '{issue.title}' holds a NUL byte" in error
    for _ in range(4):  # what a retry loop or redeliveries would do, were the failure not permanent
        again = await runtime.dispatcher.dispatch(issue)
        assert [permanent for _, permanent in failed(again)] == [True]
    assert runs.read_text() == "run\n"


async def test_a_missing_command_is_permanent_and_a_non_zero_exit_is_not(build: Build, tmp_path: Path) -> None:
    runtime = build(
        hook_toml([str(tmp_path / "no-such-command")], name="missing")
        + hook_toml([str(tmp_path)], name="not-executable")
    )
    ((error, permanent),) = failed(await runtime.dispatcher.dispatch(issue_titled("x")))
    assert permanent and "could not start" in error and "missing" in error and "not-executable" in error

    flaky = build(hook_toml([sys.executable, "-c", "raise SystemExit(1)"]))
    result = await flaky.dispatcher.dispatch(issue_titled("x"))
    assert failed(result) == [("HookError: hook 'hook-1' exited with 1", False)]


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_a_detached_child_of_a_finished_hook_is_killed(build: Build, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    detacher = str(tmp_path / "detacher.py")
    Path(detacher).write_text(DETACHER)
    runtime = build(hook_toml([sys.executable, detacher, str(pid_file)]))
    result = await runtime.dispatcher.dispatch(issue_titled("x"))
    assert result.ok, failed(result)
    pid = int(pid_file.read_text())
    for _ in range(1000):  # a bounded wait for the kill to land, not a timing
        if not running(pid):
            break
        await asyncio.sleep(0.01)
    else:
        os.kill(pid, 9)
        raise AssertionError("the hook's child outlived it")


# Fails (exit 3) the first time it runs in a directory, succeeds afterwards.
FAILS_ONCE = """\
import pathlib, sys
flag = pathlib.Path(sys.argv[1]) / "failed-once"
if not flag.exists():
    flag.touch()
    sys.exit(3)
"""


async def test_a_retry_runs_only_the_failed_hook_and_then_drops_the_hook_marks(build: Build, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    counter, flaky = str(tmp_path / "counter.py"), str(tmp_path / "flaky.py")
    Path(counter).write_text(COUNTER)
    Path(flaky).write_text(FAILS_ONCE)
    runtime = build(
        hook_toml([sys.executable, flaky, str(tmp_path)], name="flaky")
        + hook_toml([sys.executable, counter, str(runs)], name="steady")
    )
    issue = issue_titled("x")
    steady_mark = f"{issue.delivery_id}/exec/hook:steady"
    first = await runtime.dispatcher.dispatch(issue)
    assert failed(first) == [("HookError: hook 'flaky' exited with 3", False)]
    assert await runtime.dispatcher.dedupe.is_done(steady_mark)

    second = await runtime.dispatcher.dispatch(issue)  # the retry
    assert second.ok, failed(second)
    assert runs.read_text() == "run\n"
    assert not await runtime.dispatcher.dedupe.is_done(steady_mark)  # the delivery's own mark covers it now
    assert (await runtime.dispatcher.dispatch(issue)).duplicate
