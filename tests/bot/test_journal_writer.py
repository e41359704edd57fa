"""The group-commit writer: which commits are fsynced. A delivery's admission always is (202 only after it is
durable); a batch of outcomes alone is not (a power cut that undoes one runs the delivery once more)."""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.inbox import journal_path
from bot.journal_writer import JournalWriter, Operation
from tests.bot.test_inbox import Recorder, delivery, make_inbox, until


def synchronous(conn: sqlite3.Connection) -> int:
    """The level the batch this runs in commits at: 2 FULL (fsync), 1 NORMAL (none until the next durable one)."""
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


async def test_a_batch_fsyncs_when_any_of_its_writes_must_be_durable(tmp_path: Path) -> None:
    writer = JournalWriter(journal_path(tmp_path))
    writer.start()
    try:
        assert await writer.write(synchronous, durable=False) == 1
        assert await writer.write(synchronous) == 2
        mixed = [writer.write(synchronous, durable=False), writer.write(synchronous), writer.write(synchronous)]
        assert await asyncio.gather(*mixed) == [2, 2, 2]  # one batch: the durable write makes it FULL
        assert await writer.write(synchronous, durable=False) == 1
    finally:
        await writer.close()


async def test_only_a_deliverys_outcome_is_written_without_an_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = Recorder()
    process.fail["d-2"] = False  # a transient failure: its retry is scheduled durably, like every other write
    inbox = make_inbox(tmp_path, process)
    journal: JournalWriter = inbox._journal  # observed, not replaced
    written: list[tuple[str, bool]] = []
    real_write = journal.write

    def write(op: Operation[Any], *, durable: bool = True) -> asyncio.Future[Any]:
        name = op.func.__name__ if isinstance(op, partial) else "other"
        written.append((name, durable))
        return real_write(op, durable=durable)

    monkeypatch.setattr(journal, "write", write)
    await inbox.start()
    try:
        assert await inbox.submit(delivery(1)) == "accepted"
        await until(lambda: ("record_outcome", False) in written)
        assert await inbox.submit(delivery(2)) == "accepted"
        await until(lambda: any(name == "schedule_retry" for name, _ in written))
    finally:
        await inbox.stop(grace=1)
    assert {name for name, durable in written if not durable} == {"record_outcome"}
    assert {"recover", "admit_unless_replayed", "schedule_retry"} <= {name for name, durable in written if durable}
