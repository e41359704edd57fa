"""Group commit: every journal write, from every concurrent request and worker, behind one awaitable call.

Why stdlib ``sqlite3`` on one dedicated thread rather than aiosqlite: a commit with ``synchronous=FULL`` waits
for an fsync, which must not block the event loop, but aiosqlite hops to its thread once per call (execute,
then commit), i.e. per request. Here every write is queued as a small operation (a function of the connection,
from bot/journal.py); one writer task hands the whole queue to the thread and runs it as a single transaction,
so N concurrent deliveries cost one thread hop and one fsync, and each caller awaits only its batch's commit.
The connection lives on that thread alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bot.journal import connect
from bot.metrics import JOURNAL_BATCH

log = logging.getLogger("hookbot.inbox")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]


class JournalWriter:
    """Runs operations on the journal in batches, one transaction (one fsync) per batch, on its own thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbot-journal")
        self._conn: sqlite3.Connection | None = None
        self._ops: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
        self._ops_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="hookbot-journal-writer")

    def write(self, op: Operation[T]) -> asyncio.Future[T]:
        """Queue ``op`` for the next group commit; the future holds its result (or error) once that commit is done.

        A future rather than a coroutine, so that a caller may also act on the commit from a callback: a request
        cancelled while it waits must still have its committed delivery handed to a worker.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        self._ops_ready.set()
        return future

    async def close(self) -> None:
        """Commit everything queued so far, then stop the writer and close the connection."""
        if self._task is not None:
            await self.write(lambda conn: None)  # ops commit in order: this lands after every earlier write
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ops_ready.wait()
            self._ops_ready.clear()
            batch, self._ops = self._ops, []
            if not batch:
                continue
            JOURNAL_BATCH.observe(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._apply, [op for op, _ in batch])
            except Exception as exc:
                log.exception("journal commit failed")
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    # -- on the journal thread -----------------------------------------------------------------------------

    def _apply(self, batch: list[Operation[Any]]) -> list[Any]:
        """Run a batch of operations as one transaction; one result (or error) each."""
        if self._conn is None:
            self._conn = connect(self._path)
        conn = self._conn
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                try:
                    results.append(op(conn))
                except sqlite3.Error as exc:
                    results.append(exc)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return results

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
