"""The in-process de-duplication store's claim / done / release rules."""

from __future__ import annotations

from bot.dedupe import MemoryDedupeStore


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
