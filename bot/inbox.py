"""The inbox: the seam between accepting a delivery and acting on it (admission, pacing, workers, retries).

Each verified delivery is written to the journal (bot/journal.py, through the group-commit writer of
bot/journal_writer.py) and committed before the answer goes out; workers take it from there and mark it finished
only after the handlers have run. On start, whatever was queued or running when the process died runs again
(handlers are idempotent by design: dedupe keys per plugin and hidden markers on comments).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from bot.delivery import S3_EVENT, Delivery, Source
from bot.dispatch import DispatchResult
from bot.effects import OnceMark, start_mark
from bot.github import backoff_seconds
from bot.github_events import event_label
from bot.github_webhook import parse_payload, stored_body_type
from bot.health import Health
from bot.journal import (
    DONE,
    DRY_RUN,
    DUE,
    FAILED,
    KEEP_FINISHED_SECONDS,
    LIVE,
    PAGE_SIZE,
    SCHEMA_VERSION,
    AdmissionRow,
    Admitted,
    JournalRow,
    State,
    admit_unless_replayed,
    begin_attempt,
    connect,
    due,
    journal_path,
    mark_running,
    recent_deliveries,
    record_outcome,
    recover,
    requeue,
    resolve_ids,
    schedule_retry,
)
from bot.journal_writer import JournalWriter
from bot.logs import current_delivery
from bot.metrics import DELIVERIES_PROCESSED
from bot.s3_events import delivery_from_s3_record

# What callers have always imported from here; the journal's own names live in bot.journal.
__all__ = [
    "DUE",
    "KEEP_FINISHED_SECONDS",
    "PAGE_SIZE",
    "SCHEMA_VERSION",
    "Admission",
    "Inbox",
    "JournalInbox",
    "JournalRow",
    "Processor",
    "connect",
    "journal_path",
    "recent_deliveries",
    "requeue",
    "resolve_ids",
    "restore_delivery",
]

log = logging.getLogger("hookbot.inbox")

Processor = Callable[[Delivery], Awaitable[DispatchResult]]
Admission = Literal["accepted", "duplicate", "busy"]

POLL_SECONDS = 1.0  # how soon a retry falls due or a `hookbot deliveries retry` is noticed
MAX_BACKOFF_SECONDS = 600.0
# Pacing: while two deliveries per worker wait for one, a new delivery is held back until a worker takes one,
# or for PACE_SECONDS at most; then it is admitted anyway (never refused for this).
PACE_PER_WORKER = 2
PACE_SECONDS = 0.05


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
        dry_run: bool = False,
        resume_running_after: float = 30.0,
        health: Health | None = None,
    ) -> None:
        """``resume_running_after``: the GitHub client's request timeout (see bot.journal.RESUME_RUNNING)."""
        self._mode = DRY_RUN if dry_run else LIVE
        self._resume_running_after = resume_running_after
        self._poll_seconds = poll_seconds
        self._process = process
        self._capacity = capacity
        self._workers = workers
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._journal = JournalWriter(path, health)
        # Each with whether its attempt is already counted (admitted at the door: counted in the admitting commit).
        self._ready: asyncio.Queue[tuple[Delivery, bool]] = asyncio.Queue()
        self._paced: collections.deque[asyncio.Future[None]] = collections.deque()
        self._unfinished: set[str] = set()  # counted as pending: queued, waiting for a retry, or running
        self._scheduled: set[str] = set()  # in the ready queue or running in this process
        self._busy = 0
        self._idle = asyncio.Event()
        self._draining = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        return len(self._unfinished)

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
            self._mode,
            bytes.fromhex(delivery.body_sha256),
        )

        committed = self._journal.write(functools.partial(admit_unless_replayed, row=row))
        # The bookkeeping after the commit runs as a callback, not after the await below: a request cancelled
        # while waiting (the client hung up) must still get its committed delivery queued for a worker.
        committed.add_done_callback(functools.partial(self._admitted, delivery))
        try:
            state = await asyncio.shield(committed)
        except Exception:
            log.exception("could not write delivery %s to the journal; answering busy", key)
            return "busy"
        # None: the body came before, under another id
        return "duplicate" if state is None or state[0] == DONE else "accepted"

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

    def _admitted(self, delivery: Delivery, committed: asyncio.Future[Admitted | None]) -> None:
        admitted = None if committed.cancelled() or committed.exception() is not None else committed.result()
        if admitted is None or admitted[0] == DONE:
            self._forget(delivery.delivery_id)
            return
        self._ready.put_nowait((delivery, admitted[1]))

    def _forget(self, key: str) -> None:
        self._unfinished.discard(key)
        self._scheduled.discard(key)

    # -- working -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._journal.start()
        keep_after = time.time() - KEEP_FINISHED_SECONDS
        found = await self._journal.write(
            functools.partial(recover, keep_after=keep_after, mode=self._mode, resume_after=self._resume_running_after)
        )
        self._unfinished.update(found.unfinished)
        if found.unfinished:
            log.info("resuming %d unfinished deliveries from the journal", len(found.unfinished))
        waiting = [at for _, at in found.interrupted if at > time.time()]
        if waiting:
            log.info(
                "%d deliveries were running when the process stopped; each resumes %.0fs after its attempt began,"
                " once a GitHub request it had in flight has landed or failed",
                len(waiting),
                self._resume_running_after,
            )
        if found.left_for_live:
            log.warning("%d deliveries accepted in a live run stay queued for the next live run", found.left_for_live)
        self._tasks = [asyncio.create_task(self._work(), name=f"hookbot-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="hookbot-journal-poll"))

    async def _poll_loop(self) -> None:
        """Schedule what fell due: retries after their backoff, rows resumed at start, rows re-queued by the CLI."""
        while True:
            await self._schedule_due()
            await asyncio.sleep(self._poll_seconds)

    async def _schedule_due(self) -> None:
        found = functools.partial(
            due, now=time.time(), limit=max(1, self._capacity), exclude=frozenset(self._scheduled), mode=self._mode
        )
        for key, event, source, received_at, body in await self._journal.write(found):
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
        """Run one attempt; ``counted``: admitted at the door, whose commit counted this first attempt."""
        key = delivery.delivery_id
        token = current_delivery.set(key)
        # A delivery taken from the journal was marked running when its attempt was counted (BEGIN_ATTEMPT).
        mark = OnceMark(functools.partial(self._mark_running, key) if counted else None)
        mark_token = start_mark.set(mark)
        try:
            attempt = 1
            if not counted:
                begin = functools.partial(begin_attempt, key=key, now=time.time(), mode=self._mode)
                attempt = await self._journal.write(begin)
            if attempt > self._max_attempts:
                # Attempts are counted before work starts, so a delivery that kills the process every time
                # is parked here instead of crash-looping the server.
                await self._finish(key, FAILED, f"gave up after {attempt - 1} attempts", event=delivery.event)
                return
            try:
                result = await self._process(delivery)
            except Exception as exc:
                # The processor failed before any handler's outcome (a de-dup store that cannot be reached):
                # the delivery is retried like a failed handler, not left stranded until the next start.
                log.exception("processing delivery %s failed", key)
                error = f"{type(exc).__name__}: {exc}"
                if attempt >= self._max_attempts:
                    await self._finish(key, FAILED, error, event=delivery.event)
                else:
                    await self._retry_later(key, attempt, error, delivery.event)
                return
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
            mark.close()
            start_mark.reset(mark_token)
            current_delivery.reset(token)

    def _mark_running(self, key: str) -> asyncio.Future[None]:
        """Commit that ``key`` may have a write in flight from now (bot/effects.py)."""
        return self._journal.write(functools.partial(mark_running, key=key, now=time.time(), mode=self._mode))

    async def _retry_later(self, key: str, attempt: int, error: str, event: str) -> None:
        delay = backoff_seconds(attempt, self._retry_base, MAX_BACKOFF_SECONDS)
        log.info("delivery failed (attempt %d); retrying in %.1fs: %s", attempt, delay, error)
        at, now = time.time() + delay, time.time()
        await self._journal.write(functools.partial(schedule_retry, key=key, at=at, error=error, now=now))
        self._scheduled.discard(key)  # only after the commit: the poll finds it again once due
        DELIVERIES_PROCESSED.labels(event_label(event), "retry").inc()

    async def _finish(
        self, key: str, state: State, error: str | None, *, event: str = "-", outcome: str | None = None
    ) -> None:
        """Record the outcome; the worker moves on at once and the delivery stops counting as pending on commit.

        Not waiting for this commit keeps a worker's time per delivery to the handlers' own: until it lands the row
        still says unfinished, so a crash in between only means the delivery runs once more. So it need not be
        durable either (bot/journal_writer.py): a power cut that undoes it runs the delivery once more, as a crash
        before it would, and nothing waited for it. A batch of outcomes alone then costs no fsync.
        """
        now = time.time()
        record = functools.partial(record_outcome, key=key, state=state, error=error, now=now)
        committed = self._journal.write(record, durable=False)
        committed.add_done_callback(functools.partial(self._finished, key, state, event, outcome or state))

    def _finished(self, key: str, state: State, event: str, outcome: str, committed: asyncio.Future[Any]) -> None:
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
        await self._journal.close()
        left = len(self._unfinished)
        if left:
            log.info("%d deliveries left in the journal for the next start", left)
