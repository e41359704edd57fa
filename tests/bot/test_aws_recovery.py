"""Recovery in the AWS stack: the scheduled sweep event, `hookbot dlq replay` of both dead-letter shapes (moto),
and the template's bucket, schedule and their permissions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml

from bot.aws_lambda import LambdaEntry
from bot.cli import main
from bot.dlq import LAMBDA_DESTINATION, SNS_REDRIVE, NotADeadLetter, dead_letter
from bot.github_webhook import sign
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, SECRET, make_settings
from tests.lambda_events import sns_event
from tests.processes import issue_body

HOOK = "/repos/Codertocat/Hello-World/hooks/1"


def attempt(id_: int, guid: str, minutes_ago: float, status_code: int) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(datetime.now(UTC).timestamp() - minutes_ago * 60, UTC)
    return {
        "id": id_,
        "guid": guid,
        "delivered_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": False,
        "status_code": status_code,
        "event": "issues",
        "action": "opened",
    }


# Newest first, as GitHub lists them: failures 5, 15 and 35 minutes ago, and one that succeeded.
LOG = [
    attempt(4, "g-recent", 5, 502),
    attempt(3, "g-ok", 8, 202),
    attempt(2, "g-earlier", 15, 0),
    attempt(1, "g-old", 35, 503),
]


def recovery_entry(tmp_path: Path, url: str, config: str = "") -> LambdaEntry:
    settings = make_settings(
        tmp_path,
        f'[github]\nhooks = ["Codertocat/Hello-World:1"]\n{config}',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=url,
    )
    return LambdaEntry(Runtime.build(settings))


@pytest.mark.parametrize(
    ("event", "config", "expected"),
    [
        ({"hookbot": "redeliver", "every": "10m"}, "", [2, 4]),  # the schedule's period: looks back 20 minutes
        ({"hookbot": "redeliver"}, "", [2, 4]),  # no period said: 10 minutes
        ({"hookbot": "redeliver"}, 'redeliver_every = "30m"\n', [1, 2, 4]),  # [github] redeliver_every
    ],
)
async def test_the_scheduled_sweep_event_asks_github_to_redeliver_what_failed(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], event: dict[str, str], config: str, expected: list[int]
) -> None:
    fake, url = fake_github
    fake.hook_deliveries[HOOK] = LOG
    entry = recovery_entry(tmp_path, url, config)
    result = await asyncio.to_thread(entry, event, None)
    assert sorted(id_ for _, id_ in fake.redelivered) == expected
    assert result["recovery"] == "done" and result["errors"] == []
    assert fake.posted_comments() == []


async def test_a_sweep_that_cannot_run_fails_nothing(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> None:
    _, url = fake_github
    entry = LambdaEntry(Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url)))
    result = await asyncio.to_thread(entry, {"hookbot": "redeliver", "every": "10m"}, None)
    assert result["recovery"] == "skipped"
    assert "set [github] hooks" in result["reason"]


# --- dlq replay ---------------------------------------------------------------------------------------------------


def test_dead_letter_shapes() -> None:
    envelope = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:t", "Message": "{}"}
    letter = dead_letter(json.dumps(envelope))
    assert letter.shape == SNS_REDRIVE
    assert letter.event["Records"][0]["Sns"]["MessageId"] == "m-1"
    record = {"version": "1.0", "requestContext": {"condition": "RetriesExhausted"}, "requestPayload": {"x": 1}}
    assert dead_letter(json.dumps(record)) == type(letter)(LAMBDA_DESTINATION, {"x": 1})
    for body in ("not json", "[]", '{"Type": "SubscriptionConfirmation"}'):
        with pytest.raises(NotADeadLetter):
            dead_letter(body)


def envelope_from_topic(topic: str, body: bytes, delivery: str, *, secret: str = SECRET) -> dict[str, Any]:
    """A real SNS envelope (moto's), as SNS redrives it to a subscription's dead-letter queue."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"tap-{delivery}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns = boto3.client("sns")
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    sns.publish(
        TopicArn=topic,
        Message=body.decode(),
        MessageAttributes={
            "X-GitHub-Event": {"DataType": "String", "StringValue": "issues"},
            "X-GitHub-Delivery": {"DataType": "String", "StringValue": delivery},
            "X-Hub-Signature-256": {"DataType": "String", "StringValue": sign(body, secret.encode())},
        },
    )
    sns.unsubscribe(SubscriptionArn=subscription)
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    return dict(json.loads(message["Body"]))


def destination_record(event: dict[str, Any]) -> dict[str, Any]:
    """What Lambda sends its on-failure destination after the retries (the documented record shape)."""
    return {
        "version": "1.0",
        "timestamp": "2026-11-29T23:00:00.000Z",
        "requestContext": {
            "requestId": "c4f5b0d2-0000-4000-8000-000000000000",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:hookbot-worker:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "handlers failed for gh-2; the event will be retried"},
    }


@pytest.fixture
def dlq_env(tmp_path: Path, fake_github: tuple[FakeGitHub, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The queue, a topic whose messages it holds, and the worker's settings in the environment; the topic ARN."""
    _, url = fake_github
    topic = str(boto3.client("sns").create_topic(Name="hookbot-deliveries")["TopicArn"])
    (tmp_path / "hookbot.toml").write_text("")
    for name, value in {
        "GITHUB_TOKEN": "ghp_test",
        "GITHUB_API_URL": url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "SNS_TOPIC_ARNS": topic,
        "HOOKBOT_STATE_DIR": str(tmp_path / "state"),
        "HOOKBOT_CONFIG": str(tmp_path / "hookbot.toml"),
    }.items():
        monkeypatch.setenv(name, value)
    return topic


def queue_with(*bodies: dict[str, Any]) -> str:
    sqs = boto3.client("sqs")
    url = str(sqs.create_queue(QueueName="failed-deliveries")["QueueUrl"])
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    return url


def left_in(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def test_dlq_replay_runs_both_shapes_and_deletes_only_what_succeeded(
    moto: str, dlq_env: str, fake_github: tuple[FakeGitHub, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_github
    redriven = envelope_from_topic(dlq_env, issue_body(1), "gh-1")
    failed_in_lambda = destination_record(sns_event(envelope_from_topic(dlq_env, issue_body(2), "gh-2")))
    forged = envelope_from_topic(dlq_env, issue_body(3), "gh-3", secret="not-the-secret-at-all")
    url = queue_with(redriven, failed_in_lambda, forged)

    assert await asyncio.to_thread(main, ["dlq", "replay", url]) == 1  # one message kept
    lines = capsys.readouterr().out.splitlines()
    outcome = {line.split()[1]: line for line in lines if line.split()[1] in (SNS_REDRIVE, LAMBDA_DESTINATION)}
    assert len([line for line in lines if line.endswith(("deleted", "kept"))]) == 3
    handled = [line for line in lines if line.endswith("deleted")]
    assert any(SNS_REDRIVE in line and "gh-1 issues.opened ok" in line for line in handled), outcome
    assert any(LAMBDA_DESTINATION in line and "gh-2 issues.opened ok" in line for line in handled), outcome
    (kept,) = [line for line in lines if line.endswith("kept")]
    assert "401" in kept and "does not match" in kept
    assert left_in(url) == 1
    assert fake.landed_comments() == {
        "/repos/Codertocat/Hello-World/issues/1/comments": 1,
        "/repos/Codertocat/Hello-World/issues/2/comments": 1,
    }


async def test_dlq_replay_dry_run_and_max(
    moto: str, dlq_env: str, fake_github: tuple[FakeGitHub, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_github
    url = queue_with(*(envelope_from_topic(dlq_env, issue_body(n), f"gh-{n}") for n in (1, 2, 3)))
    assert await asyncio.to_thread(main, ["dlq", "replay", url, "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith(("deleted", "kept"))]
    assert len(lines) == 3 and all(line.endswith("kept") for line in lines)
    assert left_in(url) == 3 and fake.posted_comments() == []

    assert await asyncio.to_thread(main, ["dlq", "replay", url, "--max", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith(("deleted", "kept"))]
    assert len(lines) == 2 and all(line.endswith("deleted") for line in lines)
    assert left_in(url) == 1
    assert len(fake.landed_comments()) == 2


# --- the template ---------------------------------------------------------------------------------------------------


def template() -> dict[str, Any]:
    return dict(cfn_yaml.load(str(ROOT / "deploy" / "template.yaml")))


def test_the_payload_bucket_expires_encrypts_and_blocks_public_access() -> None:
    resources = template()["Resources"]
    bucket = resources["PayloadBucket"]["Properties"]
    (expiry,) = [rule for rule in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in rule]
    assert expiry["ExpirationInDays"] == 14 and expiry["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    for function in ("IngressFunction", "WorkerFunction"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["HOOKBOT_RELAY_PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}


def granted(role: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for policy in role["Properties"]["Policies"]:
        if "PolicyDocument" not in policy:
            continue
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                found.setdefault(action, []).append(statement["Resource"])
    return found


def test_each_function_may_only_write_or_read_payload_objects() -> None:
    resources = template()["Resources"]
    objects = {"Fn::Sub": "${PayloadBucket.Arn}/*"}
    ingress = granted(resources["IngressRole"])
    assert ingress["s3:PutObject"] == [objects]
    assert "s3:GetObject" not in ingress
    worker = granted(resources["WorkerRole"])
    assert objects in worker["s3:GetObject"]
    assert "s3:PutObject" not in worker
    assert "dynamodb:DescribeTable" in worker


def test_the_schedule_invokes_the_worker_with_the_recovery_event() -> None:
    doc = template()
    resources = doc["Resources"]
    rule = resources["RecoverySchedule"]
    assert rule["Condition"] == "HasGitHub"
    props = rule["Properties"]
    assert props["ScheduleExpression"] == {"Fn::Sub": "rate(${RedeliverEveryMinutes} minutes)"}
    (target,) = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["WorkerFunction", "Arn"]}
    event = json.loads(target["Input"]["Fn::Sub"].replace("${RedeliverEveryMinutes}", "10"))
    assert event == {"hookbot": "redeliver", "every": "10m"}
    assert doc["Parameters"]["RedeliverEveryMinutes"]["Default"] == 10
    permission = resources["RecoverySchedulePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["RecoverySchedule", "Arn"]}
    assert permission["FunctionName"] == {"Ref": "WorkerFunction"}
