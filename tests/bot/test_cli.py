"""The `hookbot` command as a user runs it: replay output, and serve's first start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import FIXTURES, ROOT, fixture_bytes, github_headers

HOOKBOT = [sys.executable, "-m", "bot"]


def run_hookbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOOKBOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The process environment without any GitHub credentials, with state under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HOOKBOT_"))}
    env["HOOKBOT_STATE_DIR"] = str(tmp_path / "state")
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_replay_prints_the_greeting_it_would_post(clean_env: dict[str, str], tmp_path: Path) -> None:
    result = run_hookbot(
        "replay", str(FIXTURES / "github/issues.opened.json"), "--event", "issues", env=clean_env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[dry-run] comment on Codertocat/Hello-World#1: "
        "Thanks for opening this issue, @Codertocat! A maintainer will take a look soon."
    ]


def test_replay_uses_the_configured_template_and_action_override(clean_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[greeter]\npull_request_comment = "Welcome {author}, thanks for #{number} in {repository}"\n')
    result = run_hookbot(
        "--config",
        str(config),
        "replay",
        str(FIXTURES / "github/pull_request.closed.json"),
        "--event",
        "pull_request",
        "--action",
        "opened",
        env=clean_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Welcome Codertocat, thanks for #2 in Codertocat/Hello-World")


def test_replay_of_an_event_nobody_handles_says_so(clean_env: dict[str, str], tmp_path: Path) -> None:
    result = run_hookbot(
        "replay", str(FIXTURES / "github/issues.edited.json"), "--event", "issues", env=clean_env, cwd=tmp_path
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "no actions for issues.edited"


LABELER = ROOT / "examples/labeler/labeler.py"
LABEL_LINE = '[dry-run] POST /repos/Codertocat/Hello-World/issues/1/labels {"labels":["triage"]}'


def test_replay_loads_a_plugin_by_path_for_a_first_try(clean_env: dict[str, str], tmp_path: Path) -> None:
    issue = str(FIXTURES / "github/issues.opened.json")
    result = run_hookbot("replay", issue, "--event", "issues", "--plugin", str(LABELER), env=clean_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert LABEL_LINE in result.stdout.splitlines()


def test_an_installed_plugin_runs_only_once_named(clean_env: dict[str, str], tmp_path: Path) -> None:
    """examples/labeler is installed in the test venv (Makefile): installed alone, it must not run."""
    issue = str(FIXTURES / "github/issues.opened.json")
    unnamed = run_hookbot("replay", issue, "--event", "issues", env=clean_env, cwd=tmp_path)
    assert unnamed.returncode == 0, unnamed.stderr
    assert LABEL_LINE not in unnamed.stdout.splitlines()
    # replay logs only warnings; the start-up summary (serve) and `config check` name what was not loaded
    checked = run_hookbot("config", "check", env=clean_env, cwd=tmp_path)
    assert "plugin labeler not loaded: not in [hookbot] handlers" in checked.stdout.splitlines(), checked.stderr
    config = tmp_path / "bot.toml"
    config.write_text('[hookbot]\nhandlers = ["greeter", "labeler"]\n')
    named = run_hookbot("--config", str(config), "replay", issue, "--event", "issues", env=clean_env, cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert LABEL_LINE in named.stdout.splitlines()


def test_bad_config_is_one_clear_line(clean_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[greeter]\nissue_comment = "Hi {autor}"\n')
    result = run_hookbot(
        "--config",
        str(config),
        "replay",
        str(FIXTURES / "github/ping.json"),
        "--event",
        "ping",
        env=clean_env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"hookbot: {config}: [greeter] issue_comment uses {{autor}}; "
        "a greeting may use {author}, {repository}, {number}, {title}; did you mean {author}?"
    )


def wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "hookbot serve exited"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("hookbot serve did not become healthy")


def test_serve_generates_a_secret_once_and_accepts_deliveries_signed_with_it(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*HOOKBOT, "serve", "--port", str(port)], env=clean_env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_healthy(url, process)
        secret_file = tmp_path / "state" / "webhook-secret"
        secret = secret_file.read_text().strip()
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        body = fixture_bytes("github/issues.opened.json")
        request = urllib.request.Request(
            f"{url}/webhook", data=body, headers=github_headers(body, "issues", secret=secret), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
        # the state dir holds the secret and raw bodies: private to hookbot's user, whatever the caller's umask
        state_dir = tmp_path / "state"
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in state_dir.iterdir()}
        assert "inbox.sqlite3" in files and "inbox.sqlite3-wal" in files
        assert set(files.values()) == {0o600}, files
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert secret in out and "Settings > Webhooks" in out
    assert process.returncode == 0

    # A second start keeps the same secret and does not print it again.
    process = subprocess.Popen(
        [*HOOKBOT, "serve", "--port", str(port)], env=clean_env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_healthy(url, process)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert secret not in out
    assert secret_file.read_text().strip() == secret


def test_serve_runs_on_uvloop_when_it_is_installed() -> None:
    import asyncio
    import importlib.util

    from bot.commands.serve import new_event_loop

    loop = new_event_loop()
    try:
        expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        assert type(loop).__module__.split(".")[0] == expected
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()


def test_serve_takes_start_up_objects_out_of_the_garbage_collector() -> None:
    import gc

    from bot.commands.serve import GC_THRESHOLDS, tune_garbage_collector

    thresholds = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
