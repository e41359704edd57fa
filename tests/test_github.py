"""GitHub clients against the fake GitHub API: App tokens, the pinned origin, dry-run."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.config import GitHubSettings
from bot.context import ActionLog
from bot.github import GitHubClients, UntrustedURLError
from tests.fake_github import FakeGitHub


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
