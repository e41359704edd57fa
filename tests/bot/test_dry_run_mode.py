"""Dry-run is its own world: what a dry-run did never counts as done for a live run (journal and de-dup), and a
delivery that had begun a write when the process died resumes only after the GitHub request timeout."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bot.dedupe import MemoryDedupeStore
from bot.delivery import Delivery
from bot.dispatch import DispatchResult, Outcome
from bot.effects import before_effect
from bot.inbox import JournalInbox, journal_path, recent_deliveries
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import fixture_bytes, make_settings

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")


def delivery(key: str) -> Delivery:
    """A delivery with a body of its own (the journal answers a body it has seen under another id as a repeat)."""
    body = orjson.dumps(dict(orjson.loads(ISSUE_OPENED), test_key=key))
    return Delivery(event="issues", delivery_id=key, payload={}, body=body, source="github-http")


class Calls:
    """A processor that records which deliveries it ran, and succeeds."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, item: Delivery) -> DispatchResult:
        self.ran.append(item.delivery_id)
        return DispatchResult(item.delivery_id, outcomes=[Outcome("p", "ok", 1.0)])


def inbox(tmp_path: Path, calls: Calls, *, dry_run: bool, resume_running_after: float = 30.0) -> JournalInbox:
    return JournalInbox(
        journal_path(tmp_path),
        calls,
        capacity=10,
        workers=1,
        poll_seconds=0.05,
        dry_run=dry_run,
        resume_running_after=resume_running_after,
    )


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def states(tmp_path: Path) -> dict[str, str]:
    return {row.delivery_id: row.state for row in recent_deliveries(journal_path(tmp_path))}


async def test_done_in_dry_run_is_not_done_for_a_live_run(tmp_path: Path) -> None:
    dry, live = Calls(), Calls()
    dry_inbox = inbox(tmp_path, dry, dry_run=True)
    await dry_inbox.start()
    assert await dry_inbox.submit(delivery("d-1")) == "accepted"
    await until(lambda: dry_inbox.pending == 0)
    assert await dry_inbox.submit(delivery("d-1")) == "duplicate"  # within dry-run it is done
    await dry_inbox.stop(grace=1)

    live_inbox = inbox(tmp_path, live, dry_run=False)
    await live_inbox.start()
    assert await live_inbox.submit(delivery("d-1")) == "accepted", "GitHub's Redeliver after switching live"
    await until(lambda: live_inbox.pending == 0)
    assert live.ran == ["d-1"]
    assert await live_inbox.submit(delivery("d-1")) == "duplicate"
    await live_inbox.stop(grace=1)

    again = inbox(tmp_path, Calls(), dry_run=True)  # done live is done for a dry-run too
    await again.start()
    assert await again.submit(delivery("d-1")) == "duplicate"
    await again.stop(grace=1)


async def test_a_dry_run_restart_leaves_live_work_for_a_live_run(tmp_path: Path) -> None:
    blocked = asyncio.Event()

    async def hang(item: Delivery) -> DispatchResult:
        await blocked.wait()
        raise AssertionError("never reached")

    live_inbox = JournalInbox(journal_path(tmp_path), hang, capacity=10, workers=1, poll_seconds=0.05)
    await live_inbox.start()
    for key in ("live-1", "live-2"):
        assert await live_inbox.submit(delivery(key)) == "accepted"
    await live_inbox.stop(grace=0.05)  # live-1 cut off while running, live-2 still queued

    dry = Calls()
    dry_inbox = inbox(tmp_path, dry, dry_run=True, resume_running_after=0.0)
    await dry_inbox.start()
    assert dry_inbox.pending == 0
    assert await dry_inbox.submit(delivery("dry-1")) == "accepted"
    await until(lambda: dry.ran == ["dry-1"] and dry_inbox.pending == 0)
    await asyncio.sleep(0.2)  # several polls: none of them may take the live deliveries
    await dry_inbox.stop(grace=1)
    assert dry.ran == ["dry-1"]
    assert states(tmp_path) == {"live-1": "queued", "live-2": "queued", "dry-1": "done"}

    live = Calls()
    live_again = inbox(tmp_path, live, dry_run=False, resume_running_after=0.0)
    await live_again.start()
    await until(lambda: live_again.pending == 0)
    await live_again.stop(grace=1)
    assert sorted(live.ran) == ["live-1", "live-2"]


async def test_a_delivery_cut_off_after_its_first_write_began_resumes_after_the_request_timeout(tmp_path: Path) -> None:
    """Only a delivery that had begun a write waits (its request may still land); one that had only read, and one
    still queued, run again at once."""
    blocked = asyncio.Event()

    async def hang(item: Delivery) -> DispatchResult:
        if item.delivery_id == "writing":
            await before_effect()  # as the GitHub client does before a POST, which then hangs in flight
        await blocked.wait()
        raise AssertionError("never reached")

    first = JournalInbox(journal_path(tmp_path), hang, capacity=10, workers=2, poll_seconds=0.05)
    await first.start()
    began = time.time()
    for key in ("writing", "reading", "queued"):
        assert await first.submit(delivery(key)) == "accepted"
    await until(lambda: states(tmp_path)["writing"] == "running")
    await first.stop(grace=0.05)  # as after kill -9: two had begun, one of them writing; "queued" had not
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path))) as conn:
        started = dict(conn.execute("SELECT delivery_id, started_at FROM deliveries").fetchall())
    assert started["queued"] == started["reading"] == 0 and started["writing"] >= began - 1

    calls = Calls()
    second = inbox(tmp_path, calls, dry_run=False, resume_running_after=30.0)
    await second.start()
    assert second.pending == 3
    await until(lambda: sorted(calls.ran) == ["queued", "reading"])
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path))) as conn:
        due = conn.execute("SELECT next_attempt_at FROM deliveries WHERE delivery_id = 'writing'").fetchone()[0]
    assert due == started["writing"] + 30.0  # the request timeout after it was marked
    assert second.pending == 1
    await second.stop(grace=1)


async def test_dedupe_entries_carry_the_mode(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, url = fake_github
    shared = MemoryDedupeStore()  # stands for the shared table both runs use
    settings = make_settings(tmp_path, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url)
    dry = Runtime.build(settings, dry_run=True)
    live = Runtime.build(settings, dry_run=False)
    dry.dispatcher.dedupe = live.dispatcher.dedupe = shared
    issue = Delivery(
        event="issues",
        delivery_id="d-mode",
        payload=orjson.loads(ISSUE_OPENED),
        body=ISSUE_OPENED,
        source="github-http",
    )
    try:
        assert (await dry.dispatcher.dispatch(issue)).ok
        assert (await dry.dispatcher.dispatch(issue)).duplicate
        assert fake.posted_comments() == []
        result = await live.dispatcher.dispatch(issue)
        assert result.ok and not result.duplicate
        assert len(fake.posted_comments()) == 1
    finally:
        await dry.close()
        await live.close()
