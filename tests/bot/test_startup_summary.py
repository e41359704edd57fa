"""What a first start says (one line each, in both formats), "listening" only once bound, one line per delivery
(ping and unhandled events included), and `hookbot send` against a running `hookbot serve`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot import __version__
from bot.cli import main
from tests.fake_github import FakeGitHub
from tests.helpers import FIXTURES, SECRET
from tests.processes import Server


def log_lines(server: Server) -> list[dict[str, Any]]:
    text = (server.tmp_path / "server.log").read_text()
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


async def wait_for_line(server: Server, message: str, timeout: float = 30.0, **fields: object) -> dict[str, Any]:
    """The first JSON log line with this message (or, with ``message`` empty, these field values)."""
    for _ in range(int(timeout / 0.05)):
        for line in log_lines(server):
            if (not message or line["message"] == message) and all(line.get(k) == v for k, v in fields.items()):
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {message!r} line in: {(server.tmp_path / 'server.log').read_text()[-3000:]}")


async def test_start_up_summary_then_listening_then_one_line_per_delivery(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    _, url = fake_github
    server = Server(tmp_path, url, '[hookbot]\nhandlers = ["greeter"]\n', {"HOOKBOT_LOG_FORMAT": "json"})
    servers.append(server)
    await server.start()
    listening = f"listening on http://127.0.0.1:{server.port} (POST /webhook, GET /healthz, GET /metrics)"
    await wait_for_line(server, listening)
    messages = [line["message"] for line in log_lines(server)]
    summary = messages[: messages.index(listening)]
    assert summary[:7] == [
        f"hookbot {__version__}",
        f"config file: {tmp_path / 'hookbot.toml'}",
        f"state dir: {tmp_path / 'state'}",
        "GitHub auth: token",
        "webhook secret: environment (GITHUB_WEBHOOK_SECRET)",
        "mode: live",
        "plugins loaded: greeter",
    ]
    assert "plugin audit not loaded: not in [hookbot] handlers" in summary
    assert SECRET not in (tmp_path / "server.log").read_text()

    ping = (FIXTURES / "github/ping.json").read_bytes()
    assert await server.post(ping, "ping-1", event="ping") == 200
    pong = await wait_for_line(server, "delivery pong")
    assert (pong["event"], pong["outcome"], pong["delivery"]) == ("ping", "pong", "ping-1")

    star = orjson.dumps({"action": "created", "repository": {"full_name": "o/r"}, "sender": {"login": "u"}})
    assert await server.post(star, "star-1", event="star") == 200
    unwanted = await wait_for_line(server, "", outcome="unwanted")
    assert (unwanted["event"], unwanted["repository"]) == ("star.created", "o/r")

    issue = (FIXTURES / "github/issues.opened.json").read_bytes()
    assert await server.post(issue, "issue-1") == 202
    done = await wait_for_line(server, "delivery done")
    assert (done["event"], done["action"], done["repository"], done["outcome"]) == (
        "issues",
        "opened",
        "Codertocat/Hello-World",
        "done",
    )
    assert isinstance(done["ms"], float) and done["handlers"] == "greeter"


async def test_console_summary_lines_are_not_json(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    _, url = fake_github
    server = Server(tmp_path, url, "", {"HOOKBOT_LOG_FORMAT": "console"})
    servers.append(server)
    await server.start()
    for _ in range(600):
        text = (tmp_path / "server.log").read_text()
        if "listening on" in text:
            break
        await asyncio.sleep(0.05)
    lines = text.splitlines()
    assert any(line.split(maxsplit=3)[1:] == ["INFO", "-", f"hookbot {__version__}"] for line in lines), text
    assert not any(line.startswith("{") for line in lines)


def test_a_port_clash_never_says_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HOOKBOT_"))}
        env.update(HOOKBOT_STATE_DIR=str(tmp_path / "state"), HOOKBOT_LOG_FORMAT="json", GITHUB_WEBHOOK_SECRET=SECRET)
        result = subprocess.run(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "listening" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"hookbot: cannot listen on 127.0.0.1:{port}: Address already in use (choose another: --port or [server] port)"
    )


async def test_send_posts_a_signed_delivery_as_github_would(
    tmp_path: Path,
    fake_github: tuple[FakeGitHub, str],
    servers: list[Server],
    bare_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = fake_github
    server = Server(tmp_path, url, "")
    servers.append(server)
    await server.start()
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    payload = str(FIXTURES / "github/issues.opened.json")
    argv = ["send", payload, "--event", "issues", "--url", f"{server.url}/webhook", "--delivery", "send-1"]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "delivery send-1: 202 Accepted"
    assert orjson.loads(out[1]) == {"delivery": "send-1", "status": "accepted"}
    # the same delivery id again, once handled: 200, and it does not run twice
    await server.wait_idle()
    assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == "delivery send-1: 200 OK"
    # form-encoded, as a webhook with content type application/x-www-form-urlencoded posts
    form = ["send", payload, "--event", "issues", "--url", f"{server.url}/webhook", "--delivery", "send-2", "--form"]
    assert await asyncio.to_thread(main, form) == 0
    assert capsys.readouterr().out.splitlines()[0] == "delivery send-2: 202 Accepted"
    # a wrong secret is GitHub's 401, and the answer's body is shown
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "not-the-secret-at-all")
    wrong = ["send", payload, "--event", "issues", "--url", f"{server.url}/webhook", "--delivery", "send-3"]
    assert await asyncio.to_thread(main, wrong) == 1
    assert capsys.readouterr().out.splitlines()[0] == "delivery send-3: 401 Unauthorized"


def test_send_without_a_running_server_or_a_secret_says_what_to_do(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = str(FIXTURES / "github/ping.json")
    assert main(["send", payload, "--event", "ping"]) == 2
    assert "no webhook secret to sign with: set GITHUB_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert main(["send", payload, "--event", "ping", "--url", f"http://127.0.0.1:{port}/webhook"]) == 1
    assert "(is `hookbot serve` running?)" in capsys.readouterr().err
