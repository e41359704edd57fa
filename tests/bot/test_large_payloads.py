"""Deliveries over SNS's 256 KiB through S3, end to end on moto: `hookbot serve` relaying, an SQS queue subscribed
to the topic standing in for the Lambda subscription, and the Lambda entry consuming; the pointer format checked
against AWS's own SNS Extended Client Library (`amazon-sns-extended-client`) both ways."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from sns_extended_client import SNSExtendedClientSession
from sns_extended_client.session import MESSAGE_POINTER_CLASS, RESERVED_ATTRIBUTE_NAME

from bot.aws_lambda import LambdaEntry, RecordsFailed
from bot.claim_check import POINTER_CLASS, SIZE_ATTRIBUTE
from bot.github_webhook import sign
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import SECRET, make_settings
from tests.lambda_events import sns_event
from tests.processes import ISSUE_OPENED, Server

BUCKET = "hookbot-payloads"
MIB = 1024 * 1024


@dataclass
class Chain:
    topic: str
    queue_url: str


def make_chain() -> Chain:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    topic = boto3.client("sns").create_topic(Name="hookbot-deliveries")["TopicArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="worker-stand-in")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return Chain(topic, queue_url)


def received(chain: Chain, count: int) -> list[dict[str, Any]]:
    """The SNS envelopes the subscribed queue got (what a Lambda subscription's record carries)."""
    sqs = boto3.client("sqs")
    documents: list[dict[str, Any]] = []
    for _ in range(50):
        answer = sqs.receive_message(QueueUrl=chain.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            documents.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=chain.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if len(documents) >= count:
            return documents
    raise AssertionError(f"{len(documents)} of {count} messages arrived")


def padded_issue(number: int, size: int) -> bytes:
    """A real issues.opened payload grown to ``size`` bytes (a long issue body), as a large delivery is."""
    payload = dict(ISSUE_OPENED, issue=dict(ISSUE_OPENED["issue"], number=number, body=""))
    base = len(orjson.dumps(payload))
    payload["issue"]["body"] = "x" * (size - base)
    body = orjson.dumps(payload)
    assert len(body) == size
    return body


def worker(tmp_path: Path, api_url: str, topic: str) -> LambdaEntry:
    tmp_path.mkdir(exist_ok=True)
    settings = make_settings(
        tmp_path,
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=api_url,
        SNS_TOPIC_ARNS=topic,
        HOOKBOT_RELAY_PAYLOAD_BUCKET=BUCKET,
    )
    return LambdaEntry(Runtime.build(settings))


def github_attributes(body: bytes, delivery: str) -> dict[str, dict[str, str]]:
    return {
        "X-GitHub-Event": {"DataType": "String", "StringValue": "issues"},
        "X-GitHub-Delivery": {"DataType": "String", "StringValue": delivery},
        "X-Hub-Signature-256": {"DataType": "String", "StringValue": sign(body, SECRET.encode())},
    }


async def test_1_and_20_mib_deliveries_are_relayed_through_s3_and_handled_once(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    fake, url = fake_github
    chain = make_chain()
    relay = Server(
        tmp_path,
        url,
        "",
        extra_env={"HOOKBOT_RELAY_TOPIC_ARN": chain.topic, "HOOKBOT_RELAY_PAYLOAD_BUCKET": BUCKET},
    )
    servers.append(relay)
    await relay.start()
    sizes = {1: 1 * MIB, 2: 20 * MIB}
    for number, size in sizes.items():
        assert await relay.post(padded_issue(number, size), f"large-{number}") == 200
    assert await relay.stop() == 0

    documents = received(chain, 2)
    for document in documents:  # each message is a pointer, small enough for SNS
        assert json.loads(document["Message"])[0] == POINTER_CLASS
        assert int(document["MessageAttributes"][SIZE_ATTRIBUTE]["Value"]) in sizes.values()
    entry = worker(tmp_path / "worker", url, chain.topic)
    for document in documents:
        event = sns_event(document)
        first = await asyncio.to_thread(entry, event, None)
        assert first["deliveries"][0]["status"] == "ok"
        again = await asyncio.to_thread(entry, event, None)  # SNS delivers at least once
        assert again["deliveries"][0]["status"] == "duplicate"
    assert fake.landed_comments() == {
        "/repos/Codertocat/Hello-World/issues/1/comments": 1,
        "/repos/Codertocat/Hello-World/issues/2/comments": 1,
    }


async def test_without_a_bucket_a_large_delivery_is_still_refused_413(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    _, url = fake_github
    chain = make_chain()
    relay = Server(tmp_path, url, "", extra_env={"HOOKBOT_RELAY_TOPIC_ARN": chain.topic})
    servers.append(relay)
    await relay.start()
    assert await relay.post(padded_issue(1, 300 * 1024), "too-large") == 413
    assert "set [relay] payload_bucket" in (tmp_path / "server.log").read_text()
    assert await relay.stop() == 0


async def test_what_hookbot_relays_is_what_the_extended_client_publishes(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    """hookbot's pointer message, compared with the one AWS's library makes for the same body and S3 key."""
    _, url = fake_github
    chain = make_chain()
    settings = make_settings(
        tmp_path,
        GITHUB_API_URL=url,
        HOOKBOT_RELAY_TOPIC_ARN=chain.topic,
        HOOKBOT_RELAY_PAYLOAD_BUCKET=BUCKET,
    )
    runtime = Runtime.build(settings)
    assert runtime.relay is not None
    body = padded_issue(7, 300 * 1024)
    from bot.github_webhook import delivery_from_github

    delivery = delivery_from_github(
        body, event="issues", delivery_id="ours", content_type="application/json", source="github-http"
    )
    await runtime.relay.publish(delivery, sign(body, SECRET.encode()))
    (document,) = received(chain, 1)
    pointer = json.loads(document["Message"])
    assert pointer[0] == MESSAGE_POINTER_CLASS
    assert document["MessageAttributes"][RESERVED_ATTRIBUTE_NAME] == {"Type": "Number", "Value": str(len(body))}
    stored = boto3.client("s3").get_object(Bucket=pointer[1]["s3BucketName"], Key=pointer[1]["s3Key"])
    assert stored["Body"].read() == body

    theirs = SNSExtendedClientSession().client("sns")
    theirs.large_payload_support = BUCKET
    attributes = {"S3Key": {"DataType": "String", "StringValue": pointer[1]["s3Key"]}}
    _, their_message = theirs._make_payload(attributes, body.decode(), None)
    assert document["Message"] == their_message


async def test_what_the_extended_client_publishes_is_handled(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    chain = make_chain()
    body = padded_issue(8, 400 * 1024)
    theirs = SNSExtendedClientSession().client("sns")
    theirs.large_payload_support = BUCKET
    theirs.publish(TopicArn=chain.topic, Message=body.decode(), MessageAttributes=github_attributes(body, "theirs"))
    (document,) = received(chain, 1)
    assert RESERVED_ATTRIBUTE_NAME in document["MessageAttributes"]
    entry = worker(tmp_path, url, chain.topic)
    result = await asyncio.to_thread(entry, sns_event(document), None)
    assert result["deliveries"][0] == {"delivery": "theirs", "event": "issues.opened", "status": "ok"}
    assert fake.landed_comments() == {"/repos/Codertocat/Hello-World/issues/8/comments": 1}


async def test_a_pointer_into_another_bucket_is_refused(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    chain = make_chain()
    body = padded_issue(9, 300 * 1024)
    boto3.client("s3").create_bucket(Bucket="someone-elses")
    theirs = SNSExtendedClientSession().client("sns")
    theirs.large_payload_support = "someone-elses"
    theirs.publish(TopicArn=chain.topic, Message=body.decode(), MessageAttributes=github_attributes(body, "foreign"))
    (document,) = received(chain, 1)
    entry = worker(tmp_path, url, chain.topic)
    with pytest.raises(RecordsFailed, match="points into bucket 'someone-elses'"):
        await asyncio.to_thread(entry, sns_event(document), None)
    assert fake.requests == []


async def test_a_fetched_body_with_a_wrong_signature_is_refused(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    """The HMAC is checked over the bytes fetched from S3: an object swapped in the bucket is not handled."""
    fake, url = fake_github
    chain = make_chain()
    body = padded_issue(10, 300 * 1024)
    theirs = SNSExtendedClientSession().client("sns")
    theirs.large_payload_support = BUCKET
    theirs.publish(TopicArn=chain.topic, Message=body.decode(), MessageAttributes=github_attributes(body, "swapped"))
    (document,) = received(chain, 1)
    pointer = json.loads(document["Message"])[1]
    boto3.client("s3").put_object(Bucket=BUCKET, Key=pointer["s3Key"], Body=padded_issue(11, 300 * 1024))
    entry = worker(tmp_path, url, chain.topic)
    with pytest.raises(RecordsFailed, match="401"):
        await asyncio.to_thread(entry, sns_event(document), None)
    assert fake.requests == []
