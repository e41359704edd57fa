"""Settings: environment over file over defaults, and clear errors for what a user can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.config_schema import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hookbot.toml"
    path.write_text(text)
    return path


def test_defaults_are_dry_run_without_credentials(tmp_path: Path) -> None:
    settings = load_settings({}, write(tmp_path, ""))
    assert settings.effective_dry_run
    assert settings.github.api_url == "https://api.github.com"
    assert settings.sns.topic_arns == ()
    assert settings.handlers is None


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[github]\ntoken = "from-file"\napi_url = "https://ghe.example/api/v3/"\n')
    settings = load_settings({"GITHUB_TOKEN": "from-env", "SNS_TOPIC_ARNS": "arn:a, arn:b"}, path)
    assert settings.github.token == "from-env"
    assert settings.github.api_url == "https://ghe.example/api/v3"
    assert settings.sns.topic_arns == ("arn:a", "arn:b")
    assert not settings.effective_dry_run
    assert load_settings({"GITHUB_TOKEN": "x", "HOOKBOT_DRY_RUN": "1"}, path).effective_dry_run


def test_plugin_sections_and_enabled_handlers(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[hookbot]\nhandlers = ["greeter"]\n[greeter]\nissue_comment = "hi"\n[server]\nport = 9000\n'
    )
    settings = load_settings({}, path)
    assert settings.handlers == ("greeter",)
    assert settings.plugin_sections["greeter"] == {"issue_comment": "hi"}
    assert "server" not in settings.plugin_sections
    assert settings.server.port == 9000


def test_private_key_path_is_read(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text("PEM")
    settings = load_settings({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(key)}, write(tmp_path, ""))
    assert settings.github.private_key == "PEM" and settings.github.has_credentials


@pytest.mark.parametrize(
    ("env", "text", "message"),
    [
        ({"GITHUB_APP_ID": "1"}, "", "needs both GITHUB_APP_ID and GITHUB_PRIVATE_KEY"),
        ({}, "[server]\nport = 'eighty'\n", r"\[server\] port must be a whole number"),
        ({"HOOKBOT_DRY_RUN": "maybe"}, "", "HOOKBOT_DRY_RUN must be true or false"),
        ({}, "[github\n", "is not valid TOML"),
        ({}, "github = 3\n", r"\[github\] in the config file must be a table"),
        ({"GITHUB_PRIVATE_KEY_PATH": "/nonexistent/key.pem", "GITHUB_APP_ID": "1"}, "", "cannot read"),
    ],
)
def test_mistakes_are_one_clear_line(tmp_path: Path, env: dict[str, str], text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, write(tmp_path, text))


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOOKBOT_CONFIG or --config"):
        load_settings({"HOOKBOT_CONFIG": str(tmp_path / "nope.toml")})


def test_explicit_dry_run_off_acts_without_github_credentials(tmp_path: Path) -> None:
    """An S3-only auto-deployer has AWS credentials but no GitHub account."""
    path = write(tmp_path, "")
    assert not load_settings({"HOOKBOT_DRY_RUN": "0"}, path).effective_dry_run
    assert load_settings({"GITHUB_TOKEN": "t", "HOOKBOT_DRY_RUN": "yes"}, path).effective_dry_run
