"""The seam between accepting a delivery and acting on it: a durable journal inbox in SQLite.

GitHub never retries a delivery by itself, so once hookbot has answered 202 the delivery must survive a crash.
Each verified delivery is written to a SQLite journal (WAL, ``synchronous=FULL``) and committed before the
answer goes out; workers take it from there and mark it finished only after the handlers have run. On start,
whatever was queued or running when the process died runs again (handlers are idempotent by design: dedupe keys
per plugin and hidden markers on comments).

Why stdlib ``sqlite3`` on one dedicated thread rather than aiosqlite: a commit with ``synchronous=FULL`` waits
for an fsync, which must not block the event loop, but aiosqlite hops to its thread once per call (execute,
then commit), i.e. per request. Here every write, from every concurrent request and worker, is queued as a
small operation; one writer task hands the whole queue to the thread and runs it as a single transaction
(group commit), so N concurrent deliveries cost one thread hop and one fsync, and each request awaits only its
batch's commit. The connection lives on that thread alone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import orjson

from bot.delivery import S3_EVENT, Delivery, Source
from bot.dispatch import DispatchResult
from bot.github import backoff_seconds
from bot.github_events import event_label
from bot.github_webhook import parse_payload, stored_body_type
from bot.logs import current_delivery
from bot.metrics import DELIVERIES_PROCESSED, JOURNAL_BATCH
from bot.s3_events import delivery_from_s3_record

log = logging.getLogger("hookbot.inbox")

Processor = Callable[[Delivery], Awaitable[DispatchResult]]
Admission = Literal["accepted", "duplicate", "busy"]
T = TypeVar("T")

JOURNAL_FILE = "inbox.sqlite3"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
POLL_SECONDS = 1.0  # how soon a retry falls due or a `hookbot deliveries retry` is noticed
MAX_BACKOFF_SECONDS = 600.0
KEEP_FINISHED_SECONDS = 14 * 24 * 3600  # finished rows are pruned after this (they feed `hookbot deliveries`)
# Pacing: while two deliveries per worker wait for one, a new delivery is held back until a worker takes one,
# or for PACE_SECONDS at most; then it is admitted anyway (never refused for this).
PACE_PER_WORKER = 2
PACE_SECONDS = 0.05

# Schema version 1 (PRAGMA user_version). The body lives in its own table, keyed by the delivery's row id, so
# that recording an outcome rewrites only the small row (an UPDATE rewrites every column of its row, and a body is
# ~12 KB over several pages); a finished delivery's body is deleted, since only unfinished and failed deliveries
# are ever run again (a retry, `hookbot deliveries retry`, a redelivered dead letter), which keeps the file from
# growing by every body for KEEP_FINISHED_SECONDS. Only unfinished rows are indexed for the poll, as that index
# changes with every state change; `hookbot deliveries` lists by row id, the order the journal accepted them.
# Version 2 adds each delivery's action and repository, which `hookbot deliveries` shows (a done delivery's body,
# where they could otherwise be read, is gone). Versions 0 (the body a column of `deliveries`) and 1 are migrated
# on open: see migrate().
SCHEMA_VERSION = 2
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    error TEXT,
    action TEXT,
    repository TEXT
)""",
    "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('queued', 'running')",
)
# 8 KiB pages for a new journal: a ~12 KB body fills one and a half pages instead of three 4 KiB ones (each page
# a WAL frame, and a copy at the checkpoint), which saves more than writing the small rows' and the indexes' pages
# in 8 KiB costs. SQLite sets the page size only while a file is empty, or in a VACUUM (see compact()).
PAGE_SIZE = 8192

# A new delivery is inserted; a redelivery of a dead letter (GitHub's "Redeliver" button) queues it again; a
# repeat of anything else changes nothing (rowcount 0) and is answered from its current state. Either way the
# delivery goes straight to a worker, so its first attempt is counted in this same commit: the worker starts at
# once instead of waiting for a second commit (an fsync) per delivery just to count it.
INSERT = """
INSERT INTO deliveries (delivery_id, event, source, received_at, state, updated_at, attempts, action, repository)
VALUES (?, ?, ?, ?, 'queued', ?, 1, ?, ?)
ON CONFLICT (delivery_id) DO UPDATE SET
    state = 'queued', attempts = 1, next_attempt_at = 0, error = NULL, updated_at = excluded.updated_at
WHERE state = 'failed'
"""
# The body by the row's id, looked up again rather than taken from RETURNING, which costs more per statement (a
# redelivered dead letter still has its body, failed ones keep it: the same bytes again, replaced).
INSERT_BODY = "INSERT OR REPLACE INTO bodies (id, body) SELECT id, ? FROM deliveries WHERE delivery_id = ?"
DELETE_BODY = "DELETE FROM bodies WHERE id = (SELECT id FROM deliveries WHERE delivery_id = ?)"
FINISH = "UPDATE deliveries SET state = ?, error = ?, updated_at = ? WHERE delivery_id = ?"
# What the poll schedules. Sorted by received_at, not by id: ordering by id would let SQLite walk the whole table in
# id order (every finished row of the last 14 days, every poll) instead of the small unfinished index.
DUE = (
    "SELECT delivery_id FROM deliveries WHERE state IN ('queued', 'running') AND next_attempt_at <= ?"
    " ORDER BY received_at LIMIT ?"
)

# Version 0 to 1, in one transaction: the rows keep their order (so their new ids follow it); only the bodies
# that can still be needed are carried over.
MIGRATE_FROM_V0 = (
    "ALTER TABLE deliveries RENAME TO deliveries_v0",
    "DROP INDEX IF EXISTS deliveries_due",
    "DROP INDEX IF EXISTS deliveries_recent",
    *SCHEMA,
    """
INSERT INTO deliveries (delivery_id, event, source, received_at, state, attempts, next_attempt_at, updated_at, error)
SELECT delivery_id, event, source, received_at, state, attempts, next_attempt_at, updated_at, error
FROM deliveries_v0 ORDER BY received_at, rowid""",
    """
INSERT INTO bodies (id, body)
SELECT d.id, v0.body FROM deliveries AS d JOIN deliveries_v0 AS v0 USING (delivery_id) WHERE d.state != 'done'""",
    "DROP TABLE deliveries_v0",
)
MIGRATE_FROM_V1 = (
    "ALTER TABLE deliveries ADD COLUMN action TEXT",
    "ALTER TABLE deliveries ADD COLUMN repository TEXT",
)


AdmissionRow = tuple[str, str, str, float, bytes, float, str | None, str | None]


def record_admission(conn: sqlite3.Connection, row: AdmissionRow) -> str:
    """Journal a delivery at the door (see INSERT): its state after this commit, "queued" when it is to run now."""
    key, event, source, received_at, body, now, action, repository = row
    if conn.execute(INSERT, (key, event, source, received_at, now, action, repository)).rowcount:
        conn.execute(INSERT_BODY, (body, key))
        return QUEUED
    found = conn.execute("SELECT state FROM deliveries WHERE delivery_id = ?", (key,)).fetchone()
    return str(found[0])


def record_outcome(conn: sqlite3.Connection, key: str, state: str, error: str | None, now: float) -> None:
    """Mark a delivery finished; a done one will never run again, so its body goes."""
    if state == DONE:
        conn.execute(DELETE_BODY, (key,))
    conn.execute(FINISH, (state, error, now, key))


class Inbox(Protocol):
    @property
    def pending(self) -> int:
        """Accepted deliveries not yet finished (queued, waiting for a retry, or in progress)."""
        ...

    async def submit(self, delivery: Delivery) -> Admission:
        """Persist a delivery for processing: "busy" when full or shutting down (the caller answers 503)."""
        ...

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One delivery as `hookbot deliveries` shows it."""

    delivery_id: str
    event: str
    source: str
    received_at: float
    state: str
    attempts: int
    updated_at: float
    error: str | None
    action: str | None
    repository: str | None


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_FILE


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating if needed) the journal in autocommit mode; transactions are explicit."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL mode writes the header; ignored once it exists
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction: a new file gets the schema, a version 0 one is converted.

    A user upgrading hookbot may have deliveries queued in a version 0 journal; they must run after the upgrade,
    and dead letters must stay retriable. The version is checked again under the write lock, since the server
    and a `hookbot deliveries` command may open the file at the same time.
    """
    converted = False
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(deliveries)")}
            converted = "body" in columns
            if version == 1:
                statements: tuple[str, ...] = MIGRATE_FROM_V1
            else:
                statements = MIGRATE_FROM_V0 if converted else SCHEMA
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    if converted:
        compact(conn)


def compact(conn: sqlite3.Connection) -> None:
    """Once after converting a version 0 journal: give back the space of the dropped bodies, and take PAGE_SIZE.

    A version 0 file held every body for KEEP_FINISHED_SECONDS and SQLite never shrinks a file by itself. The
    page size can change only outside WAL mode, so the file leaves it for the VACUUM (atomic, under a rollback
    journal). Only an optimisation: while another connection has the file open SQLite refuses to leave WAL mode,
    and the journal simply stays as it is.
    """
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        log.info("journal converted but not compacted (%s); it works as it is", exc)
    finally:
        conn.execute("PRAGMA journal_mode=WAL")


def restore_delivery(event: str, delivery_id: str, body: bytes, source: str, received_at: float) -> Delivery:
    """Rebuild a Delivery from its journal row by parsing the stored body again, as at the door.

    Only the bytes are stored (no second serialisation on the receive path), so the content type is told from
    the body; an S3 delivery's body is its notification record.
    """
    if event == S3_EVENT:
        restored = delivery_from_s3_record(orjson.loads(body), source=source)  # type: ignore[arg-type]
        payload = restored.payload
    else:
        payload = parse_payload(body, stored_body_type(body))
    src: Source = source  # type: ignore[assignment]
    return Delivery(
        event=event, delivery_id=delivery_id, payload=payload, body=body, source=src, received_at=received_at
    )


def _wake(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


def summarize_failure(result: DispatchResult) -> str:
    return "; ".join(f"{o.handler}: {o.error}" for o in result.outcomes if o.status == "failed")


class JournalInbox:
    """Durable, bounded inbox: SQLite journal with group commit, a fixed worker pool, retries, dead letters."""

    def __init__(
        self,
        path: Path,
        process: Processor,
        *,
        capacity: int,
        workers: int,
        max_attempts: int = 5,
        retry_base_seconds: float = 2.0,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._path = path
        self._poll_seconds = poll_seconds
        self._process = process
        self._capacity = capacity
        self._workers = workers
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbot-journal")
        self._conn: sqlite3.Connection | None = None
        self._ops: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._ops_ready = asyncio.Event()
        # Each with whether its attempt is already counted (new deliveries: counted in the admitting commit).
        self._ready: asyncio.Queue[tuple[Delivery, bool]] = asyncio.Queue()
        self._paced: collections.deque[asyncio.Future[None]] = collections.deque()
        self._unfinished: set[str] = set()  # counted as pending: queued, waiting for a retry, or running
        self._scheduled: set[str] = set()  # in the ready queue or running in this process
        self._busy = 0
        self._idle = asyncio.Event()
        self._draining = False
        self._writer: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        return len(self._unfinished)

    # -- the journal thread --------------------------------------------------------------------------------

    def _apply(self, batch: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """Run a batch of operations as one transaction on the journal thread; one result (or error) each."""
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

    def _queue_op(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue one operation for the next group commit; the future is done once that commit is."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        self._ops_ready.set()
        return future

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self._queue_op(op)

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

    # -- receiving -----------------------------------------------------------------------------------------

    async def submit(self, delivery: Delivery) -> Admission:
        key = delivery.delivery_id
        if self._draining:
            return "busy"
        if key in self._unfinished:
            return "accepted"  # the same delivery again while it is still queued: it will run once
        if len(self._unfinished) >= self._capacity:
            return "busy"
        if self._ready.qsize() >= PACE_PER_WORKER * self._workers:
            await self._pace()
            if self._draining:
                return "busy"
            if key in self._unfinished:
                return "accepted"
        # Counted and marked scheduled before the write so that a concurrent poll cannot schedule it twice.
        self._unfinished.add(key)
        self._scheduled.add(key)
        now = time.time()
        row: AdmissionRow = (
            key,
            delivery.event,
            delivery.source,
            delivery.received_at,
            delivery.body,
            now,
            delivery.action,
            delivery.repository,
        )

        committed = self._queue_op(functools.partial(record_admission, row=row))
        # The bookkeeping after the commit runs as a callback, not after the await below: a request cancelled
        # while waiting (the client hung up) must still get its committed delivery queued for a worker.
        committed.add_done_callback(functools.partial(self._admitted, delivery))
        try:
            state = await asyncio.shield(committed)
        except Exception:
            log.exception("could not write delivery %s to the journal; answering busy", key)
            return "busy"
        return "duplicate" if state == DONE else "accepted"

    async def _pace(self) -> None:
        """Hold a new delivery back while workers are behind, until one of them takes a delivery (or briefly).

        The door and the workers share one event loop. When handlers are CPU-bound the door, which only waits for
        group commits, accepts faster than the workers finish, the backlog fills the inbox and the door answers
        503. Holding each new delivery until a worker takes one slows the door to the workers' pace, so it stays
        a few milliseconds behind them instead of refusing; when workers wait on I/O the hold ends after
        PACE_SECONDS at most, so a burst is still taken in up to ``capacity``.
        """
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._paced.append(turn)
        timer = asyncio.get_running_loop().call_later(PACE_SECONDS, _wake, turn)
        try:
            await turn
        finally:
            timer.cancel()

    def _admitted(self, delivery: Delivery, committed: asyncio.Future[str]) -> None:
        if committed.cancelled() or committed.exception() is not None or committed.result() == DONE:
            self._forget(delivery.delivery_id)
            return
        self._ready.put_nowait((delivery, True))

    def _forget(self, key: str) -> None:
        self._unfinished.discard(key)
        self._scheduled.discard(key)

    # -- working -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="hookbot-journal-writer")
        keep_after = time.time() - KEEP_FINISHED_SECONDS

        def recover(conn: sqlite3.Connection) -> list[str]:
            conn.execute("DELETE FROM deliveries WHERE state IN ('done', 'failed') AND updated_at < ?", (keep_after,))
            conn.execute("DELETE FROM bodies WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE id = bodies.id)")
            rows = conn.execute("SELECT delivery_id FROM deliveries WHERE state IN ('queued', 'running')")
            return [str(r[0]) for r in rows]

        resumed = await self._write(recover)
        self._unfinished.update(resumed)
        if resumed:
            log.info("resuming %d unfinished deliveries from the journal", len(resumed))
        self._tasks = [asyncio.create_task(self._work(), name=f"hookbot-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="hookbot-journal-poll"))

    async def _poll_loop(self) -> None:
        """Schedule what fell due: retries after their backoff, rows resumed at start, rows re-queued by the CLI."""
        while True:
            await self._schedule_due()
            await asyncio.sleep(self._poll_seconds)

    async def _schedule_due(self) -> None:
        exclude = frozenset(self._scheduled)
        now = time.time()
        limit = max(1, self._capacity)

        def due(conn: sqlite3.Connection) -> list[tuple[str, str, str, float, bytes]]:
            ids = [str(r[0]) for r in conn.execute(DUE, (now, limit + len(exclude))) if r[0] not in exclude][:limit]
            return [
                conn.execute(
                    "SELECT delivery_id, event, source, received_at, body FROM deliveries LEFT JOIN bodies USING (id)"
                    " WHERE delivery_id = ?",
                    (key,),
                ).fetchone()
                for key in ids
            ]

        for key, event, source, received_at, body in await self._write(due):
            if key in self._scheduled:
                continue
            try:
                delivery = restore_delivery(event, key, body, source, received_at)
            except Exception as exc:
                await self._finish(key, FAILED, f"cannot restore from the journal: {exc}")
                continue
            self._unfinished.add(key)
            self._scheduled.add(key)
            self._ready.put_nowait((delivery, False))

    async def _work(self) -> None:
        while not self._draining:
            delivery, counted = await self._ready.get()
            while self._paced:
                turn = self._paced.popleft()
                if not turn.done():
                    turn.set_result(None)
                    break
            if self._draining:
                return  # leave it queued in the journal for the next start
            self._busy += 1
            self._idle.clear()
            try:
                await self._run(delivery, counted)
            except Exception:
                log.exception("processing delivery %s failed unexpectedly", delivery.delivery_id)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    async def _run(self, delivery: Delivery, counted: bool) -> None:
        key = delivery.delivery_id
        token = current_delivery.set(key)
        try:
            now = time.time()

            def begin(conn: sqlite3.Connection) -> int:
                row = conn.execute(
                    "UPDATE deliveries SET state = 'running', attempts = attempts + 1, updated_at = ?"
                    " WHERE delivery_id = ? RETURNING attempts",
                    (now, key),
                ).fetchone()
                return int(row[0]) if row else 0

            attempt = 1 if counted else await self._write(begin)
            if attempt > self._max_attempts:
                # Attempts are counted before work starts, so a delivery that kills the process every time
                # is parked here instead of crash-looping the server.
                await self._finish(key, FAILED, f"gave up after {attempt - 1} attempts", event=delivery.event)
                return
            result = await self._process(delivery)
            if result.duplicate:
                await self._finish(key, DONE, "already handled elsewhere", event=delivery.event, outcome="duplicate")
            elif result.ok:
                await self._finish(key, DONE, None, event=delivery.event)
            else:
                error = summarize_failure(result)
                permanent = all(o.permanent for o in result.outcomes if o.status == "failed")
                if permanent or attempt >= self._max_attempts:
                    log.warning("delivery parked as a dead letter after %d attempts: %s", attempt, error)
                    await self._finish(key, FAILED, error, event=delivery.event)
                else:
                    await self._retry_later(key, attempt, error, delivery.event)
        finally:
            current_delivery.reset(token)

    async def _retry_later(self, key: str, attempt: int, error: str, event: str) -> None:
        delay = backoff_seconds(attempt, self._retry_base, MAX_BACKOFF_SECONDS)
        log.info("delivery failed (attempt %d); retrying in %.1fs: %s", attempt, delay, error)
        at, now = time.time() + delay, time.time()
        await self._write(
            lambda conn: conn.execute(
                "UPDATE deliveries SET state = 'queued', next_attempt_at = ?, error = ?, updated_at = ?"
                " WHERE delivery_id = ?",
                (at, error, now, key),
            )
        )
        self._scheduled.discard(key)  # only after the commit: the poll finds it again once due
        DELIVERIES_PROCESSED.labels(event_label(event), "retry").inc()

    async def _finish(
        self, key: str, state: str, error: str | None, *, event: str = "-", outcome: str | None = None
    ) -> None:
        """Record the outcome; the worker moves on at once and the delivery stops counting as pending on commit.

        Not waiting for this commit (an fsync) keeps a worker's time per delivery to the handlers' own: until it
        lands the row still says unfinished, so a crash in between only means the delivery runs once more.
        """
        now = time.time()
        committed = self._queue_op(lambda conn: record_outcome(conn, key, state, error, now))
        committed.add_done_callback(functools.partial(self._finished, key, state, event, outcome or state))

    def _finished(self, key: str, state: str, event: str, outcome: str, committed: asyncio.Future[Any]) -> None:
        if committed.cancelled() or committed.exception() is not None:
            log.error("could not record delivery %s as %s; it runs again at the next start", key, state)
            return
        self._forget(key)
        DELIVERIES_PROCESSED.labels(event_label(event), outcome).inc()

    async def stop(self, grace: float) -> None:
        """Stop taking work, give running handlers ``grace`` seconds, leave everything else in the journal."""
        self._draining = True
        if self._busy:
            log.info("shutting down: waiting up to %.0fs for %d running deliveries", grace, self._busy)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            await self._write(lambda conn: None)  # ops commit in order: this lands after every earlier write
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        left = len(self._unfinished)
        if left:
            log.info("%d deliveries left in the journal for the next start", left)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)


# -- the `hookbot deliveries` command: short synchronous reads and writes of the same file ---------------------


def recent_deliveries(path: Path, *, failed_only: bool = False, limit: int = 50) -> list[JournalRow]:
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT delivery_id, event, source, received_at, state, attempts, updated_at, error, action, repository"
            " FROM deliveries"
            " WHERE (? = 0 OR state = 'failed') ORDER BY id DESC LIMIT ?",
            (int(failed_only), limit),
        ).fetchall()
    finally:
        conn.close()
    return [JournalRow(*row) for row in rows]


def resolve_ids(path: Path, given: Iterable[str]) -> tuple[list[str], list[str]]:
    """Full delivery ids for what a user typed: a full id, or the start of one (the short form tables show).

    Returns the ids found (or, when nothing starts so, the text as given) and a line for each ambiguous one.
    """
    conn = connect(path)
    found: list[str] = []
    problems: list[str] = []
    try:
        for text in given:
            pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matches = [
                str(row[0])
                for row in conn.execute(
                    "SELECT delivery_id FROM deliveries WHERE delivery_id = ? OR delivery_id LIKE ? ESCAPE '\\'",
                    (text, pattern),
                )
            ]
            if text in matches or len(matches) <= 1:
                found.append(text if text in matches or not matches else matches[0])
            else:
                problems.append(f"{text}: the start of {len(matches)} delivery ids; give more of it")
    finally:
        conn.close()
    return found, problems


def requeue(path: Path, ids: Iterable[str] = (), *, all_failed: bool = False) -> list[str]:
    """Queue failed deliveries again; a running server picks them up within a poll, else the next start does.

    Re-queueing (rather than running the handlers in this process) keeps the journal the only place work is
    taken from, so a delivery can never run in the CLI and in the server at once.
    """
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if all_failed:
            keys = [str(r[0]) for r in conn.execute("SELECT delivery_id FROM deliveries WHERE state = 'failed'")]
        else:
            keys = [
                key
                for key in ids
                if conn.execute(
                    "SELECT 1 FROM deliveries WHERE delivery_id = ? AND state = 'failed'", (key,)
                ).fetchone()
            ]
        now = time.time()
        conn.executemany(
            "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = 0, error = NULL,"
            " updated_at = ? WHERE delivery_id = ?",
            [(now, key) for key in keys],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return keys
