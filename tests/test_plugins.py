"""Plugin discovery through entry points, and config chosen per plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError
from bot.plugins import installed_plugins, load_plugins
from handlers import greeter


def test_builtins_are_registered_as_entry_points() -> None:
    assert installed_plugins()["greeter"].value == "handlers.greeter"


def test_all_installed_plugins_load_by_default() -> None:
    names = [plugin.name for plugin in load_plugins(None, {})]
    assert "greeter" in names and names == sorted(names)


def test_config_section_reaches_the_plugin_through_configure() -> None:
    [plugin] = load_plugins(["greeter"], {"greeter": {"issue_comment": "Hi {author}"}})
    assert plugin.router is greeter.router
    assert plugin.config == greeter.GreeterConfig(issue_comment="Hi {author}")


def test_unknown_plugin_is_a_config_error_naming_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nope' is enabled in config but not installed \(installed: .*greeter"):
        load_plugins(["nope"], {})


def test_unknown_greeter_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown key `issue_coment` in \[greeter\]; did you mean `issue_comment`\?"):
        load_plugins(["greeter"], {"greeter": {"issue_coment": "typo"}})


def test_a_plugin_with_nothing_to_do_under_this_config_is_not_loaded(tmp_path: Path) -> None:
    """audit without a destination, exec without hooks and lambda_deploy without rules would only cost time on
    every delivery (and lambda_deploy would answer every `/deploy`, even one meant for another bot)."""
    idle = load_plugins(["audit", "exec", "greeter", "lambda_deploy"], {})
    assert [plugin.name for plugin in idle] == ["greeter"]
    set_up = load_plugins(
        ["audit", "lambda_deploy"],
        {
            "audit": {"destination": f"file://{tmp_path}"},
            "lambda_deploy": {"s3": [{"bucket": "b", "function": "f"}]},
        },
    )
    assert [plugin.name for plugin in set_up] == ["audit", "lambda_deploy"]
