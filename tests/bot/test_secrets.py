"""Webhook secrets that mean something: blank or short ones are refused at start, naming where they came from."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.config_schema import ConfigError
from bot.runtime import SECRET_FILE, ensure_webhook_secret


@pytest.mark.parametrize("value", ["   ", "\n", "x", "fifteen-bytes!!", "\u00e9" * 7])
def test_a_blank_or_short_secret_in_the_environment_is_refused(tmp_path: Path, value: str) -> None:
    config = tmp_path / "hookbot.toml"
    config.write_text("")
    with pytest.raises(ConfigError, match=r"GITHUB_WEBHOOK_SECRET is (blank|only \d+ bytes).*openssl rand -hex 32"):
        load_settings({"GITHUB_WEBHOOK_SECRET": value, "HOOKBOT_STATE_DIR": str(tmp_path)}, config)


def test_sixteen_bytes_is_enough(tmp_path: Path) -> None:
    config = tmp_path / "hookbot.toml"
    config.write_text("")
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": "0123456789abcdef"}, config)
    assert settings.github.webhook_secret == "0123456789abcdef"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ('[github]\nwebhook_secret = "short"\n', r"\[github\] webhook_secret of .*hookbot\.toml is only 5 bytes"),
        ('[github]\nwebhook_secret = "  "\n', r"\[github\] webhook_secret of .*hookbot\.toml is blank"),
        ('[github]\nprevious_secrets = [""]\n', r"\[github\] previous_secrets\[0\] of .*hookbot\.toml is blank"),
        (
            '[github]\nprevious_secrets = ["a-long-enough-old-secret", "x"]\n',
            r"previous_secrets\[1\] .* is only 1 bytes",
        ),
    ],
)
def test_secrets_in_the_config_file_are_checked_too(tmp_path: Path, config: str, named: str) -> None:
    path = tmp_path / "hookbot.toml"
    path.write_text(config)
    with pytest.raises(ConfigError, match=named + ".*openssl rand -hex 32"):
        load_settings({"HOOKBOT_STATE_DIR": str(tmp_path)}, path)


@pytest.mark.parametrize("content", ["", "   \n", "abc\n"])
def test_serve_refuses_a_blank_or_short_generated_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    """A crash between create and write, a `touch`, an empty mounted secret: none of them becomes an HMAC key."""
    state = tmp_path / "state"
    state.mkdir()
    (state / SECRET_FILE).write_text(content)
    (tmp_path / "hookbot.toml").write_text("")
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("HOOKBOT_STATE_DIR", str(state))
    assert main(["--config", str(tmp_path / "hookbot.toml"), "serve", "--port", "1"]) == 2
    error = capsys.readouterr().err
    assert str(state / SECRET_FILE) in error and "openssl rand -hex 32" in error


def test_the_generated_secret_appears_whole_and_private(tmp_path: Path) -> None:
    value, created = ensure_webhook_secret(tmp_path / "state")
    assert created and len(value) == 64
    path = tmp_path / "state" / SECRET_FILE
    assert path.read_text() == value + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [SECRET_FILE]  # no temporary file left behind
    assert ensure_webhook_secret(tmp_path / "state") == (value, False)
