"""The audit plugin: redacted delivery records in a local file, in DynamoDB and in S3 (moto), and `audit show`."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from bot import cli
from bot.config_schema import ConfigError
from bot.delivery import Delivery
from bot.runtime import Runtime
from handlers.audit.records import REDACTED, parse_pattern, redact
from tests.helpers import fixture_bytes, make_settings

PUSH = json.loads(fixture_bytes("github/push.json"))
REDACT = '["**.email", "sender.*_url", "installation"]'
# What that redact list must hide in push.json, worked out by hand from the fixture.
EXPECTED_REDACTED = {
    "pusher.email",
    "repository.owner.email",
    "commits.0.author.email",
    "commits.0.committer.email",
    "head_commit.author.email",
    "head_commit.committer.email",
    "installation",
} | {f"sender.{key}" for key in PUSH["sender"] if key.endswith("_url")}

Build = Callable[[str], Runtime]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    """Runtimes with only the audit plugin; no GitHub credentials (dry-run): the audit log is written anyway."""
    runtimes: list[Runtime] = []

    def make(audit_toml: str) -> Runtime:
        redact_line = "" if "redact" in audit_toml else f"redact = {REDACT}\n"
        toml = f'[hookbot]\nhandlers = ["audit"]\n[audit]\n{redact_line}{audit_toml}'
        (tmp_path / "config").mkdir(exist_ok=True)
        runtime = Runtime.build(make_settings(tmp_path / "config", toml))
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.close()


@pytest.fixture
def show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str], tuple[int, str, str]]]:
    """`hookbot audit show ID` run through the real command line, on the config file `build` wrote."""

    def run(delivery_id: str) -> tuple[int, str, str]:
        code = cli.main(["--config", str(tmp_path / "config" / "hookbot.toml"), "audit", "show", delivery_id])
        out, err = capsys.readouterr()
        return code, out, err

    yield run


_copies = itertools.count()


def push_delivery() -> Delivery:
    """The push fixture as a delivery of its own: its body differs by trailing whitespace from every other one
    (the payload is the same), since the same body under another delivery id is a replay, not a new delivery."""
    body = fixture_bytes("github/push.json") + b" " * next(_copies)
    return Delivery("push", str(uuid.uuid4()), json.loads(body), body, "github-http", received_at=1_790_000_000.5)


def redacted_paths(recorded: Any, original: Any, path: str = "") -> set[str]:
    """Paths where the record holds ``[redacted]`` instead of the original value; asserts all else is equal."""
    if recorded == REDACTED and original != REDACTED:
        return {path}
    if isinstance(original, dict):
        assert isinstance(recorded, dict) and recorded.keys() == original.keys(), path
        return set().union(*(redacted_paths(recorded[k], v, f"{path}.{k}".lstrip(".")) for k, v in original.items()))
    if isinstance(original, list):
        assert isinstance(recorded, list) and len(recorded) == len(original), path
        pairs = enumerate(zip(recorded, original, strict=True))
        return set().union(*(redacted_paths(r, o, f"{path}.{i}") for i, (r, o) in pairs))
    assert recorded == original, path
    return set()


def check_record(record: dict[str, Any], delivery: Delivery) -> None:
    assert {key: value for key, value in record.items() if key != "payload"} == {
        "delivery_id": delivery.delivery_id,
        "event": "push",
        "action": None,
        "repository": "Codertocat/Hello-World",
        "received_at": "2026-09-21T14:13:20Z",
        "source": "github-http",
        "expires_at": 1_790_000_000 + 30 * 86400,
    }
    assert redacted_paths(record["payload"], PUSH) == EXPECTED_REDACTED
    assert "@users.noreply.github.com" not in json.dumps(record)


async def test_file_destination_writes_json_lines(build: Build, tmp_path: Path, show: Any) -> None:
    directory = tmp_path / "audit"
    runtime = build(f'destination = "file://{directory}/"\nttl_days = 30\n')
    delivery = push_delivery()
    assert (await runtime.dispatcher.dispatch(delivery)).ok
    issue_body = fixture_bytes("github/issues.opened.json")
    issue = Delivery("issues", "issue-1", json.loads(issue_body), issue_body, "github-http", 1_790_000_001.0)
    assert (await runtime.dispatcher.dispatch(issue)).ok
    lines = (directory / "audit-2026-09-21.jsonl").read_bytes().splitlines()
    assert len(lines) == 2
    check_record(orjson.loads(lines[0]), delivery)
    assert orjson.loads(lines[1])["event"] == "issues" and orjson.loads(lines[1])["action"] == "opened"

    code, out, _ = show(delivery.delivery_id)
    assert code == 0
    check_record(json.loads(out), delivery)
    code, out, err = show("no-such-delivery")
    assert (code, out) == (1, "")
    assert err == f"hookbot: no audit record of delivery no-such-delivery in file://{directory}/\n"


async def test_dynamodb_destination_with_ttl(build: Build, moto: str, show: Any) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="hookbot-audit",
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    runtime = build('destination = "dynamodb://hookbot-audit"\nttl_days = 30\n')
    delivery = push_delivery()
    assert (await runtime.dispatcher.dispatch(delivery)).ok
    item = dynamodb.get_item(TableName="hookbot-audit", Key={"delivery_id": {"S": delivery.delivery_id}})["Item"]
    assert item["expires_at"] == {"N": str(1_790_000_000 + 30 * 86400)}
    assert "action" not in item  # DynamoDB has no use for a null attribute
    assert redacted_paths(json.loads(item["payload"]["S"]), PUSH) == EXPECTED_REDACTED

    code, out, _ = show(delivery.delivery_id)
    assert code == 0
    check_record(json.loads(out), delivery)


async def test_s3_destination_one_object_per_delivery(build: Build, moto: str, show: Any) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="audit-bucket")
    runtime = build('destination = "s3://audit-bucket/hookbot/"\nttl_days = 30\n')
    deliveries = [push_delivery(), push_delivery()]
    for delivery in deliveries:
        assert (await runtime.dispatcher.dispatch(delivery)).ok
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket="audit-bucket")["Contents"])
    assert keys == sorted(f"hookbot/{delivery.delivery_id}.json" for delivery in deliveries)
    stored = s3.get_object(Bucket="audit-bucket", Key=keys[0])
    assert stored["ContentType"] == "application/json"

    code, out, _ = show(deliveries[1].delivery_id)
    assert code == 0
    check_record(json.loads(out), deliveries[1])
    assert show("missing")[0] == 1


async def test_events_filter(build: Build, tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    runtime = build(f'destination = "file://{directory}"\nevents = ["issues.opened"]\n')
    assert (await runtime.dispatcher.dispatch(push_delivery())).ok
    assert not directory.exists()


async def test_a_store_failure_fails_the_plugin_so_the_delivery_is_retried(build: Build, moto: str) -> None:
    runtime = build('destination = "dynamodb://no-such-table"\n')
    result = await runtime.dispatcher.dispatch(push_delivery())
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and "ResourceNotFoundException" in (outcome.error or "")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('destination = "mysql://db"', "is not one of dynamodb://TABLE"),
        ('destination = "dynamodb://"', "is not one of dynamodb://TABLE"),
        ('destination = "s3:///prefix/"', "is not one of dynamodb://TABLE"),
        ("ttl_days = 0", "ttl_days must be a positive whole number"),
        ('redact = ["sender..email"]', "has an empty part"),
        ('redact = "sender.email"', "redact must be a list of strings"),
        ("keep = true", "unknown key `keep` in [audit]"),
    ],
)
async def test_config_mistakes_fail_at_start(build: Build, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(toml)
    assert message in str(info.value)


def test_show_without_a_destination(tmp_path: Path, show: Any) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hookbot.toml").write_text("[audit]\n")
    code, _, err = show("x")
    assert code == 2 and "[audit] destination is not set" in err


@pytest.mark.parametrize(
    ("patterns", "value", "expected"),
    [
        (
            ["**.email"],
            {"email": 1, "a": [{"email": 2, "x": 3}]},
            {"email": REDACTED, "a": [{"email": REDACTED, "x": 3}]},
        ),
        (["a.**"], {"a": {"b": {"c": 1}}, "b": 2}, {"a": {"b": REDACTED}, "b": 2}),
        (["*"], {"a": 1, "b": {"c": 2}}, {"a": REDACTED, "b": REDACTED}),
        (["a.*.token"], {"a": [{"token": "t"}, {"n": 1}]}, {"a": [{"token": REDACTED}, {"n": 1}]}),
        (["**.b.**.c"], {"b": {"x": {"c": 1}}, "c": 2}, {"b": {"x": {"c": REDACTED}}, "c": 2}),
        (["x?"], {"xy": 1, "xyz": 2}, {"xy": REDACTED, "xyz": 2}),
        ([], {"a": 1}, {"a": 1}),
    ],
)
def test_redact_paths(patterns: list[str], value: Any, expected: Any) -> None:
    original = json.loads(json.dumps(value))
    assert redact(value, [parse_pattern(p) for p in patterns]) == expected
    assert value == original  # the payload the other plugins see is untouched
