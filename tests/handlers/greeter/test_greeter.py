"""The greeter plugin: its behaviour through bot.testing, its failures and retries through the real Dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.delivery import Delivery
from bot.runtime import Runtime
from bot.testing import BOT_LOGIN, FakeGitHub, run_plugin
from handlers import greeter
from handlers.greeter import MARKER
from tests.fake_github import FakeGitHub as HttpFakeGitHub
from tests.helpers import FIXTURES, fixture_bytes, make_settings


def delivery(name: str, event: str, **changes: object) -> Delivery:
    payload = json.loads(fixture_bytes(f"github/{name}"))
    payload.update(changes)
    return Delivery(event=event, delivery_id=f"d-{name}-{len(changes)}", payload=payload, body=b"", source="replay")


@pytest.fixture
async def runtime(tmp_path: Path, fake_github: tuple[HttpFakeGitHub, str]) -> Runtime:
    _, url = fake_github
    return Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="t", GITHUB_API_URL=url), secrets_=[])


def test_pull_request_opened_gets_its_own_greeting() -> None:
    done = run_plugin(greeter, FIXTURES / "github/pull_request.opened.json", event="pull_request")
    text = "Thanks for the pull request, @Codertocat! A maintainer will review it soon."
    assert done.writes == [("POST", "/repos/Codertocat/Hello-World/issues/2/comments", {"body": f"{text}\n\n{MARKER}"})]


def test_the_configured_template_is_used() -> None:
    config = {"issue_comment": "Hi {author}, thanks for #{number} in {repository}"}
    done = run_plugin(greeter, FIXTURES / "github/issues.opened.json", event="issues", config=config)
    assert done.actions == [
        "comment on Codertocat/Hello-World#1: Hi Codertocat, thanks for #1 in Codertocat/Hello-World"
    ]


@pytest.mark.parametrize("sender", [{"login": "dependabot[bot]", "type": "Bot"}, {"login": BOT_LOGIN, "type": "User"}])
def test_bots_and_the_bot_itself_are_never_answered(sender: dict[str, str]) -> None:
    payload = json.loads(fixture_bytes("github/issues.opened.json")) | {"sender": sender}
    assert run_plugin(greeter, payload, event="issues").requests == []


def test_an_existing_marker_means_no_second_greeting() -> None:
    github = FakeGitHub()
    github.seed(
        "/repos/Codertocat/Hello-World/issues/1/comments", {"body": "someone else"}, {"body": f"Hi!\n\n{MARKER}"}
    )
    done = run_plugin(greeter, FIXTURES / "github/issues.opened.json", event="issues", github=github)
    assert done.writes == []


async def test_a_github_failure_fails_only_that_delivery_and_a_retry_runs_it_again(
    runtime: Runtime, fake_github: tuple[HttpFakeGitHub, str]
) -> None:
    fake, _ = fake_github
    path = "/repos/Codertocat/Hello-World/issues/1/comments"
    fake.responses[("POST", path)] = (500, {"message": "boom"})
    failed = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    statuses = {outcome.handler: outcome.status for outcome in failed.outcomes}
    assert not failed.ok and statuses["greeter"] == "failed"  # by name: every installed plugin runs here
    del fake.responses[("POST", path)]
    retried = await runtime.dispatcher.dispatch(delivery("issues.opened.json", "issues"))
    await runtime.close()
    assert retried.ok and not retried.duplicate
    assert len(fake.comments[path]) == 1


async def test_a_finished_delivery_keeps_one_dedupe_mark_not_one_per_plugin(
    runtime: Runtime, fake_github: tuple[HttpFakeGitHub, str]
) -> None:
    """Per-plugin marks only serve retries of a partly failed delivery; keeping them would double the memory."""
    opened = delivery("issues.opened.json", "issues")
    result = await runtime.dispatcher.dispatch(opened)
    await runtime.close()
    assert result.ok and [o.handler for o in result.outcomes if o.status == "ok"] == ["greeter"]
    dedupe = runtime.dispatcher.dedupe
    assert await dedupe.is_done(opened.delivery_id)
    assert not await dedupe.is_done(f"{opened.delivery_id}/greeter")
    assert (await runtime.dispatcher.dispatch(opened)).duplicate
