"""GitHub clients against the fake GitHub API: App tokens, the pinned origin, dry-run, and faults end to end
(5xx, rate limits, a comment created but its answer lost, permanent 4xx)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import BadRequest, GitHubBroken, HTTPException, RateLimitExceeded
from gidgethub.sansio import RateLimit
from gidgethub.sansio import decipher_response as gidgethub_decipher

from bot.context import ActionLog
from bot.github import GitHubClients, UntrustedURLError, is_permanent, rate_limit_wait
from bot.github_calls import decipher_response
from bot.github_webhook import delivery_from_github
from bot.inbox import journal_path, recent_deliveries
from bot.metrics import REGISTRY
from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from bot.settings import GitHubSettings
from tests.fake_github import FakeGitHub, Fault
from tests.helpers import AppClient, fixture_bytes, github_headers, make_settings


@pytest.fixture(scope="module")
def app_key() -> tuple[str, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


async def test_app_installation_tokens_are_fetched_once_and_cached(
    fake_github: tuple[FakeGitHub, str], app_key: tuple[str, rsa.RSAPublicKey]
) -> None:
    fake, url = fake_github
    pem, public_key = app_key
    clients = GitHubClients(GitHubSettings(app_id="4242", private_key=pem, api_url=url), dry_run=False)
    try:
        for _ in range(3):
            gh = await clients.for_installation(77, ActionLog())
            await gh.post("/repos/o/r/issues/1/comments", data={"body": "hi"})
        other = await clients.for_installation(78, ActionLog())
        await other.post("/repos/o/r/issues/2/comments", data={"body": "hi"})
    finally:
        await clients.close()
    token_requests = fake.calls("POST", "/app/installations/")
    assert [r.path for r in token_requests] == [
        "/app/installations/77/access_tokens",
        "/app/installations/78/access_tokens",
    ]
    bearer = token_requests[0].headers["Authorization"].removeprefix("bearer ").removeprefix("Bearer ")
    claims = jwt.decode(bearer, public_key, algorithms=["RS256"])
    assert claims["iss"] == "4242"
    comment_auth = [r.headers["Authorization"] for r in fake.calls("POST", "/repos/")]
    assert comment_auth == ["token ghs_installation_1"] * 3 + ["token ghs_installation_2"]


@pytest.mark.parametrize(("fixture", "runs"), [("issues.opened", True), ("issues.edited", False)])
async def test_only_a_delivery_some_plugin_handles_needs_a_github_client(
    fake_github: tuple[FakeGitHub, str], app_key: tuple[str, rsa.RSAPublicKey], tmp_path: Path, fixture: str, runs: bool
) -> None:
    """With the App's token endpoint down, a greeting fails (and is retried later), but an event no plugin
    handles is finished without asking GitHub for anything."""
    fake, url = fake_github
    fake.faults.append(Fault("POST", "/app/installations/", status=500, times=10))
    settings = make_settings(tmp_path, GITHUB_APP_ID="4242", GITHUB_PRIVATE_KEY=app_key[0], GITHUB_API_URL=url)
    runtime = Runtime.build(settings, secrets_=webhook_secrets(settings))
    payload = {**orjson.loads(fixture_bytes(f"github/{fixture}.json")), "installation": {"id": 77}}
    body = orjson.dumps(payload)
    delivery = delivery_from_github(
        body, event="issues", delivery_id=f"auth-{fixture}", content_type="application/json", source="github-http"
    )
    try:
        result = await runtime.dispatcher.dispatch(delivery)
    finally:
        await runtime.close()
    if runs:
        assert [(o.handler, o.status) for o in result.outcomes] == [("github-auth", "failed")]
        assert len(fake.calls("POST", "/app/installations/")) == 1
    else:
        assert result.ok and {o.status for o in result.outcomes} == {"skipped"}
        assert fake.requests == []


async def test_requests_never_leave_the_configured_api(fake_github: tuple[FakeGitHub, str]) -> None:
    fake, url = fake_github
    clients = GitHubClients(GitHubSettings(token="t", api_url=url), dry_run=False)
    try:
        gh = await clients.for_installation(None, ActionLog())
        for target in ("https://evil.example/repos/o/r", url.replace("127.0.0.1", "localhost") + "/x"):
            with pytest.raises(UntrustedURLError):
                await gh.getitem(target)
    finally:
        await clients.close()
    assert fake.requests == []


async def test_dry_run_records_writes_without_sending_them(fake_github: tuple[FakeGitHub, str]) -> None:
    fake, url = fake_github
    clients = GitHubClients(GitHubSettings(api_url=url), dry_run=True)
    actions = ActionLog(dry_run=True)
    try:
        gh = await clients.for_installation(None, actions)
        assert await gh.getitem("/repos/o/r/issues/1/comments") == []
        await gh.post("/repos/o/r/issues/1/comments", data={"body": "hello\n\n<!-- hookbot:greeter -->"})
        await gh.patch("/repos/o/r/issues/1", data={"state": "closed"})
    finally:
        await clients.close()
    assert fake.requests == []
    assert actions.lines == [
        "[dry-run] comment on o/r#1: hello",
        '[dry-run] PATCH /repos/o/r/issues/1 {"state":"closed"}',
    ]


async def test_dry_run_with_a_token_reads_from_github(fake_github: tuple[FakeGitHub, str], tmp_path: Path) -> None:
    fake, url = fake_github
    clients = GitHubClients(GitHubSettings(token="t", api_url=url), dry_run=True)
    try:
        gh = await clients.for_installation(None, ActionLog(dry_run=True))
        await gh.getitem("/repos/o/r/issues/1/comments")
        await gh.post("/repos/o/r/issues/1/comments", data={"body": "x"})
    finally:
        await clients.close()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/repos/o/r/issues/1/comments")]


async def test_plain_and_templated_calls_send_the_same_requests(fake_github: tuple[FakeGitHub, str]) -> None:
    """The fast path for plain calls and gidgethub's own path (taken for URI templates) ask GitHub the same."""
    fake, url = fake_github
    clients = GitHubClients(GitHubSettings(token="ghp_same", api_url=url + "/"), dry_run=False)
    try:
        gh = await clients.for_installation(None, ActionLog())
        plain = await gh.post("/repos/o/r/issues/1/comments", data={"body": "héllo"})
        templated = await gh.post(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            {"owner": "o", "repo": "r", "number": 1},
            data={"body": "héllo"},
        )
        listed = [comment async for comment in gh.getiter(url + "/repos/o/r/issues/1/comments")]
    finally:
        await clients.close()
    assert [plain["body"], templated["body"]] == ["héllo", "héllo"]
    assert listed == [plain, templated]
    first, second, third = fake.requests
    assert (first.method, first.path, first.json) == (second.method, second.path, second.json)
    assert (third.method, third.path) == ("GET", "/repos/o/r/issues/1/comments")
    for request in (first, second, third):
        assert request.headers["Authorization"] == "token ghp_same"
        assert request.headers["Accept"] == "application/vnd.github.v3+json"
        assert request.headers["User-Agent"].startswith("hookbot/")
    assert first.headers["Content-Type"] == second.headers["Content-Type"] == "application/json; charset=utf-8"


RATE_HEADERS = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999", "x-ratelimit-reset": "1700000000"}
NEXT_AND_LAST = '<https://api.github.com/r?page=2>; rel="next", <https://api.github.com/r?page=9>; rel="last"'


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, {"content-type": "application/json; charset=utf-8", **RATE_HEADERS}, b'[{"body": "x"}]'),
        (200, {"content-type": "application/json", "link": NEXT_AND_LAST}, b'{"items": [1, 2]}'),
        (200, {"content-type": "application/json", "link": '<https://api.github.com/r?page=1>; rel="prev"'}, b"[]"),
        (201, {"content-type": "Application/JSON; Charset=UTF-8"}, '{"body": "h\u00e9"}'.encode()),
        (204, {"content-type": "application/json"}, b""),
        (200, {"content-type": "text/plain; charset=utf-8"}, b"plain words"),
        (200, {"content-type": "application/json; charset=latin-1"}, b'"caf\xe9"'),
        (200, {}, b""),
    ],
)
def test_deciphering_answers_as_gidgethub_does(status: int, headers: dict[str, str], body: bytes) -> None:
    data, rate, more = decipher_response(status, headers, body)
    expected_data, expected_rate, expected_more = gidgethub_decipher(status, headers, body)
    assert (data, more) == (expected_data, expected_more)
    assert rate_fields(rate) == rate_fields(expected_rate)


def rate_fields(rate: RateLimit | None) -> tuple[int, int, object] | None:
    return None if rate is None else (rate.limit, rate.remaining, rate.reset_datetime)


@pytest.mark.parametrize(
    ("status", "error"), [(404, BadRequest), (422, HTTPException), (500, GitHubBroken), (403, RateLimitExceeded)]
)
def test_error_answers_raise_gidgethub_exceptions(status: int, error: type[Exception]) -> None:
    headers = {"content-type": "application/json; charset=utf-8", **RATE_HEADERS, "x-ratelimit-remaining": "0"}
    with pytest.raises(error):
        decipher_response(status, headers, b'{"message": "no", "errors": [{"code": "invalid", "field": "x"}]}')


ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
COMMENTS = "/repos/Codertocat/Hello-World/issues/1/comments"


@pytest.fixture
async def bot(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> tuple[AppClient, FakeGitHub, Path]:
    fake, url = fake_github
    settings = make_settings(
        tmp_path, "[server]\nretry_base_seconds = 0.05\n", GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url
    )
    client: AppClient = await aiohttp_client(create_app(Runtime.build(settings, secrets_=webhook_secrets(settings))))
    return client, fake, tmp_path / "state"


async def deliver_and_settle(client: AppClient) -> None:
    response = await client.post("/webhook", data=ISSUE_OPENED, headers=github_headers(ISSUE_OPENED, "issues"))
    assert response.status == 202
    for _ in range(400):
        if (await (await client.get("/healthz")).json())["pending"] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("delivery still pending")


def journal_states(state_dir: Path) -> list[tuple[str, int]]:
    return [(row.state, row.attempts) for row in recent_deliveries(journal_path(state_dir))]


@pytest.mark.parametrize("status", [502, 503])
async def test_reads_are_retried_after_5xx(bot: tuple[AppClient, FakeGitHub, Path], status: int) -> None:
    client, fake, state = bot
    fake.faults.append(Fault("GET", COMMENTS, status=status, times=2))
    await deliver_and_settle(client)
    assert len(fake.calls("GET", COMMENTS)) == 3
    assert len(fake.comments[COMMENTS]) == 1
    assert journal_states(state) == [("done", 1)]  # absorbed by the client: one delivery attempt
    assert REGISTRY.get_sample_value("hookbot_github_requests_total", {"method": "GET", "status": str(status)})
    assert REGISTRY.get_sample_value("hookbot_github_rate_limit_remaining") == fake.rate_remaining
    processed = REGISTRY.get_sample_value("hookbot_deliveries_processed_total", {"event": "issues", "outcome": "done"})
    assert processed and processed >= 1


@pytest.mark.parametrize(
    "limit_headers",
    [
        {"Retry-After": "1"},  # secondary rate limit
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{reset}"},  # primary: wait for the reset
    ],
)
async def test_rate_limits_are_waited_out_even_for_a_post(
    bot: tuple[AppClient, FakeGitHub, Path], limit_headers: dict[str, str]
) -> None:
    client, fake, state = bot
    headers = {name: value.format(reset=int(time.time())) for name, value in limit_headers.items()}
    fake.faults.append(Fault("POST", COMMENTS, status=403, headers=headers))  # GitHub refused it: safe to repeat
    started = time.monotonic()
    await deliver_and_settle(client)
    assert time.monotonic() - started >= 0.9
    assert len(fake.calls("POST", COMMENTS)) == 2
    assert len(fake.comments[COMMENTS]) == 1
    assert journal_states(state) == [("done", 1)]


async def test_a_post_answered_502_is_not_repeated_blindly(bot: tuple[AppClient, FakeGitHub, Path]) -> None:
    client, fake, state = bot
    fake.faults.append(Fault("POST", COMMENTS, status=502))
    await deliver_and_settle(client)
    # The client did not repeat the POST; the inbox retried the delivery, whose marker check found no comment.
    assert len(fake.calls("POST", COMMENTS)) == 2
    assert len(fake.comments[COMMENTS]) == 1
    assert journal_states(state) == [("done", 2)]


async def test_comment_created_but_connection_dropped_is_found_by_its_marker(
    bot: tuple[AppClient, FakeGitHub, Path],
) -> None:
    client, fake, state = bot
    fake.faults.append(Fault("POST", COMMENTS, drop=True))
    await deliver_and_settle(client)
    assert len(fake.calls("POST", COMMENTS)) == 1  # the retry saw the marker and did not post again
    assert len(fake.comments[COMMENTS]) == 1
    assert journal_states(state) == [("done", 2)]
    assert REGISTRY.get_sample_value("hookbot_github_requests_total", {"method": "POST", "status": "error"})


async def test_permanent_4xx_fails_the_handler_and_is_not_retried(bot: tuple[AppClient, FakeGitHub, Path]) -> None:
    client, fake, state = bot
    fake.faults.append(Fault("POST", COMMENTS, status=404))
    await deliver_and_settle(client)
    assert len(fake.calls("POST", COMMENTS)) == 1
    assert journal_states(state) == [("failed", 1)]
    assert "greeter: BadRequest" in (recent_deliveries(journal_path(state))[0].error or "")


def http_error(status: int, headers: dict[str, str], message: str = "x") -> HTTPException:
    return BadRequest(HTTPStatus(status), message, headers=headers)


def test_rate_limit_classification() -> None:
    now = 1_000_000.0
    assert rate_limit_wait(http_error(403, {"retry-after": "7"}), now) == 7.0
    primary = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 30)}
    assert rate_limit_wait(http_error(403, primary), now) == 31.0
    assert rate_limit_wait(http_error(429, {}), now) == 60.0
    assert rate_limit_wait(http_error(403, {}, "You have exceeded a secondary rate limit"), now) == 60.0
    assert rate_limit_wait(http_error(403, {}, "Resource not accessible by integration"), now) is None
    assert is_permanent(http_error(404, {})) and is_permanent(http_error(422, {}))
    assert not is_permanent(http_error(403, {"retry-after": "1"}))
    assert not is_permanent(http_error(409, {}))
    assert not is_permanent(GitHubBroken(HTTPStatus(502)))
    limit = RateLimit(limit=5000, remaining=0, reset_epoch=now + 60)
    assert not is_permanent(RateLimitExceeded(limit))
    assert not is_permanent(ConnectionResetError())


def test_the_client_overrides_only_gidgethubs_public_methods_and_documented_hooks() -> None:
    """No private gidgethub internals (``_make_request`` was overridden once, pinning a private request path)."""
    from gidgethub import abc as gh_abc

    from bot.github import DryRunGitHubAPI, HookbotGitHubAPI
    from bot.github_calls import PlainCalls

    documented = {"_request", "sleep", "manage_rate_limit", "handle_rate_limit_error"}
    for client in (PlainCalls, HookbotGitHubAPI, DryRunGitHubAPI):
        methods = {name for name, value in vars(client).items() if callable(value) and not name.startswith("__")}
        overridden = {name for name in methods if hasattr(gh_abc.GitHubAPI, name)}
        assert {name for name in overridden if name.startswith("_")} <= documented, client


async def test_templated_and_plain_calls_give_the_same_requests() -> None:
    """The fast path builds a plain call exactly as gidgethub builds a templated one."""
    from bot.testing import FakeGitHub

    github = FakeGitHub()
    gh = github.client(ActionLog())
    await gh.post(
        "/repos/{owner}/{repo}/issues/{number}/labels", {"owner": "o", "repo": "r", "number": 1}, data={"a": 1}
    )
    await gh.post("/repos/o/r/issues/1/labels", data={"a": 1})
    assert [
        item async for item in gh.getiter("/repos/{owner}/{repo}/issues/1/labels", {"owner": "o", "repo": "r"})
    ] == [item async for item in gh.getiter("/repos/o/r/issues/1/labels")]
    assert github.requests[0] == github.requests[1] == ("POST", "/repos/o/r/issues/1/labels", {"a": 1})
