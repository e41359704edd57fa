"""De-duplication of deliveries by id: claim before work, mark done only after success.

GitHub's "Redeliver" button and SNS's at-least-once delivery both send the same delivery id again. A claim
stops two copies running side by side; "done" is recorded only after the handlers succeed, so a redelivery of a
failed delivery runs again. A claim that is never finished (a crash) lapses after ``claim_timeout``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

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


class MemoryDedupeStore:
    """In-process store with a time to live and a size bound (oldest entries go first)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 7 * 24 * 3600,
        claim_timeout: float = 900.0,
        max_entries: int = 100_000,
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
