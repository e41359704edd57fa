"""Logs for people and for machines: a console line is short, aligned and not JSON; a JSON line parses; a
traceback only for an unexpected error; `replay` prints its answer on stdout and logs only warnings."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from bot.cli import main
from bot.delivery import Delivery
from bot.logs import ConsoleFormatter, JsonFormatter, current_delivery, setup_logging
from tests.helpers import FIXTURES

GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def record(
    message: str, level: int = logging.INFO, exc: BaseException | None = None, **fields: object
) -> logging.LogRecord:
    line = logging.LogRecord("hookbot.test", level, __file__, 1, message, (), None)
    if exc is not None:
        line.exc_info = (type(exc), exc, exc.__traceback__)
    line.fields = fields
    return line


def test_a_console_line_is_short_aligned_and_not_json() -> None:
    token = current_delivery.set(GUID)
    try:
        line = ConsoleFormatter().format(record("delivery done", event="issues", action="opened", ms=3.2))
        warning = ConsoleFormatter().format(record("handler failed", logging.WARNING, error="HookError: exit 1"))
    finally:
        current_delivery.reset(token)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)
    assert "\n" not in line
    clock, level, ident, rest = line.split(maxsplit=3)
    assert (level, ident) == ("INFO", "72d3162e")  # the short id `hookbot deliveries` shows too
    assert rest.startswith("delivery done ") and rest.endswith("event=issues action=opened ms=3.2")
    assert len(clock) == 8 and clock.count(":") == 2
    # the columns line up whatever the level, and a value with spaces is quoted
    assert line.index("delivery done") == warning.index("handler failed")
    assert warning.endswith('error="HookError: exit 1"')


def test_a_json_line_parses_and_keeps_every_field() -> None:
    token = current_delivery.set(GUID)
    try:
        line = orjson.loads(JsonFormatter().format(record("delivery done", event="issues", outcome="done")))
    finally:
        current_delivery.reset(token)
    assert (line["message"], line["delivery"], line["event"], line["outcome"]) == (
        "delivery done",
        GUID,
        "issues",
        "done",
    )


def test_the_format_is_console_on_a_terminal_and_json_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert setup_logging(stream=Terminal()) == "console"
    assert setup_logging(stream=io.StringIO()) == "json"
    assert setup_logging("console", stream=io.StringIO()) == "console"
    assert isinstance(logging.getLogger().handlers[0].formatter, ConsoleFormatter)


def test_a_traceback_only_for_an_unexpected_error() -> None:
    try:
        raise KeyError("issue")
    except KeyError as exc:
        with_traceback = ConsoleFormatter().format(record("handler failed", logging.WARNING, exc=exc))
    assert "Traceback (most recent call last)" in with_traceback
    # dispatch passes no exc_info for an explained failure (HandlerError, GitHub's answer): one line
    explained = ConsoleFormatter().format(record("handler failed", logging.WARNING, error="DeployError: no artifact"))
    assert "\n" not in explained


async def test_an_explained_handler_failure_is_one_line_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from bot.aws import AwsClients
    from bot.dedupe import MemoryDedupeStore
    from bot.dispatch import Dispatcher
    from bot.github import GitHubClients
    from bot.plugin import HandlerError, Router
    from bot.plugins import Plugin
    from bot.settings import GitHubSettings

    router = Router()

    @router.register("issues")
    async def explained(event: object, gh: object, ctx: object) -> None:
        raise HandlerError("the command exited 1")

    plugin = Plugin("explains", router, None, logging.getLogger("hookbot.handlers.explains"), needs_github=False)
    github = GitHubClients(GitHubSettings(), dry_run=True)
    dedupe = MemoryDedupeStore(ttl_seconds=60, claim_timeout=60)
    dispatcher = Dispatcher([plugin], github=github, dedupe=dedupe, aws=AwsClients(), dry_run=True)
    with caplog.at_level(logging.INFO):
        result = await dispatcher.dispatch(issue_delivery())
    await github.close()
    assert result.summary == "failed"
    [failed] = [r for r in caplog.records if r.getMessage() == "handler failed"]
    assert not failed.exc_info
    [end] = [r for r in caplog.records if r.getMessage() == "delivery failed"]
    assert end.levelno == logging.WARNING
    assert {"event", "action", "repository", "outcome", "ms"} <= set(end.fields)  # type: ignore[attr-defined]


def issue_delivery() -> Delivery:

    body = (FIXTURES / "github/issues.opened.json").read_bytes()
    return Delivery("issues", "explained-1", orjson.loads(body), body, "replay")


def test_replay_prints_only_its_answer_on_stdout_and_no_info_logs(
    bare_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(FIXTURES / "github/issues.opened.json"), "--event", "issues"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "[dry-run] comment on Codertocat/Hello-World#1: "
        "Thanks for opening this issue, @Codertocat! A maintainer will take a look soon."
    ]
    assert captured.err == ""


def test_log_level_and_format_options(bare_env: object, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["replay", str(FIXTURES / "github/ping.json"), "--event", "ping", "--log-format", "json"]
    assert main([*argv, "--log-level", "info"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert any(line["message"] == "delivery unhandled" and line["event"] == "ping" for line in lines)
    assert main(["--log-level", "loud", *argv[:4]]) == 2
    assert "log level must be debug, info, warning or error, not 'loud'" in capsys.readouterr().err

