"""The container ingress over real HTTP: status codes, signatures, dedupe, and the greeting it leads to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.github_webhook import sign
from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import SECRET, AppClient, fixture_bytes, github_headers, make_settings, wait_idle

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")


@pytest.fixture
async def bot_client(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> tuple[AppClient, FakeGitHub]:
    fake, url = fake_github
    settings = make_settings(
        tmp_path,
        '[github]\nprevious_secrets = ["old-secret-0123456789"]\n[server]\nmax_body_bytes = 200000\n',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=url,
    )
    runtime = Runtime.build(settings, secrets_=webhook_secrets(settings))
    client: AppClient = await aiohttp_client(create_app(runtime))
    return client, fake


async def test_signed_issue_opened_is_greeted_once_even_when_delivered_twice(
    bot_client: tuple[AppClient, FakeGitHub],
) -> None:
    client, fake = bot_client
    headers = github_headers(ISSUE_OPENED, "issues")
    first = await client.post("/webhook", data=ISSUE_OPENED, headers=headers)
    assert first.status == 202
    await wait_idle(client)
    second = await client.post("/webhook", data=ISSUE_OPENED, headers=headers)
    assert second.status == 200
    assert (await second.json())["status"] == "already handled"
    await wait_idle(client)
    comments = fake.posted_comments()
    assert len(comments) == 1
    path, body = comments[0]
    assert path == "/repos/Codertocat/Hello-World/issues/1/comments"
    assert "@Codertocat" in body and "<!-- hookbot:greeter -->" in body
    assert fake.calls("POST")[0].headers["Authorization"] == "token ghp_test"
    assert fake.calls("POST")[0].headers["User-Agent"].startswith("hookbot/")


async def test_redelivery_under_a_new_id_is_not_greeted_twice(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, fake = bot_client
    for status in (202, 200):  # the same body again is a duplicate whatever its delivery id
        response = await client.post("/webhook", data=ISSUE_OPENED, headers=github_headers(ISSUE_OPENED, "issues"))
        assert response.status == status
        await wait_idle(client)
    assert len(fake.posted_comments()) == 1


async def test_form_encoded_delivery_is_accepted(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, fake = bot_client
    body = urlencode({"payload": ISSUE_OPENED.decode()}).encode()
    headers = github_headers(body, "issues", **{"Content-Type": "application/x-www-form-urlencoded"})
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 202
    await wait_idle(client)
    assert len(fake.posted_comments()) == 1


async def test_rotated_secret_still_accepted(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, _ = bot_client
    headers = github_headers(ISSUE_OPENED, "issues", secret="old-secret-0123456789")
    assert (await client.post("/webhook", data=ISSUE_OPENED, headers=headers)).status == 202


async def test_ping_answers_200(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, fake = bot_client
    body = fixture_bytes("github/ping.json")
    response = await client.post("/webhook", data=body, headers=github_headers(body, "ping"))
    assert response.status == 200
    assert (await response.json())["ok"] is True
    assert fake.requests == []


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (lambda h, b: h.pop("X-Hub-Signature-256"), 401, "missing"),
        (lambda h, b: h.update({"X-Hub-Signature-256": sign(b, b"wrong")}), 401, "does not match"),
        (lambda h, b: h.update({"X-Hub-Signature-256": "sha256=zz"}), 401, "does not match"),
        (lambda h, b: h.update({"X-Hub-Signature-256": "md5=abc"}), 401, "does not match"),
        (lambda h, b: h.pop("X-GitHub-Event"), 400, "X-GitHub-Event"),
    ],
)
async def test_refusals(
    bot_client: tuple[AppClient, FakeGitHub],
    caplog: pytest.LogCaptureFixture,
    change: Callable[[dict[str, str], bytes], object],
    status: int,
    reason: str,
) -> None:
    client, fake = bot_client
    headers = github_headers(ISSUE_OPENED, "issues")
    change(headers, ISSUE_OPENED)
    with caplog.at_level(logging.WARNING, logger="hookbot.server"):
        response = await client.post("/webhook", data=ISSUE_OPENED, headers=headers)
    assert response.status == status
    refusals = [r for r in caplog.records if r.name == "hookbot.server"]
    assert len(refusals) == 1 and reason in refusals[0].getMessage()
    assert (await client.get("/healthz")).status == 200
    assert fake.requests == []


async def test_tampered_body_is_refused(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, _ = bot_client
    headers = github_headers(ISSUE_OPENED, "issues")
    tampered = ISSUE_OPENED.replace(b"Codertocat", b"Mallory")
    assert (await client.post("/webhook", data=tampered, headers=headers)).status == 401


async def test_sha1_only_is_refused_by_default(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    import hashlib
    import hmac

    client, _ = bot_client
    headers = github_headers(ISSUE_OPENED, "issues")
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET.encode(), ISSUE_OPENED, hashlib.sha1).hexdigest()
    response = await client.post("/webhook", data=ISSUE_OPENED, headers=headers)
    assert response.status == 401
    assert "allow_sha1" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"payload=", "application/x-www-form-urlencoded"),
        (b"{}", "text/plain"),
    ],
)
async def test_bad_payloads_are_400(bot_client: tuple[AppClient, FakeGitHub], body: bytes, content_type: str) -> None:
    client, _ = bot_client
    headers = github_headers(body, "issues", **{"Content-Type": content_type})
    assert (await client.post("/webhook", data=body, headers=headers)).status == 400


async def test_oversized_body_is_413(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, _ = bot_client
    body = b"{" + b" " * 300_000 + b"}"
    response = await client.post("/webhook", data=body, headers=github_headers(body, "issues"))
    assert response.status == 413


async def test_healthz_and_metrics(bot_client: tuple[AppClient, FakeGitHub]) -> None:
    client, _ = bot_client
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["pending"] == 0
    await client.post("/webhook", data=ISSUE_OPENED, headers=github_headers(ISSUE_OPENED, "issues"))
    await wait_idle(client)
    text = await (await client.get("/metrics")).text()
    assert 'hookbot_deliveries_total{event="issues",outcome="accepted"}' in text
