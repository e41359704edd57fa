"""Replays are duplicates: the body's SHA-256 (and an SNS MessageId) is remembered besides the delivery id, in the
journal, the in-memory store and the shared DynamoDB table. The doors' side is in test_ingress.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path

import boto3
import pytest

from bot.delivery import Delivery
from bot.dispatch import Dispatcher, DispatchResult, Outcome
from bot.inbox import SCHEMA_VERSION, JournalInbox, journal_path
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import fixture_bytes, make_settings

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
TABLE = "hookbot-replays"


def issue(delivery_id: str, number: int = 1, sns_message_id: str | None = None) -> Delivery:
    """An issues.opened delivery (one the greeter wants, so it is claimed) about issue ``number``."""
    body = ISSUE_OPENED.replace(b'"number": 1,', f'"number": {number},'.encode(), 1)
    payload = json.loads(body)
    return Delivery(
        event="issues",
        delivery_id=delivery_id,
        payload=payload,
        body=body,
        source="lambda-sns",
        sns_message_id=sns_message_id,
    )


def dispatcher_for(tmp_path: Path, github_url: str, **env: str) -> Dispatcher:
    settings = make_settings(tmp_path, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=github_url, **env)
    return Runtime.build(settings, secrets_=[]).dispatcher


async def test_the_same_sns_message_is_a_duplicate_even_with_another_body_and_id(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    dispatcher = dispatcher_for(tmp_path, fake_github[1])
    assert not (await dispatcher.dispatch(issue("a", 1, sns_message_id="m-1"))).duplicate
    assert (await dispatcher.dispatch(issue("b", 2, sns_message_id="m-1"))).duplicate
    assert not (await dispatcher.dispatch(issue("c", 3, sns_message_id="m-2"))).duplicate
    assert len(fake_github[0].posted_comments()) == 2


async def test_a_failed_delivery_frees_its_body_for_a_retry(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    """Claims are all or nothing and released on failure: the replay key must not block the real retry."""
    fake, url = fake_github
    dispatcher = dispatcher_for(tmp_path, url)
    comments = "/repos/Codertocat/Hello-World/issues/1/comments"
    fake.responses[("POST", comments)] = (502, {"message": "Server Error"})
    assert not (await dispatcher.dispatch(issue("a"))).ok
    del fake.responses[("POST", comments)]
    assert (await dispatcher.dispatch(issue("b"))).ok  # the same body under another id: the failed one never ran
    assert (await dispatcher.dispatch(issue("a"))).duplicate


def create_table() -> None:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


async def test_two_instances_sharing_the_table_take_a_replayed_body_once(
    tmp_path: Path, moto: str, fake_github: tuple[FakeGitHub, str]
) -> None:
    """Two Lambda instances (two Runtimes) with one DynamoDB table: the body key is shared, not only in memory."""
    create_table()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first, second = (dispatcher_for(tmp_path / name, fake_github[1], HOOKBOT_DEDUPE_TABLE=TABLE) for name in "ab")
    assert not (await first.dispatch(issue("gh-1"))).duplicate
    assert (await second.dispatch(issue("gh-2"))).duplicate
    key = "sha256:" + hashlib.sha256(ISSUE_OPENED).hexdigest()
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
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE deliveries SET state = 'failed' WHERE delivery_id = 'gh-1'")
    replay = Delivery(event="issues", delivery_id="gh-2", payload={}, body=ISSUE_OPENED, source="github-http")
    again = Delivery(event="issues", delivery_id="gh-1", payload={}, body=ISSUE_OPENED, source="github-http")
    answers = await run_inbox(path, process, replay, again)
    assert answers[0] == "duplicate"
    # GitHub's own redelivery (the same id) still re-runs a dead letter, and is a repeat of a finished one.
    assert answers[1] == ("accepted" if state_of_the_first == "failed" else "duplicate")
    assert "gh-2" not in process.ran


async def test_a_version_3_journal_keeps_its_remembered_bodies_in_the_new_column(tmp_path: Path) -> None:
    """Version 3 kept the digests in a table of their own; the migration carries them into `body_sha256`, so a body
    journaled before the upgrade is still a replay under another id after it, and the old table goes."""
    path = journal_path(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(
            """
            CREATE TABLE deliveries (id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
                source TEXT NOT NULL, received_at REAL NOT NULL, state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
                updated_at REAL NOT NULL, error TEXT, action TEXT, repository TEXT,
                started_at REAL NOT NULL DEFAULT 0, mode TEXT NOT NULL DEFAULT 'live');
            CREATE TABLE bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
            CREATE TABLE seen_bodies (sha256 TEXT PRIMARY KEY, delivery_id TEXT NOT NULL) WITHOUT ROWID;
            INSERT INTO deliveries (delivery_id, event, source, received_at, state, updated_at, attempts)
                VALUES ('gh-1', 'issues', 'github-http', unixepoch(), 'done', unixepoch(), 1);
            PRAGMA user_version = 3;
            """
        )
        old.execute("INSERT INTO seen_bodies VALUES (?, 'gh-1')", (hashlib.sha256(ISSUE_OPENED).hexdigest(),))
        old.commit()
    process = Done()
    replay = Delivery(event="issues", delivery_id="gh-2", payload={}, body=ISSUE_OPENED, source="github-http")
    other = issue("gh-3", number=2)
    assert await run_inbox(path, process, replay, other) == ["duplicate", "accepted"]
    assert process.ran == ["gh-3"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert not conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'seen_bodies'").fetchall()
        assert conn.execute("SELECT body_sha256 FROM deliveries WHERE delivery_id = 'gh-1'").fetchone() == (
            hashlib.sha256(ISSUE_OPENED).digest(),
        )
