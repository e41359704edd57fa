"""De-duplication: the in-process store's claim / done / release rules, and the shared DynamoDB table (moto)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import boto3

from bot.aws import AwsClients
from bot.dedupe import CachedDedupeStore, DynamoDedupeStore, MemoryDedupeStore
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import make_settings
from tests.processes import Server, issue_body


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_claim_once_until_released_or_done() -> None:
    store = MemoryDedupeStore()
    assert await store.claim("a")
    assert not await store.claim("a")
    await store.release("a")
    assert await store.claim("a")
    await store.mark_done("a")
    assert await store.is_done("a")
    assert not await store.claim("a")
    await store.release("a")  # releasing a finished delivery does not reopen it
    assert await store.is_done("a")


async def test_claims_lapse_and_done_entries_expire() -> None:
    clock = Clock()
    store = MemoryDedupeStore(ttl_seconds=100, claim_timeout=10, clock=clock)
    assert await store.claim("crashed")
    clock.now = 11
    assert await store.claim("crashed"), "a crashed claimant's work is taken over after the timeout"
    await store.mark_done("crashed")
    clock.now = 200
    assert not await store.is_done("crashed")


async def test_size_is_bounded() -> None:
    store = MemoryDedupeStore(max_entries=3)
    for key in "abcd":
        await store.mark_done(key)
    assert not await store.is_done("a")
    assert await store.is_done("d")


TABLE = "hookbot-dedupe"


def create_table() -> None:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


async def test_claims_are_exclusive_and_a_crashed_claim_is_taken_over(moto: str) -> None:
    create_table()
    clock = Clock()
    clock.now = 1_800_000_000.0
    replica_a = DynamoDedupeStore(AwsClients(), TABLE, ttl_seconds=3600, claim_timeout=60, clock=clock)
    replica_b = DynamoDedupeStore(AwsClients(), TABLE, ttl_seconds=3600, claim_timeout=60, clock=clock)

    assert await replica_a.claim("d-1")
    assert not await replica_b.claim("d-1")  # claimed and alive
    clock.now += 61  # replica A died holding the claim
    assert await replica_b.claim("d-1")
    await replica_b.mark_done("d-1")
    assert await replica_a.is_done("d-1")
    assert not await replica_a.claim("d-1")
    await replica_a.release("d-1")  # a release never undoes "done"
    assert await replica_b.is_done("d-1")

    assert await replica_a.claim("d-2")
    await replica_a.release("d-2")  # failed: a redelivery may run it again
    assert await replica_b.claim("d-2")

    clock.now += 3601  # expired, but TTL deletion has not run yet: treated as absent
    assert not await replica_a.is_done("d-1")
    assert await replica_a.claim("d-1")


async def test_memory_cache_in_front_answers_done_without_asking_again(moto: str) -> None:
    create_table()
    shared = DynamoDedupeStore(AwsClients(), TABLE)
    store = CachedDedupeStore(MemoryDedupeStore(), shared)
    assert await store.claim("d-1")
    await store.mark_done("d-1")
    boto3.client("dynamodb").delete_table(TableName=TABLE)  # the cache alone must answer now
    assert await store.is_done("d-1")
    assert not await store.claim("d-1")


def test_runtime_uses_the_table_for_every_entry_point(tmp_path: Path) -> None:
    runtime = Runtime.build(make_settings(tmp_path, HOOKBOT_DEDUPE_TABLE=TABLE), secrets_=[])
    assert isinstance(runtime.dispatcher.dedupe, CachedDedupeStore)
    assert isinstance(Runtime.build(make_settings(tmp_path), secrets_=[]).dispatcher.dedupe, MemoryDedupeStore)


async def test_two_servers_sharing_the_table_act_once_on_the_same_delivery(
    tmp_path: Path, moto: str, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    create_table()
    fake, url = fake_github
    fake.delay = 0.2
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(Server(tmp_path / name, url, "", {"HOOKBOT_DEDUPE_TABLE": TABLE}))
    servers.extend(replicas)
    await asyncio.gather(*(replica.start() for replica in replicas))
    body = issue_body(1)
    statuses = await asyncio.gather(*(replica.post(body, "same-delivery") for replica in replicas))
    assert statuses == [202, 202]
    await asyncio.gather(*(replica.wait_idle() for replica in replicas))
    assert len(fake.calls("POST", "/repos/Codertocat/Hello-World/issues/1/comments")) == 1
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"delivery_id": {"S": "same-delivery"}})["Item"]
    assert item["state"]["S"] == "done" and int(item["expires_at"]["N"]) > 0
