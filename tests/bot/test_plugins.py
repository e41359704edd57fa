"""Plugin discovery through entry points (opt-in beyond the built-ins), by path, and each plugin's set-up."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config_schema import ConfigError
from bot.plugins import installed_plugins, load_plugin_report, load_plugins
from handlers import greeter

BUILTINS = ["audit", "exec", "greeter", "lambda_deploy"]

THIRD_PARTY = """
from bot.plugin import Router, Setup

router = Router()


def setup(plugin: Setup) -> dict[str, object]:
    if plugin.section.get("explode"):
        raise RuntimeError("cannot reach the label service")
    return {"setup": True, **plugin.section}
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A plugin installed as a package would be: a distribution on sys.path declaring the entry point."""
    site = tmp_path / "site"
    dist_info = site / "thirdparty_labeler-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-labeler\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[hookbot.handlers]\nthirdparty = thirdparty_labeler\n")
    (site / "thirdparty_labeler.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(site))
    yield "thirdparty"
    sys.modules.pop("thirdparty_labeler", None)


def test_builtins_are_registered_as_entry_points() -> None:
    assert installed_plugins()["greeter"].value == "handlers.greeter"


def test_the_builtins_load_by_default() -> None:
    names = [plugin.name for plugin in load_plugins(None, {"exec": {}})]
    assert names == ["greeter"]  # the other built-ins have nothing to do without their sections
    configured = {
        "audit": {"destination": "file:///tmp/x"},
        "lambda_deploy": {"s3": [{"bucket": "b", "function": "f"}]},
    }
    configured["exec"] = {"hooks": [{"events": ["push"], "command": ["true"]}]}
    assert [plugin.name for plugin in load_plugins(None, configured)] == BUILTINS


def test_an_installed_plugin_not_named_is_not_loaded_and_start_up_says_so(third_party: str) -> None:
    assert third_party in installed_plugins()
    report = load_plugin_report(None, {})
    assert third_party not in [plugin.name for plugin in report.loaded]
    assert report.not_loaded[third_party] == "not in [hookbot] handlers"  # serve's start-up summary logs it


def test_an_installed_plugin_named_in_handlers_loads_with_its_section(third_party: str) -> None:
    [plugin] = load_plugins([third_party], {third_party: {"label": "triage"}})
    assert (plugin.name, plugin.config) == (third_party, {"setup": True, "label": "triage"})


def test_whatever_set_up_raises_is_one_config_error_naming_the_plugin(third_party: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_plugins([third_party], {third_party: {"explode": True}})
    assert str(info.value) == (
        "[thirdparty] plugin 'thirdparty' set-up raised RuntimeError: cannot reach the label service"
    )


def test_a_plugin_file_loads_by_path_under_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "pathplugin_labeler.py"
    path.write_text(THIRD_PARTY)
    try:
        names = [plugin.name for plugin in load_plugins(None, {}, paths=[path])]
    finally:
        sys.modules.pop("pathplugin_labeler", None)
    assert names == ["greeter", "pathplugin_labeler"]


def test_a_plugin_path_that_is_not_a_plugin_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such plugin file"):
        load_plugins(None, {}, paths=[tmp_path / "missing.py"])
    (tmp_path / "routerless.py").write_text("x = 1\n")
    try:
        with pytest.raises(ConfigError, match=r"'routerless' .* has no module-level Router named 'router'"):
            load_plugins(None, {}, paths=[tmp_path / "routerless.py"])
    finally:
        sys.modules.pop("routerless", None)


def test_config_section_reaches_the_plugin_through_setup() -> None:
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
