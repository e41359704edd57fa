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
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.aws import AwsClients

DONE = "done"
CLAIMED = "claimed"


class DedupeStore(Protocol):
    async def claim(self, key: str) -> bool:
        """True when the caller may do the work for ``key`` (not done, not claimed by a live worker)."""
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

    async def claim(self, key: str) -> bool:
        if self._state(key) is not None:
            return False
        self._put(key, CLAIMED, self._claim_timeout)
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

    def _claim(self, key: str) -> bool:
        client = self._aws.client("dynamodb")
        now = int(self._clock())
        try:
            client.put_item(
                TableName=self._table,
                Item={
                    "delivery_id": {"S": key},
                    "state": {"S": CLAIMED},
                    "claimed_until": {"N": str(now + int(self._claim_timeout))},
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

    async def claim(self, key: str) -> bool:
        return await asyncio.to_thread(self._claim, key)

    async def mark_done(self, key: str) -> None:
        await asyncio.to_thread(self._mark_done, key)

    async def release(self, key: str) -> None:
        await asyncio.to_thread(self._release, key)

    async def is_done(self, key: str) -> bool:
        return await asyncio.to_thread(self._is_done, key)

    async def forget(self, key: str) -> None:
        """Nothing to do: the item's ``expires_at`` TTL removes it, and a delete would cost a round trip."""


class CachedDedupeStore:
    """A shared store with this process's memory in front: "done" is final, so it is safe to cache."""

    def __init__(self, local: MemoryDedupeStore, shared: DedupeStore) -> None:
        self._local = local
        self._shared = shared

    async def claim(self, key: str) -> bool:
        if await self._local.is_done(key):
            return False
        return await self._shared.claim(key)

    async def mark_done(self, key: str) -> None:
        await self._shared.mark_done(key)
        await self._local.mark_done(key)

    async def release(self, key: str) -> None:
        await self._shared.release(key)

    async def forget(self, key: str) -> None:
        await self._local.forget(key)
        await self._shared.forget(key)

    async def is_done(self, key: str) -> bool:
        if await self._local.is_done(key):
            return True
        if await self._shared.is_done(key):
            await self._local.mark_done(key)
            return True
        return False
