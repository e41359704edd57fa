"""The whole chain: GitHub -> relay (``hookbot serve`` or the Function URL entry) -> moto's SNS -> an SQS queue
subscribed to the topic (raw delivery off, so the SNS envelope and attributes arrive) -> that envelope as a
Lambda SNS record -> ``bot.aws_lambda.handler`` -> a comment on the fake GitHub.

moto signs what it sends (SignatureVersion 2, a certificate of its own) and serves that certificate at its own
origin, so the SNS signature is checked too: the worker runs with ``verify_in_lambda = true`` and the only
test-side step is the certificate fetcher's ``get`` reading ``https://sns.us-east-1.amazonaws.com/<name>.pem``
from moto's address, where moto keeps it (real HTTP, moto's real certificate, moto's real signature; the SigningCertURL
itself passes the production check unchanged).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.aws_lambda import LambdaEntry, RecordsFailed
from bot.github_webhook import sign
from bot.runtime import Runtime
from bot.server import create_app
from bot.sns_fetch import SnsFetcher
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, Chain, fixture_bytes, github_headers, make_settings
from tests.lambda_events import function_url_event, sns_event

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
COMMENTS = "/repos/Codertocat/Hello-World/issues/1/comments"


@pytest.fixture
def chain(moto: str) -> Chain:
    return Chain()


def relay_settings(tmp_path: Path, chain: Chain, github_url: str, extra: str = "") -> Any:
    return make_settings(
        tmp_path,
        f'[relay]\ntopic_arn = "{chain.topic_arn}"\n{extra}[sns]\ntopic_arns = ["{chain.topic_arn}"]\n',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=github_url,
    )


def worker(tmp_path: Path, chain: Chain, github_url: str, moto_url: str) -> LambdaEntry:
    """The Lambda worker behind the topic, verifying SNS signatures against moto's certificates."""
    settings = make_settings(
        tmp_path,
        f'[sns]\ntopic_arns = ["{chain.topic_arn}"]\nverify_in_lambda = true\nrequire_github_signature = true\n',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=github_url,
    )
    runtime = Runtime.build(settings)

    async def from_moto(url: str) -> bytes:
        # moto's one server tells services apart by the credential scope of a request's Authorization header.
        scope = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, SignedHeaders=host"
        async with (
            aiohttp.ClientSession() as session,
            session.get(moto_url + urlsplit(url).path, headers={"Authorization": scope}) as response,
        ):
            response.raise_for_status()
            return await response.read()

    runtime.sns_fetcher = SnsFetcher(from_moto)
    return LambdaEntry(runtime)


async def test_serve_relays_to_sns_and_the_lambda_worker_comments(
    tmp_path: Path,
    chain: Chain,
    moto: str,
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
) -> None:
    fake, github_url = fake_github
    client: AppClient = await aiohttp_client(create_app(Runtime.build(relay_settings(tmp_path, chain, github_url))))
    headers = github_headers(ISSUE_OPENED, "issues", delivery_id="relay-1")
    response = await client.post("/webhook", data=ISSUE_OPENED, headers=headers)
    assert response.status == 200 and (await response.json())["status"] == "relayed"
    forged = github_headers(ISSUE_OPENED, "issues", secret="wrong")
    assert (await client.post("/webhook", data=ISSUE_OPENED, headers=forged)).status == 401
    ping = fixture_bytes("github/ping.json")
    assert (await client.post("/webhook", data=ping, headers=github_headers(ping, "ping"))).status == 200
    await asyncio.sleep(0)
    assert fake.requests == []  # relay mode: nothing handled here

    (envelope,) = await asyncio.to_thread(chain.received)  # the forged delivery and the ping never went out
    assert envelope["Message"] == ISSUE_OPENED.decode()  # GitHub's body, byte for byte
    assert {name: value["Value"] for name, value in envelope["MessageAttributes"].items()} == {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "relay-1",
        "X-Hub-Signature-256": headers["X-Hub-Signature-256"],
    }

    (tmp_path / "worker").mkdir()
    entry = worker(tmp_path / "worker", chain, github_url, moto)
    result = await asyncio.to_thread(entry, sns_event(envelope), None)
    assert result == {"deliveries": [{"delivery": "relay-1", "event": "issues.opened", "status": "ok"}]}
    assert [path for path, _ in fake.posted_comments()] == [COMMENTS]

    # Both signatures matter: the same envelope with the body changed fails SNS's, and with the body and the
    # attributes (which SNS does not sign) changed together it still fails the GitHub HMAC.
    tampered = envelope | {"Message": envelope["Message"].replace("Codertocat", "Mallory")}
    with pytest.raises(RecordsFailed, match="SNS signature"):
        await asyncio.to_thread(entry, sns_event(tampered), None)
    relabelled = envelope | {
        "MessageAttributes": envelope["MessageAttributes"]
        | {"X-Hub-Signature-256": {"Type": "String", "Value": sign(ISSUE_OPENED, b"guess")}}
    }
    with pytest.raises(RecordsFailed, match="does not match"):
        await asyncio.to_thread(entry, sns_event(relabelled), None)
    assert len(fake.posted_comments()) == 1


async def test_function_url_relay_and_also_handle(
    tmp_path: Path, chain: Chain, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, github_url = fake_github
    entry = LambdaEntry(Runtime.build(relay_settings(tmp_path, chain, github_url, "also_handle = true\n")))
    event = function_url_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues", delivery_id="url-1"), encode=True)
    answer = await asyncio.to_thread(entry, event, None)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "handled"
    assert len(fake.posted_comments()) == 1  # also_handle: handled here too
    (envelope,) = await asyncio.to_thread(chain.received)
    assert envelope["Message"].encode() == ISSUE_OPENED
    forged = function_url_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues", secret="wrong"))
    assert (await asyncio.to_thread(entry, forged, None))["statusCode"] == 401
    assert await asyncio.to_thread(chain.received) == []


async def test_publish_failure_is_a_generic_502_with_the_detail_in_the_log(
    tmp_path: Path,
    chain: Chain,
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, github_url = fake_github
    settings = relay_settings(tmp_path, chain, github_url)
    chain.sns.delete_topic(TopicArn=chain.topic_arn)
    client: AppClient = await aiohttp_client(create_app(Runtime.build(settings)))
    response = await client.post("/webhook", data=ISSUE_OPENED, headers=github_headers(ISSUE_OPENED, "issues"))
    answer = await response.text()
    # GitHub shows the answer in its delivery log: no ARN, account id or botocore wording may reach it
    assert response.status == 502 and "publishing the delivery failed" in answer
    assert "arn:" not in answer and chain.topic_arn not in answer and "NotFound" not in answer
    detail = [r.getMessage() for r in caplog.records if r.name == "hookbot.relay"]
    assert any(chain.topic_arn in line and "NotFound" in line for line in detail)
