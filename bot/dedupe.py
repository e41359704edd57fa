"""De-duplication of deliveries by id: claim before work, mark done only after success.

GitHub's "Redeliver" button and SNS's at-least-once delivery both send the same delivery id again. A claim
stops two copies running side by side; "done" is recorded only after the handlers succeed, so a redelivery of a
failed delivery runs again. A claim that is never finished (a crash) lapses after ``claim_timeout``.

One process remembers in memory; several replicas (and Lambda, where memory lasts one warm container) share a
DynamoDB table, with the in-memory store as a cache in front so that a delivery already seen done here costs no
round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bot.config_schema import ConfigError
from bot.health import Health

if TYPE_CHECKING:
    from bot.aws import AwsClients

log = logging.getLogger("hookbot.dedupe")

DONE = "done"
CLAIMED = "claimed"
T = TypeVar("T")


class DedupeStore(Protocol):
    async def claim(self, key: str, *, lifetime: float | None = None) -> bool:
        """True when the caller may do the work for ``key`` (not done, not claimed by a live worker).

        The claim lapses after ``lifetime`` seconds (default: the store's claim timeout), so that the work is
        taken over when its claimant died; a Lambda invocation passes the time it has left.
        """
        ...

    async def mark_done(self, key: str) -> None: ...

    async def release(self, key: str) -> None:
        """Give up a claim after a failure so that a retry or a redelivery can claim it."""
        ...

    async def is_done(self, key: str) -> bool: ...

    async def forget(self, key: str) -> None:
        """Drop a key nobody will ask about again (a finished delivery's per-plugin marks) to keep memory flat;
        a shared store may simply let it expire."""
        ...


class MemoryDedupeStore:
    """In-process store with a time to live and a size bound (oldest entries go first).

    The bound is small on purpose: the long memory is the durable journal (container) or the DynamoDB table
    (replicas, Lambda); this store covers deliveries in flight and recent repeats, and at 20,000 entries it
    costs about 5 MiB instead of growing into the server's memory budget.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 7 * 24 * 3600,
        claim_timeout: float = 900.0,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._ttl = ttl_seconds
        self._claim_timeout = claim_timeout
        self._max = max_entries
        self._clock = clock

    def _state(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        state, expires = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        return state

    def _put(self, key: str, state: str, lifetime: float) -> None:
        self._entries[key] = (state, self._clock() + lifetime)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def claim(self, key: str, *, lifetime: float | None = None) -> bool:
        if self._state(key) is not None:
            return False
        self._put(key, CLAIMED, self._claim_timeout if lifetime is None else lifetime)
        return True

    async def mark_done(self, key: str) -> None:
        self._put(key, DONE, self._ttl)

    async def release(self, key: str) -> None:
        if self._state(key) == CLAIMED:
            del self._entries[key]

    async def is_done(self, key: str) -> bool:
        return self._state(key) == DONE

    async def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class DynamoDedupeStore:
    """Claims as DynamoDB conditional writes on a table keyed by ``delivery_id`` (string).

    An item is ``{delivery_id, state: claimed|done, claimed_until, expires_at}``; enable the table's TTL on
    ``expires_at`` so DynamoDB deletes old items. A claim succeeds when there is no item, when the item is a
    claim whose ``claimed_until`` has passed (its claimant crashed: the work is taken over), or when the item
    has expired but TTL has not deleted it yet (TTL deletion runs lazily). boto3 is blocking, so every call runs
    in a worker thread; the client comes from AwsClients (lazily: no boto3 import until the first delivery).
    """

    def __init__(
        self,
        aws: AwsClients,
        table: str,
        *,
        ttl_seconds: float = 7 * 24 * 3600,
        claim_timeout: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._aws = aws
        self._table = table
        self._ttl = ttl_seconds
        self._claim_timeout = claim_timeout
        self._clock = clock

    def _claim(self, key: str, lifetime: float | None) -> bool:
        client = self._aws.client("dynamodb")
        now = int(self._clock())
        claimed_for = math.ceil(self._claim_timeout if lifetime is None else lifetime)
        try:
            client.put_item(
                TableName=self._table,
                Item={
                    "delivery_id": {"S": key},
                    "state": {"S": CLAIMED},
                    "claimed_until": {"N": str(now + claimed_for)},
                    "expires_at": {"N": str(now + int(self._ttl))},
                },
                ConditionExpression=(
                    "attribute_not_exists(delivery_id) OR expires_at < :now"
                    " OR (#state = :claimed AND claimed_until < :now)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":claimed": {"S": CLAIMED}, ":now": {"N": str(now)}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _mark_done(self, key: str) -> None:
        now = int(self._clock())
        self._aws.client("dynamodb").put_item(
            TableName=self._table,
            Item={
                "delivery_id": {"S": key},
                "state": {"S": DONE},
                "expires_at": {"N": str(now + int(self._ttl))},
            },
        )

    def _release(self, key: str) -> None:
        client = self._aws.client("dynamodb")
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.delete_item(
                TableName=self._table,
                Key={"delivery_id": {"S": key}},
                ConditionExpression="#state = :claimed",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":claimed": {"S": CLAIMED}},
            )

    def _is_done(self, key: str) -> bool:
        item: dict[str, Any] = (
            self._aws.client("dynamodb")
            .get_item(TableName=self._table, Key={"delivery_id": {"S": key}}, ConsistentRead=True)
            .get("Item", {})
        )
        expires = float(item.get("expires_at", {}).get("N", "0"))
        return bool(item.get("state", {}).get("S") == DONE and expires >= self._clock())

    async def claim(self, key: str, *, lifetime: float | None = None) -> bool:
        return await asyncio.to_thread(self._claim, key, lifetime)

    async def mark_done(self, key: str) -> None:
        await asyncio.to_thread(self._mark_done, key)

    async def release(self, key: str) -> None:
        await asyncio.to_thread(self._release, key)

    async def is_done(self, key: str) -> bool:
        return await asyncio.to_thread(self._is_done, key)

    async def forget(self, key: str) -> None:
        """Nothing to do: the item's ``expires_at`` TTL removes it, and a delete would cost a round trip."""


class CachedDedupeStore:
    """A shared store with this process's memory in front: "done" is final, so it is safe to cache.

    Every call of the shared store is reported to :class:`Health`, so that a table that keeps failing (gone,
    throttled, denied) turns `/healthz` to 503 instead of failing each delivery quietly.
    """

    def __init__(self, local: MemoryDedupeStore, shared: DedupeStore, health: Health | None = None) -> None:
        self._local = local
        self._shared = shared
        self._health = health or Health()

    async def _watch(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except Exception as exc:
            self._health.failed("dedupe", f"{type(exc).__name__}: {exc}")
            raise
        self._health.succeeded("dedupe")
        return result

    async def claim(self, key: str, *, lifetime: float | None = None) -> bool:
        if await self._local.is_done(key):
            return False
        return await self._watch(self._shared.claim(key, lifetime=lifetime))

    async def mark_done(self, key: str) -> None:
        await self._watch(self._shared.mark_done(key))
        await self._local.mark_done(key)

    async def release(self, key: str) -> None:
        await self._watch(self._shared.release(key))

    async def forget(self, key: str) -> None:
        await self._local.forget(key)
        await self._watch(self._shared.forget(key))

    async def is_done(self, key: str) -> bool:
        if await self._local.is_done(key):
            return True
        if await self._watch(self._shared.is_done(key)):
            await self._local.mark_done(key)
            return True
        return False


REQUIRED_KEY = "delivery_id"


def key_schema_problem(table: str, description: Mapping[str, Any]) -> str | None:
    """Why a DescribeTable answer's key schema cannot hold hookbot's claims, or None when it is right.

    Pure logic over the ``Table`` document, so that the rule is tested without DynamoDB: the only key must be
    ``delivery_id``, a string (``S``) partition key.
    """
    types = {d.get("AttributeName"): d.get("AttributeType") for d in description.get("AttributeDefinitions", [])}
    keys = [(k.get("AttributeName"), k.get("KeyType")) for k in description.get("KeySchema", [])]
    if keys == [(REQUIRED_KEY, "HASH")] and types.get(REQUIRED_KEY) == "S":
        return None
    has = ", ".join(f"{name} ({_TYPE_NAMES.get(str(types.get(name)), types.get(name))}, {kind})" for name, kind in keys)
    return (
        f"de-dup table {table} is keyed {has or 'by nothing'}; hookbot needs {REQUIRED_KEY} (string) as its only"
        " key: create the table with that key ([dedupe] table / HOOKBOT_DEDUPE_TABLE names it)"
    )


_TYPE_NAMES = {"S": "string", "N": "number", "B": "binary"}


def check_table(aws: AwsClients, table: str) -> None:
    """DescribeTable once at start; raises ConfigError naming the table, the key it has and the key it needs.

    Only a definite answer stops the start: a table that is missing or keyed wrong. When the table cannot be
    described at all (no dynamodb:DescribeTable in an older role, DynamoDB unreachable for a moment) this logs a
    warning and lets the start go on; the claims themselves report failures to `/healthz`.
    Blocking (boto3): call it from a thread or before the event loop runs.
    """
    client = aws.client("dynamodb")
    try:
        description = client.describe_table(TableName=table)["Table"]
    except client.exceptions.ResourceNotFoundException:
        raise ConfigError(
            f"de-dup table {table} does not exist; create it keyed by {REQUIRED_KEY} (string) or fix [dedupe] table"
        ) from None
    except Exception as exc:  # botocore's ClientError and connection errors: the table cannot be checked
        log.warning("cannot check the key schema of de-dup table %s (%s); it needs dynamodb:DescribeTable", table, exc)
        return
    problem = key_schema_problem(table, description)
    if problem:
        raise ConfigError(problem)
