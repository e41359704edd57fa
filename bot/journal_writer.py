"""Group commit: every journal write, from every concurrent request and worker, behind one awaitable call.

Why stdlib ``sqlite3`` on one dedicated thread rather than aiosqlite: a commit with ``synchronous=FULL`` waits
for an fsync, which must not block the event loop, but aiosqlite hops to its thread once per call (execute,
then commit), i.e. per request. Here every write is queued as a small operation (a function of the connection,
from bot/journal.py); one writer task hands the whole queue to the thread and runs it as a single transaction,
so N concurrent deliveries cost one thread hop and one fsync, and each caller awaits only its batch's commit.
The connection lives on that thread alone.

A batch of writes that need not be durable at once (a delivery's outcome: see `write`) commits with
``synchronous=NORMAL``, i.e. without an fsync. Such a commit still survives a ``kill -9`` (its pages are in the
operating system's cache once COMMIT returns); only a power cut or kernel crash before the next fsync can undo it,
and the next durable commit fsyncs it along (the WAL is one file, appended in commit order; a checkpoint fsyncs the
WAL first at either level).
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

from bot.health import Health
from bot.journal import connect
from bot.metrics import JOURNAL_BATCH

log = logging.getLogger("hookbot.inbox")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]


class JournalWriter:
    """Runs operations on the journal in batches, one transaction (one fsync) per batch, on its own thread."""

    def __init__(self, path: Path, health: Health | None = None) -> None:
        self._path = path
        self._health = health or Health()  # a journal that keeps failing turns /healthz to 503
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbot-journal")
        self._conn: sqlite3.Connection | None = None
        self._ops: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
        self._durable = False  # whether an op queued since the last batch must be durable when its commit is done
        self._synchronous = "FULL"  # the connection's level (connect() sets FULL)
        self._ops_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="hookbot-journal-writer")

    def write(self, op: Operation[T], *, durable: bool = True) -> asyncio.Future[T]:
        """Queue ``op`` for the next group commit; the future holds its result (or error) once that commit is done.

        A future rather than a coroutine, so that a caller may also act on the commit from a callback: a request
        cancelled while it waits must still have its committed delivery handed to a worker. ``durable=False``: the
        commit need not be fsynced when the future is done (see the module's docstring); a batch of such writes
        alone commits without an fsync, one that holds any durable write fsyncs as always.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        self._durable = self._durable or durable
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
            durable, self._durable = self._durable, False
            if not batch:
                continue
            JOURNAL_BATCH.observe(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._apply, [op for op, _ in batch], durable)
                self._health.succeeded("journal")
            except Exception as exc:
                log.exception("journal commit failed")
                self._health.failed("journal", f"commit to {self._path} failed: {exc}")
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    # -- on the journal thread -----------------------------------------------------------------------------

    def _apply(self, batch: list[Operation[Any]], durable: bool = True) -> list[Any]:
        """Run a batch of operations as one transaction; one result (or error) each."""
        if self._conn is None:
            self._conn = connect(self._path)
            self._synchronous = "FULL"
        conn = self._conn
        synchronous = "FULL" if durable else "NORMAL"
        if synchronous != self._synchronous:  # outside a transaction, where SQLite takes it
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
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
