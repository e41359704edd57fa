"""Issue 14's smaller findings: --config on every command's help, a rate-limit gauge that does not start at 0,
a not-JSON refusal in hookbot's own words, and a `make run` without the test tools."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from typing import cast

import pytest

from bot.cli import build_parser
from bot.delivery import Refusal
from bot.github_webhook import parse_payload
from tests.helpers import ROOT


@pytest.mark.parametrize("command", ["serve", "replay", "send", "deliveries", "redeliver", "package"])
def test_every_command_documents_config_and_the_log_options(command: str) -> None:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    text = cast("dict[str, argparse.ArgumentParser]", subparsers.choices)[command].format_help()
    assert "--config FILE" in text and "--log-format" in text and "--log-level" in text


def test_the_rate_limit_gauge_is_unknown_until_github_answers() -> None:
    """0 would read as "rate limit exhausted" and fire alerts on every fresh start."""
    probe = (
        "from prometheus_client import generate_latest; from bot.metrics import REGISTRY; "
        "print(generate_latest(REGISTRY).decode())"
    )
    text = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "hookbot_github_rate_limit_remaining NaN" in text.splitlines()


def test_a_body_that_is_not_json_is_refused_in_hookbots_words() -> None:
    with pytest.raises(Refusal) as info:
        parse_payload(b'{"action": "opened",', "application/json")
    assert (info.value.status, info.value.reason) == (400, "body is not valid JSON (line 1, column 21)")


def test_make_run_installs_only_what_serve_needs() -> None:
    """`make run` on a fresh clone builds the runtime-only venv; the test tools come with `make test`."""
    makefile = (ROOT / "Makefile").read_text()
    targets = {
        target.strip(): (prerequisites.split(), recipe)
        for target, prerequisites, recipe in re.findall(
            r"^([^\s#:][^:\n]*):([^=\n]*)\n((?:\t[^\n]*\n)*)", makefile, re.MULTILINE
        )
    }
    assert targets["run"][0] == ["$(BIN)/.runtime"]
    runtime_recipe = targets["$(BIN)/.runtime"][1]
    assert "pip install --quiet -e ." in runtime_recipe and "[test]" not in runtime_recipe
    assert "$(BIN)/.runtime" in targets["$(BIN)/.installed"][0] and "[test]" in targets["$(BIN)/.installed"][1]
