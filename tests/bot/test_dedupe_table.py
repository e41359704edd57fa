"""The shared de-dup table: a wrong key schema found at start, a failing table seen by /healthz, and claims that
follow Lambda's clock (all on moto)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.aws import AwsClients
from bot.aws_lambda import CLAIM_MARGIN_SECONDS, LambdaEntry, RecordsFailed, build_entry
from bot.dedupe import DynamoDedupeStore, key_schema_problem
from bot.github_webhook import sign
from bot.runtime import Runtime
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, SECRET, fixture_bytes, github_headers, make_settings
from tests.lambda_events import function_url_event, sns_event
from tests.processes import issue_body
from tests.sns_signing import TOPIC, notification

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
WRONG_LINE = "de-dup table keyed-wrong is keyed pk (string, HASH); hookbot needs delivery_id (string) as its only key"


def create_table(name: str, key: str = "delivery_id", key_type: str = "S") -> None:
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_key_schema_rule() -> None:
    right = {
        "KeySchema": [{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "delivery_id", "AttributeType": "S"}],
    }
    assert key_schema_problem("t", right) is None
    numeric = {**right, "AttributeDefinitions": [{"AttributeName": "delivery_id", "AttributeType": "N"}]}
    assert "keyed delivery_id (number, HASH)" in str(key_schema_problem("t", numeric))
    with_sort = {
        "KeySchema": [*right["KeySchema"], {"AttributeName": "at", "KeyType": "RANGE"}],
        "AttributeDefinitions": [*right["AttributeDefinitions"], {"AttributeName": "at", "AttributeType": "N"}],
    }
    assert "at (number, RANGE)" in str(key_schema_problem("t", with_sort))


def test_serve_stops_at_start_on_a_table_keyed_wrong(moto: str, tmp_path: Path) -> None:
    create_table("keyed-wrong", key="pk")
    env = {
        **os.environ,
        "HOOKBOT_DEDUPE_TABLE": "keyed-wrong",
        "HOOKBOT_STATE_DIR": str(tmp_path / "state"),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "HOOKBOT_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "none.toml").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert WRONG_LINE in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_table_also_stops_serve(moto: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HOOKBOT_DEDUPE_TABLE": "no-such-table",
        "HOOKBOT_STATE_DIR": str(tmp_path / "state"),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "HOOKBOT_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "none.toml").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "de-dup table no-such-table does not exist" in done.stderr


def lambda_env(tmp_path: Path, api_url: str, table: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOOKBOT_DEDUPE_TABLE": table,
        "HOOKBOT_STATE_DIR": str(tmp_path / "state"),
        "HOOKBOT_CONFIG": str(tmp_path / "none.toml"),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": "ghp_test",
        "GITHUB_API_URL": api_url,
        "SNS_TOPIC_ARNS": TOPIC,
    }


def github_sns(delivery: str) -> Any:
    attributes = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(ISSUE_OPENED, SECRET.encode()),
    }
    return notification(ISSUE_OPENED.decode(), attributes=attributes)


async def test_lambda_cold_start_on_a_table_keyed_wrong_refuses_every_event(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    create_table("keyed-wrong", key="pk")
    (tmp_path / "none.toml").write_text("")
    entry = await asyncio.to_thread(build_entry, lambda_env(tmp_path, url, "keyed-wrong"))
    assert entry.refusal is not None and WRONG_LINE in entry.refusal
    with pytest.raises(RecordsFailed, match="keyed pk"):  # SNS/Lambda retry, then the dead-letter queue keeps it
        await asyncio.to_thread(entry, sns_event(github_sns("gh-1")), None)
    answer = await asyncio.to_thread(
        entry, function_url_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues")), None
    )
    assert answer["statusCode"] == 503 and "keyed pk" in answer["body"]
    assert fake.requests == []

    create_table("keyed-right")
    entry = await asyncio.to_thread(build_entry, lambda_env(tmp_path, url, "keyed-right"))
    assert entry.refusal is None


async def test_healthz_turns_503_while_the_table_keeps_failing(
    moto: str, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    settings = make_settings(tmp_path, "[server]\nretry_base_seconds = 0.01\n", HOOKBOT_DEDUPE_TABLE="gone")
    client = await aiohttp_client(create_app(Runtime.build(settings)))
    assert (await client.get("/healthz")).status == 200
    for n in range(3):
        body = issue_body(n + 1)  # a body of its own each: a body seen before is answered as a repeat
        response = await client.post("/webhook", data=body, headers=github_headers(body, "issues"))
        assert response.status == 202, n
    deadline = time.monotonic() + 30
    while (health := await client.get("/healthz")).status != 503:
        assert time.monotonic() < deadline, "healthz never turned 503"
        await asyncio.sleep(0.05)
    document = await health.json()
    assert document["status"] == "failing"
    assert "ResourceNotFoundException" in document["problems"]["dedupe"]

    create_table("gone")  # the table is back: the retries succeed and health recovers
    while (await client.get("/healthz")).status != 200:
        assert time.monotonic() < deadline + 30, "healthz never recovered"
        await asyncio.sleep(0.05)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_claim_with_a_lifetime_lapses_then(moto: str) -> None:
    create_table("claims")
    clock = Clock(1_800_000_000.0)
    killed = DynamoDedupeStore(AwsClients(), "claims", claim_timeout=900, clock=clock)
    retry = DynamoDedupeStore(AwsClients(), "claims", claim_timeout=900, clock=clock)
    assert await killed.claim("d-1", lifetime=7.5)
    clock.now += 8
    assert not await retry.claim("d-1")
    clock.now += 1
    assert await retry.claim("d-1"), "the claim lapsed with the invocation, not after claim_timeout_seconds"


class LambdaContext:
    """What Lambda passes as ``context``: here only the remaining time matters."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


async def test_lambda_claims_lapse_with_the_invocation(
    moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    fake.delay = 1.0  # GitHub is slow: the claim is read while the invocation holds it
    create_table("claims")
    (tmp_path / "none.toml").write_text("")
    entry: LambdaEntry = await asyncio.to_thread(build_entry, lambda_env(tmp_path, url, "claims"))
    context = LambdaContext(deadline=time.time() + 20)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(entry(sns_event(github_sns("gh-lapse")), context)))
    worker.start()
    table = boto3.client("dynamodb")
    deadline = time.monotonic() + 30
    while "Item" not in (item := table.get_item(TableName="claims", Key={"delivery_id": {"S": "gh-lapse"}})):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    claimed_until = int(item["Item"]["claimed_until"]["N"])
    assert claimed_until <= context.deadline + CLAIM_MARGIN_SECONDS + 1
    assert claimed_until >= context.deadline + CLAIM_MARGIN_SECONDS - 2  # not the 900 s claim timeout
    await asyncio.to_thread(worker.join, 60)
    assert result and result[0]["deliveries"][0]["status"] == "ok"
