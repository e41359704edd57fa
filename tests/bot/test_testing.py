"""bot.testing and the helpers of bot.plugin, as a plugin author uses them."""

from __future__ import annotations

from types import ModuleType

import pytest

from bot.config_schema import ConfigError
from bot.plugin import Context, Event, GitHubAPI, Router, UntrustedURLError, comment_once, hidden_marker, issue_path
from bot.testing import FakeGitHub, run_plugin
from tests.helpers import FIXTURES

ISSUE = FIXTURES / "github/issues.opened.json"


def plugin_module(handler: object, *events: str) -> ModuleType:
    module = ModuleType("sample")
    module.router = Router()  # type: ignore[attr-defined]
    for event in events or ("issues",):
        module.router.register(event)(handler)
    return module


def test_a_payload_url_is_refused_as_under_github_enterprise() -> None:
    """The payload names api.github.com; hookbot talks only to its configured API, so the natural
    ``issue["url"]`` fails in a test exactly as under GitHub Enterprise, and issue_path() is the way."""

    async def label_by_url(event: Event, gh: GitHubAPI, ctx: Context[object]) -> None:
        await gh.post(event.data["issue"]["url"] + "/labels", data={"labels": ["x"]})

    with pytest.raises(UntrustedURLError, match=r"api\.github\.com"):
        run_plugin(plugin_module(label_by_url), ISSUE, event="issues")


def test_comment_once_writes_one_comment_however_often_it_runs() -> None:
    marker = hidden_marker("sample", delivery="d1")

    async def comment(event: Event, gh: GitHubAPI, ctx: Context[object]) -> None:
        await comment_once(gh, issue_path(event, "comments"), "hello", marker)

    github = FakeGitHub()
    for _ in range(2):
        run_plugin(plugin_module(comment), ISSUE, event="issues", github=github)
    path = "/repos/Codertocat/Hello-World/issues/1/comments"
    assert github.writes == [("POST", path, {"body": "hello\n\n<!-- hookbot:sample delivery=d1 -->"})]


def test_issue_path_is_a_key_error_for_an_event_about_no_issue() -> None:
    async def needs_issue(event: Event, gh: GitHubAPI, ctx: Context[object]) -> None:
        issue_path(event)

    with pytest.raises(KeyError):
        run_plugin(plugin_module(needs_issue, "push"), FIXTURES / "github/push.json", event="push")


def test_a_plugin_without_setup_gets_its_section_and_dry_run_records_instead_of_writing() -> None:
    seen: list[object] = []

    async def write(event: Event, gh: GitHubAPI, ctx: Context[object]) -> None:
        seen.append(ctx.config)
        await gh.post(issue_path(event, "labels"), data={"labels": ["x"]})

    done = run_plugin(plugin_module(write), ISSUE, event="issues", config={"a": 1}, dry_run=True)
    assert seen == [{"a": 1}] and done.writes == []
    assert done.actions == ['[dry-run] POST /repos/Codertocat/Hello-World/issues/1/labels {"labels":["x"]}']


def test_a_set_up_with_nothing_to_do_is_an_error_in_a_test() -> None:
    module = plugin_module(lambda *args: None)
    module.setup = lambda plugin: None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="nothing to do"):
        run_plugin(module, ISSUE, event="issues")
