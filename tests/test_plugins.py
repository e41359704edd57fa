"""Plugin discovery through entry points, and config chosen per plugin."""

from __future__ import annotations

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
    with pytest.raises(ConfigError, match=r"'nope' is enabled in config but not installed; installed: .*greeter"):
        load_plugins(["nope"], {})


def test_unknown_greeter_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[greeter\] config is not valid"):
        load_plugins(["greeter"], {"greeter": {"issue_coment": "typo"}})
