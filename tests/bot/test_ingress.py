"""The one ingress pipeline, run through every door: the same cases over the aiohttp server (POST /webhook and
POST /sns, real HTTP) and through the Lambda entry (Function URL events and SNS records)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.aws_lambda import LambdaEntry, RecordsFailed
from bot.github_webhook import sign
from bot.metrics import REGISTRY
from bot.runtime import Runtime
from bot.server import create_app
from bot.sns_fetch import SnsFetcher
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, fixture_bytes, github_headers, make_settings, wait_idle
from tests.lambda_events import function_url_event, sns_event
from tests.sns_signing import CERT_URL, TOPIC, CountingGet, Signer, notification, sns_timestamp

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
COMMENTS = "/repos/Codertocat/Hello-World/issues/1/comments"
GITHUB_DOORS = ["webhook", "function-url"]
SNS_DOORS = ["sns-http", "lambda-sns"]
DOORS = GITHUB_DOORS + SNS_DOORS
ATTRIBUTES = ("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256")


@dataclass
class Doors:
    """hookbot behind each door, one Runtime per door (a Lambda invocation closes what its loop made)."""

    client: AppClient
    entry: LambdaEntry
    fake: FakeGitHub
    signer: Signer
    runtimes: tuple[Runtime, Runtime]

    def configure_sns(self, **changes: Any) -> None:
        """Change ``[sns]`` settings behind every door (the pipeline reads them per request)."""
        for runtime in self.runtimes:
            runtime.settings = dataclasses.replace(
                runtime.settings, sns=dataclasses.replace(runtime.settings.sns, **changes)
            )

    async def send_sns(
        self, door: str, message: str, attributes: dict[str, str], **fields: Any
    ) -> tuple[int, dict[str, Any]]:
        """A raw SNS Notification (signed by the test signer) through an SNS door."""
        document = self.signer.sign(notification(message, attributes=attributes, **fields))
        if door == "sns-http":
            response = await self.client.post("/sns", data=orjson.dumps(document))
            return response.status, await response.json()
        try:
            result = await asyncio.to_thread(self.entry, sns_event(document), None)
        except RecordsFailed as exc:
            found = re.search(r"\((\d{3})\)", str(exc))
            return int(found.group(1)) if found else 500, {"error": str(exc)}
        return 200, result["deliveries"][0]

    async def send(self, door: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """A delivery through ``door``; GitHub's headers become message attributes at the SNS doors."""
        if door == "webhook":
            response = await self.client.post("/webhook", data=body, headers=headers)
            return response.status, await response.json()
        if door == "function-url":
            answer = await asyncio.to_thread(self.entry, function_url_event(body, headers), None)
            return answer["statusCode"], json.loads(answer["body"])
        attributes = {name: headers[name] for name in ATTRIBUTES if name in headers}
        return await self.send_sns(door, body.decode(), attributes)

    async def settle(self, door: str) -> None:
        if door in ("webhook", "sns-http"):
            await wait_idle(self.client)


def accepted(door: str, status: int, document: dict[str, Any]) -> bool:
    if door in ("webhook", "sns-http"):
        return status == 202
    return status == 200 and document.get("status") in ("handled", "ok")


@pytest.fixture
async def doors(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> Doors:
    fake, url = fake_github
    signer = Signer()

    def runtime(name: str, config: str = "") -> Runtime:
        settings = make_settings(
            tmp_path / name,
            f'[sns]\ntopic_arns = ["{TOPIC}"]\n[server]\nmax_body_bytes = 200000\n{config}',
            GITHUB_TOKEN="ghp_test",
            GITHUB_API_URL=url,
        )
        built = Runtime.build(settings)
        built.sns_fetcher = SnsFetcher(CountingGet({CERT_URL: signer.pem}))
        return built

    (tmp_path / "server").mkdir()
    (tmp_path / "lambda").mkdir()
    server, lambda_ = runtime("server"), runtime("lambda")
    client: AppClient = await aiohttp_client(create_app(server))
    return Doors(client, LambdaEntry(lambda_), fake, signer, (server, lambda_))


@pytest.mark.parametrize("door", DOORS)
async def test_a_signed_delivery_is_taken_at_every_door(doors: Doors, door: str) -> None:
    status, document = await doors.send(door, github_headers(ISSUE_OPENED, "issues"), ISSUE_OPENED)
    assert accepted(door, status, document), (status, document)
    await doors.settle(door)
    assert [path for path, _ in doors.fake.posted_comments()] == [COMMENTS]


NOT_ASCII = "sha256=" + "\u00e9" * 64


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Hub-Signature-256": NOT_ASCII}, 401),
        ({"X-Hub-Signature-256": "sha256=" + "\u0660" * 64}, 401),  # Arabic-Indic digits: \d would take them
        ({"X-GitHub-Event": "Issues"}, 400),
        ({"X-GitHub-Event": "issues.opened"}, 400),
        ({"X-GitHub-Event": "x" * 65}, 400),
        ({"X-GitHub-Event": "../../etc"}, 400),
    ],
)
async def test_bad_header_values_are_refused_at_every_door(
    doors: Doors, caplog: pytest.LogCaptureFixture, door: str, change: dict[str, str], status: int
) -> None:
    headers = github_headers(ISSUE_OPENED, "issues") | change
    with caplog.at_level(logging.WARNING):
        got, document = await doors.send(door, headers, ISSUE_OPENED)
    assert got == status, document
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert not any(r.exc_info for r in caplog.records)
    assert doors.fake.requests == []


@pytest.mark.parametrize("door", GITHUB_DOORS)
async def test_a_non_ascii_sha1_signature_is_401_not_500(doors: Doors, door: str) -> None:
    headers = github_headers(ISSUE_OPENED, "issues")
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + "\u00e9" * 40
    status, document = await doors.send(door, headers, ISSUE_OPENED)
    assert status == 401, document


@pytest.mark.parametrize("door", GITHUB_DOORS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip"])
async def test_compressed_bodies_are_415(doors: Doors, door: str, encoding: str) -> None:
    headers = github_headers(ISSUE_OPENED, "issues", **{"Content-Encoding": encoding})
    status, document = await doors.send(door, headers, ISSUE_OPENED)
    assert status == 415, document
    assert doors.fake.requests == []


async def test_identity_encoding_is_taken(doors: Doors) -> None:
    headers = github_headers(ISSUE_OPENED, "issues", **{"Content-Encoding": "identity"})
    assert (await doors.send("webhook", headers, ISSUE_OPENED))[0] == 202


async def raw_answer(client: AppClient, head: str) -> bytes:
    """Send a request head whose body never comes; return the status line the server answers without it."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(head.encode("utf-8"))
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "extra",
    [
        "Content-Encoding: gzip\r\nX-GitHub-Event: issues\r\nX-Hub-Signature-256: sha256=" + "0" * 64,
        "X-GitHub-Event: issues\r\nX-Hub-Signature-256: " + NOT_ASCII,
        "X-Hub-Signature-256: sha256=" + "0" * 64 + "\r\nX-GitHub-Event: NOT-AN-EVENT",
    ],
)
async def test_header_refusals_come_before_the_body_is_read(doors: Doors, extra: str) -> None:
    head = (
        "POST /webhook HTTP/1.1\r\nHost: hookbot\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
        f"{extra}\r\n\r\n{{"
    )
    status_line = await raw_answer(doors.client, head)
    assert re.match(rb"HTTP/1\.1 4(01|00|15) ", status_line), status_line


@pytest.mark.parametrize("door", DOORS)
async def test_metric_labels_take_only_documented_event_names(doors: Doors, door: str) -> None:
    """X-GitHub-Event is signed by nothing: made-up names (valid in form) count as ``other``, never as series."""
    made_up = [f"zz_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    for index, event in enumerate(made_up):
        body = ISSUE_OPENED.replace(b'"number": 1', f'"number": {index + 100}'.encode())
        await doors.send(door, github_headers(body, event), body)
    await doors.settle(door)
    text = (await (await doors.client.get("/metrics")).text()) if door == "webhook" else _registry_text()
    assert not any(event in text for event in made_up)
    assert 'event="other"' in text


def _registry_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


async def test_refusal_logs_are_rate_limited_in_lambda(doors: Doors, caplog: pytest.LogCaptureFixture) -> None:
    headers = github_headers(ISSUE_OPENED, "issues") | {"X-Hub-Signature-256": sign(ISSUE_OPENED, b"forged")}
    with caplog.at_level(logging.WARNING, logger="hookbot.lambda"):
        for _ in range(40):
            assert (await doors.send("function-url", headers, ISSUE_OPENED))[0] == 401
    lines = [r for r in caplog.records if r.name == "hookbot.lambda"]
    assert 1 <= len(lines) <= 10


@pytest.mark.parametrize(
    "event",
    [
        [],
        [{"EventSource": "aws:sns"}],
        "a string",
        42,
        None,
        {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]},
        {"Records": [{"EventSource": "aws:sns", "Sns": {}}, {"eventSource": "aws:s3"}]},
        {"detail-type": "Scheduled Event"},
    ],
)
async def test_lambda_events_of_unknown_shape_are_one_refusal_and_a_normal_return(
    doors: Doors, caplog: pytest.LogCaptureFixture, event: Any
) -> None:
    with caplog.at_level(logging.WARNING):
        result = await asyncio.to_thread(doors.entry, event, None)
    assert "refused" in result
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and not lines[0].exc_info


@pytest.mark.parametrize("door", DOORS)
async def test_a_signed_body_replayed_under_new_delivery_ids_is_a_duplicate(doors: Doors, door: str) -> None:
    """The HMAC covers the body, not X-GitHub-Delivery: a replay under a fresh id must not act again."""
    first = await doors.send(door, github_headers(ISSUE_OPENED, "issues"), ISSUE_OPENED)
    assert accepted(door, *first), first
    await doors.settle(door)
    for _ in range(3):
        status, document = await doors.send(door, github_headers(ISSUE_OPENED, "issues"), ISSUE_OPENED)
        assert status == 200 and document["status"] in ("already handled", "duplicate"), (status, document)
    await doors.settle(door)
    assert len(doors.fake.posted_comments()) == 1


@pytest.mark.parametrize("door", DOORS)
async def test_a_replay_with_another_event_name_is_a_duplicate_too(doors: Doors, door: str) -> None:
    assert accepted(door, *await doors.send(door, github_headers(ISSUE_OPENED, "issues"), ISSUE_OPENED))
    await doors.settle(door)
    status, document = await doors.send(door, github_headers(ISSUE_OPENED, "issue_comment"), ISSUE_OPENED)
    assert status == 200, document
    await doors.settle(door)
    assert len(doors.fake.posted_comments()) == 1


@pytest.mark.parametrize("door", SNS_DOORS)
@pytest.mark.parametrize("verify_in_lambda", [False, True])
@pytest.mark.parametrize(
    "attributes",
    [
        {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "forged-1"},  # the signature attribute removed
        {},  # the legacy shape: no attributes at all
    ],
)
async def test_nothing_unsigned_acts_through_sns_by_default(
    doors: Doors, door: str, verify_in_lambda: bool, attributes: dict[str, str]
) -> None:
    """Anyone allowed sns:Publish could otherwise forge any event: the GitHub HMAC is required at both SNS doors,
    in Lambda whether or not it checks the SNS signature too."""
    doors.configure_sns(verify_in_lambda=verify_in_lambda)
    status, document = await doors.send_sns(door, ISSUE_OPENED.decode(), attributes)
    assert status == 401 and "X-Hub-Signature-256" in document["error"], document
    assert doors.fake.requests == []


@pytest.mark.parametrize("door", SNS_DOORS)
async def test_the_legacy_shape_only_when_switched_off_and_never_on_a_guess(doors: Doors, door: str) -> None:
    doors.configure_sns(require_github_signature=False)
    status, document = await doors.send_sns(door, ISSUE_OPENED.decode(), {})
    assert accepted(door, status, document), document
    await doors.settle(door)
    assert len(doors.fake.posted_comments()) == 1
    # installation.created, repository.created and organization.created share their keys: refused, not guessed.
    ambiguous = {"action": "created", "installation": {"id": 1}, "sender": {"login": "octocat"}}
    status, document = await doors.send_sns(door, json.dumps(ambiguous), {})
    assert status == 400 and "ambiguous" in document["error"], document


@pytest.mark.parametrize("door", SNS_DOORS)
async def test_the_age_window_holds_on_http_but_not_for_records_lambda_hands_over(doors: Doors, door: str) -> None:
    """SNS retries a Lambda subscription for days with the same timestamp: in Lambda (even with verify_in_lambda)
    a late genuine record is taken; over HTTP the window stays."""
    doors.configure_sns(verify_in_lambda=True)
    hours_ago = sns_timestamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=12))
    headers = github_headers(ISSUE_OPENED, "issues")
    attributes = {name: headers[name] for name in ATTRIBUTES}
    status, document = await doors.send_sns(door, ISSUE_OPENED.decode(), attributes, timestamp=hours_ago)
    if door == "sns-http":
        assert status == 401 and "max_age_seconds" in document["error"], document
    else:
        assert status == 200 and document["status"] == "ok", document
