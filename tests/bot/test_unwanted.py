"""Deliveries no loaded plugin wants are answered at the door: no journal, no de-duplication, no GitHub call.

GitHub Apps and "send me everything" webhooks get floods of events nobody here handles; each should cost what
verifying it costs, however often it comes, while a first test push still leaves a line in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gidgethub.routing import Router

from bot.aws_lambda import LambdaEntry
from bot.delivery import Delivery
from bot.plugins import could_route
from bot.runtime import Runtime
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, fixture_bytes, github_headers, make_settings
from tests.lambda_events import function_url_event

PUSH = fixture_bytes("github/push.json")


async def serve(
    tmp_path: Path, url: str, aiohttp_client: Callable[..., Any], config: str = ""
) -> tuple[AppClient, Runtime]:
    settings = make_settings(tmp_path, config, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url)
    runtime = Runtime.build(settings)
    client: AppClient = await aiohttp_client(create_app(runtime))
    return client, runtime


async def unwanted_count(client: AppClient) -> float:
    for line in (await (await client.get("/metrics")).text()).splitlines():
        if line.startswith("hookbot_deliveries_total{") and 'event="push"' in line and 'outcome="unwanted"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_push_no_plugin_wants_is_answered_without_journal_or_dedupe(
    tmp_path: Path,
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = fake_github
    client, _ = await serve(tmp_path, url, aiohttp_client)
    before = await unwanted_count(client)
    caplog.set_level(logging.DEBUG, logger="hookbot.ingress")
    for _ in range(2):  # the same body twice: not "already handled", since nothing was remembered
        answer = await client.post("/webhook", data=PUSH, headers=github_headers(PUSH, "push"))
        assert answer.status == 200
        assert (await answer.json())["status"] == "no plugin wants it"
    assert (await (await client.get("/healthz")).json())["pending"] == 0
    assert await unwanted_count(client) == before + 2
    assert fake.requests == []  # no token, no login lookup, nothing
    lines = [record for record in caplog.records if "no loaded plugin wants it" in record.getMessage()]
    assert [record.levelno for record in lines] == [logging.INFO, logging.DEBUG]


@pytest.mark.parametrize(("events", "status"), [('["issues"]', 200), ('["push"]', 202)])
async def test_audit_wants_only_the_events_it_records(
    tmp_path: Path,
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
    events: str,
    status: int,
) -> None:
    _, url = fake_github
    config = f'[audit]\ndestination = "file://{tmp_path}/audit/"\nevents = {events}\n'
    client, _ = await serve(tmp_path, url, aiohttp_client, config)
    answer = await client.post("/webhook", data=PUSH, headers=github_headers(PUSH, "push"))
    assert answer.status == status


def test_a_push_that_changes_the_repository_config_is_wanted(tmp_path: Path) -> None:
    """No plugin handles push, but one that edits .github/hookbot.yml gets its "hookbot config" check run."""
    runtime = Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="ghp_test"))
    payload = json.loads(PUSH)
    plain = Delivery("push", "d-1", payload, PUSH, "github-http")
    assert not runtime.dispatcher.wants(plain)
    payload["commits"] = [{"id": payload["after"], "added": [], "modified": [".github/hookbot.yml"], "removed": []}]
    assert runtime.dispatcher.wants(Delivery("push", "d-2", payload, PUSH, "github-http"))


async def test_lambda_skips_dedupe_for_an_unwanted_delivery(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    entry = LambdaEntry(Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url)))
    for _ in range(2):
        event = function_url_event(PUSH, github_headers(PUSH, "push"))
        answer = await asyncio.to_thread(entry, event, None)  # as Lambda runs it: a thread with its own loop
        assert answer["statusCode"] == 200
        assert b"no plugin wants it" in answer["body"].encode()
    assert fake.requests == []


async def test_an_unwanted_event_seen_before_is_answered_unread(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> None:
    """After an event name's first delivery (parsed, so its info line names the action and repository), the
    door answers the next ones from the headers and the signature alone: even a signed body that is not JSON."""
    _, url = fake_github
    client, _ = await serve(tmp_path, url, aiohttp_client)
    not_json = b"{ this is signed but it is not JSON"
    first = await client.post("/webhook", data=not_json, headers=github_headers(not_json, "check_run"))
    assert first.status == 400  # a first delivery of an event name is read whole
    check_run = b'{"action": "completed", "check_run": {"id": 1}}'
    assert (await client.post("/webhook", data=check_run, headers=github_headers(check_run, "check_run"))).status == 200
    again = await client.post("/webhook", data=not_json, headers=github_headers(not_json, "check_run"))
    assert again.status == 200
    assert (await again.json())["status"] == "no plugin wants it"
    forged_headers = github_headers(not_json, "check_run", secret="x" * 32)
    forged = await client.post("/webhook", data=not_json, headers=forged_headers)
    assert forged.status == 401  # answered unread, never unverified


def test_may_want_tells_from_the_event_name_and_the_raw_body(tmp_path: Path) -> None:
    plain = Runtime.build(make_settings(tmp_path))  # dry-run: the greeter alone, no repository configs
    assert plain.dispatcher.may_want("issues", b"")
    assert not plain.dispatcher.may_want("push", PUSH)
    assert not plain.dispatcher.may_want("check_run", b"")
    live = Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="ghp_test"))  # reads .github/hookbot.yml
    assert not live.dispatcher.may_want("push", PUSH)  # no commit of it can name the config file
    assert live.dispatcher.may_want("push", PUSH.replace(b'"README.md"', b'".github/hookbot.yml"', 1))
    audit = Runtime.build(make_settings(tmp_path, f'[audit]\ndestination = "file://{tmp_path}/audit/"\n'))
    assert audit.dispatcher.may_want("check_run", b"")  # audit routes "*": its events filter needs the payload


def test_a_router_whose_tables_are_unknown_may_route_anything() -> None:
    """gidgethub keeps its route tables private; if a release renamed them, every delivery is parsed as before."""
    router = Router()
    assert not could_route(router, "push")

    @router.register("issues", action="opened")
    async def opened(event: Any, gh: Any, ctx: Any) -> None: ...

    assert could_route(router, "issues") and not could_route(router, "push")
    renamed = Router()
    renamed.__dict__.clear()
    assert could_route(renamed, "push")
