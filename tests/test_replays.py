"""Replays are duplicates: the body's SHA-256 (and an SNS MessageId) is remembered besides the delivery id, in the
journal, the in-memory store and the shared DynamoDB table. The doors' side is in test_ingress.py."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import boto3
import pytest

from bot.delivery import Delivery
from bot.dispatch import DispatchResult, Outcome
from bot.inbox import JournalInbox, journal_path
from bot.runtime import Runtime
from tests.helpers import fixture_bytes, make_settings

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
TABLE = "hookbot-replays"


def push(delivery_id: str, body: bytes = b'{"zen": "not handled by any plugin"}', **extra: str) -> Delivery:
    return Delivery(event="push", delivery_id=delivery_id, payload={}, body=body, source="lambda-sns", **extra)


async def test_the_same_sns_message_is_a_duplicate_even_with_another_body_and_id(tmp_path: Path) -> None:
    dispatcher = Runtime.build(make_settings(tmp_path), secrets_=[]).dispatcher
    assert not (await dispatcher.dispatch(push("a", sns_message_id="m-1"))).duplicate
    assert (await dispatcher.dispatch(push("b", b'{"other": 1}', sns_message_id="m-1"))).duplicate
    assert not (await dispatcher.dispatch(push("c", b'{"other": 2}', sns_message_id="m-2"))).duplicate


async def test_a_failed_delivery_frees_its_body_for_a_retry(tmp_path: Path) -> None:
    """Claims are all or nothing and released on failure: the replay key must not block the real retry."""
    dispatcher = Runtime.build(make_settings(tmp_path), secrets_=[]).dispatcher
    first = push("a")
    assert await dispatcher._claim(first)
    await dispatcher._release(first)
    assert not (await dispatcher.dispatch(push("a"))).duplicate


def create_table() -> None:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


async def test_two_instances_sharing_the_table_take_a_replayed_body_once(tmp_path: Path, moto: str) -> None:
    """Two Lambda instances (two Runtimes) with one DynamoDB table: the body key is shared, not only in memory."""
    create_table()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first, second = (
        Runtime.build(make_settings(tmp_path / name, HOOKBOT_DEDUPE_TABLE=TABLE), secrets_=[]).dispatcher
        for name in ("a", "b")
    )
    body = b'{"ref": "refs/heads/main"}'
    assert not (await first.dispatch(push("gh-1", body))).duplicate
    assert (await second.dispatch(push("gh-2", body))).duplicate
    key = "sha256:" + hashlib.sha256(body).hexdigest()
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"delivery_id": {"S": key}})["Item"]
    assert item["state"]["S"] == "done"


class Done:
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, delivery: Delivery) -> DispatchResult:
        self.ran.append(delivery.delivery_id)
        return DispatchResult(delivery.delivery_id, outcomes=[Outcome("p", "ok", 1.0)])


async def run_inbox(path: Path, process: Done, *deliveries: Delivery) -> list[str]:
    inbox = JournalInbox(path, process, capacity=10, workers=1, poll_seconds=0.05)
    await inbox.start()
    try:
        answers = [await inbox.submit(delivery) for delivery in deliveries]
        for _ in range(500):
            if inbox.pending == 0:
                break
            await asyncio.sleep(0.02)
        return list(answers)
    finally:
        await inbox.stop(grace=5)


@pytest.mark.parametrize("state_of_the_first", ["done", "failed"])
async def test_the_journal_remembers_bodies_across_restarts(tmp_path: Path, state_of_the_first: str) -> None:
    path = journal_path(tmp_path)
    process = Done()
    original = Delivery(event="issues", delivery_id="gh-1", payload={}, body=ISSUE_OPENED, source="github-http")
    assert await run_inbox(path, process, original) == ["accepted"]
    if state_of_the_first == "failed":
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE deliveries SET state = 'failed' WHERE delivery_id = 'gh-1'")
    replay = Delivery(event="issues", delivery_id="gh-2", payload={}, body=ISSUE_OPENED, source="github-http")
    again = Delivery(event="issues", delivery_id="gh-1", payload={}, body=ISSUE_OPENED, source="github-http")
    answers = await run_inbox(path, process, replay, again)
    assert answers[0] == "duplicate"
    # GitHub's own redelivery (the same id) still re-runs a dead letter, and is a repeat of a finished one.
    assert answers[1] == ("accepted" if state_of_the_first == "failed" else "duplicate")
    assert "gh-2" not in process.ran
