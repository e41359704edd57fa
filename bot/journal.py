"""The journal: the SQLite file an accepted delivery is written to before hookbot answers, and every statement on it.

GitHub never retries a delivery by itself, so once hookbot has answered 202 the delivery must survive a crash:
each one is committed here (WAL, ``synchronous=FULL``) first. This module holds the schema and its migrations,
the delivery states, and every SQL statement, as plain functions over a connection: the group-commit writer
(bot/journal_writer.py) runs them on its thread for the inbox (bot/inbox.py), and `hookbot deliveries` runs the
last few directly.

Schema version 1 (PRAGMA user_version): the body lives in its own table, keyed by the delivery's row id, so that
recording an outcome rewrites only the small row (an UPDATE rewrites every column of its row, and a body is
~12 KB over several pages); a finished delivery's body is deleted, since only unfinished and failed deliveries
are ever run again (a retry, `hookbot deliveries retry`, a redelivered dead letter), which keeps the file from
growing by every body for KEEP_FINISHED_SECONDS. Only unfinished rows are indexed for the poll, as that index
changes with every state change; `hookbot deliveries` lists by row id, the order the journal accepted them.
Version 2 adds each delivery's action and repository, which `hookbot deliveries` shows (a done delivery's body,
where they could otherwise be read, is gone). Version 3 adds the start mark and the mode, version 4 the body's SHA-256
(see SCHEMA_VERSION). Every earlier version is migrated on open: see migrate().
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger("hookbot.inbox")

JOURNAL_FILE = "inbox.sqlite3"
KEEP_FINISHED_SECONDS = 14 * 24 * 3600  # finished rows are pruned after this (they feed `hookbot deliveries`)


class State(StrEnum):
    """Where a delivery is; stored as this text in the ``state`` column."""

    QUEUED = "queued"  # to run now, or once next_attempt_at has passed (a retry)
    RUNNING = "running"  # a worker has it (after a crash: runs again at the next start)
    DONE = "done"  # every plugin succeeded, or it was already handled elsewhere
    FAILED = "failed"  # a dead letter: gave up, or failed in a way no retry can fix


QUEUED, RUNNING, DONE, FAILED = State.QUEUED, State.RUNNING, State.DONE, State.FAILED
UNFINISHED = f"state IN ('{QUEUED}', '{RUNNING}')"  # also the partial index's condition, spelled the same

# Version 3 adds `started_at` (when the delivery was marked running, before its first write outside hookbot: after a
# crash a delivery that was running waits until a request it had in flight has landed or failed) and `mode` ("live"
# or "dry-run": done in dry-run is not done for a live run). Marking only before the first write, and counting a new
# delivery's first attempt at the door, changed no column and no value's meaning for a reader: a queued row of
# an earlier version 3 with 0 attempts is counted when a worker takes it, a running one waits as it did.
# Version 4 adds `body_sha256`, the SHA-256 of the delivery's body (32 bytes; NULL in rows from before it), indexed:
# GitHub's HMAC covers the body but not X-GitHub-Delivery, so a signed body replayed under another delivery id is
# answered as a duplicate from here. It replaces version 3's `seen_bodies` table (hex digest -> delivery id): as a
# column the admitting INSERT writes it (one statement less per delivery), its index entries are a third of the
# size (fewer pages written per commit), and it is pruned with its row.
SCHEMA_VERSION = 4
LIVE, DRY_RUN = "live", "dry-run"
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
    repository TEXT,
    started_at REAL NOT NULL DEFAULT 0,
    mode TEXT NOT NULL DEFAULT 'live',
    body_sha256 BLOB
)""",
    "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE {UNFINISHED}",
    "CREATE UNIQUE INDEX IF NOT EXISTS deliveries_body ON deliveries (body_sha256)",
)
# 8 KiB pages for a new journal: a ~12 KB body fills one and a half pages instead of three 4 KiB ones (each page
# a WAL frame, and a copy at the checkpoint), which saves more than writing the small rows' and the indexes' pages
# in 8 KiB costs. SQLite sets the page size only while a file is empty, or in a VACUUM (see compact()).
PAGE_SIZE = 8192

# A new delivery is inserted; a redelivery of a dead letter (GitHub's "Redeliver" button) queues it again, and so
# does a live redelivery of one that was only done in dry-run; a repeat of anything else changes nothing
# (rowcount 0) and is answered from its current state. Either way the delivery goes straight to a worker, so its
# first attempt is counted in this same commit: the worker starts at once, without a commit of its own. It stays
# queued until its first write outside hookbot (MARK_RUNNING, bot/effects.py): only then can a crash leave a
# request in flight.
INSERT = f"""
INSERT INTO deliveries (
    delivery_id, event, source, received_at, state, updated_at, attempts, action, repository, mode, body_sha256
)
VALUES (?, ?, ?, ?, '{QUEUED}', ?, 1, ?, ?, ?, ?)
ON CONFLICT (delivery_id) DO UPDATE SET
    state = '{QUEUED}', attempts = 1, next_attempt_at = 0, error = NULL, updated_at = excluded.updated_at,
    started_at = 0, mode = excluded.mode, body_sha256 = excluded.body_sha256
WHERE state = '{FAILED}' OR (state = '{DONE}' AND mode = '{DRY_RUN}' AND excluded.mode = '{LIVE}')
"""
STATE_OF = "SELECT state FROM deliveries WHERE delivery_id = ?"
# The same body journaled under another delivery id fails INSERT on the unique index of body_sha256: a replay (see
# SCHEMA_VERSION), found without a query of its own. SQLite checks the upsert's target (delivery_id) first, so a
# repeat of the same delivery is never taken for one. A repeated row of an earlier version (rowcount 0) gets its
# body's digest from now on, unless another row holds it.
REPLAYED = "UNIQUE constraint failed: deliveries.body_sha256"
REMEMBER_BODY = "UPDATE OR IGNORE deliveries SET body_sha256 = ? WHERE delivery_id = ? AND body_sha256 IS NULL"
# The body by the row's id, looked up again rather than taken from RETURNING, which costs more per statement (a
# redelivered dead letter still has its body, failed ones keep it: the same bytes again, replaced).
INSERT_BODY = "INSERT OR REPLACE INTO bodies (id, body) SELECT id, ? FROM deliveries WHERE delivery_id = ?"
DELETE_BODY = "DELETE FROM bodies WHERE id = (SELECT id FROM deliveries WHERE delivery_id = ?)"
# A delivery taken from the journal (a retry, one resumed at start, one re-queued by `hookbot deliveries retry`)
# counts its attempt before any handler runs, so one that kills the process every time is parked after
# max_attempts instead of crash-looping the server; that commit marks it running too (a rare path: it need not wait
# for a first write). A delivery admitted at the door is marked only before its first write (MARK_RUNNING).
BEGIN_ATTEMPT = (
    f"UPDATE deliveries SET state = '{RUNNING}', attempts = attempts + 1, started_at = ?, mode = ?, updated_at = ?"
    " WHERE delivery_id = ? RETURNING attempts"
)
MARK_RUNNING = (
    f"UPDATE deliveries SET state = '{RUNNING}', started_at = ?, mode = ?, updated_at = ? WHERE delivery_id = ?"
)
# At start: a delivery marked running when the process died may have a GitHub request in flight (a comment the
# restarted worker would not find yet, and post again). It runs again only once the client's request timeout has
# passed since it was marked; deliveries still queued (none of their writes begun) are due at once.
RESUME_RUNNING = (
    f"UPDATE deliveries SET state = '{QUEUED}', next_attempt_at = MAX(next_attempt_at, started_at + ?)"
    f" WHERE state = '{RUNNING}' RETURNING delivery_id, next_attempt_at"
)
# A dry-run process takes only deliveries accepted in dry-run: one accepted live is left for a live run.
FOR_MODE = f"(? = '{LIVE}' OR mode = '{DRY_RUN}')"
RETRY_LATER = (
    f"UPDATE deliveries SET state = '{QUEUED}', next_attempt_at = ?, error = ?, updated_at = ? WHERE delivery_id = ?"
)
FINISH = "UPDATE deliveries SET state = ?, error = ?, updated_at = ? WHERE delivery_id = ?"
# What the poll schedules. Sorted by received_at, not by id: ordering by id would let SQLite walk the whole table in
# id order (every finished row of the last 14 days, every poll) instead of the small unfinished index.
DUE = (
    f"SELECT delivery_id FROM deliveries WHERE {UNFINISHED} AND next_attempt_at <= ? AND {FOR_MODE}"
    " ORDER BY received_at LIMIT ?"
)
RESTORE = (
    "SELECT delivery_id, event, source, received_at, body FROM deliveries LEFT JOIN bodies USING (id)"
    " WHERE delivery_id = ?"
)
PRUNE_FINISHED = f"DELETE FROM deliveries WHERE state IN ('{DONE}', '{FAILED}') AND updated_at < ?"
PRUNE_BODIES = "DELETE FROM bodies WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE id = bodies.id)"
UNFINISHED_IDS = f"SELECT delivery_id FROM deliveries WHERE {UNFINISHED} AND {FOR_MODE}"
QUEUED_COUNT = f"SELECT count(*) FROM deliveries WHERE state = '{QUEUED}'"
RECENT = (
    "SELECT delivery_id, event, source, received_at, state, attempts, updated_at, error, action, repository"
    f" FROM deliveries WHERE (? = 0 OR state = '{FAILED}') ORDER BY id DESC LIMIT ?"
)
MATCHING_IDS = "SELECT delivery_id FROM deliveries WHERE delivery_id = ? OR delivery_id LIKE ? ESCAPE '\\'"
FAILED_IDS = f"SELECT delivery_id FROM deliveries WHERE state = '{FAILED}'"
IS_FAILED = f"SELECT 1 FROM deliveries WHERE delivery_id = ? AND state = '{FAILED}'"
REQUEUE = (
    f"UPDATE deliveries SET state = '{QUEUED}', attempts = 0, next_attempt_at = 0, error = NULL,"
    " updated_at = ? WHERE delivery_id = ?"
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
    f"""
INSERT INTO bodies (id, body)
SELECT d.id, v0.body FROM deliveries AS d JOIN deliveries_v0 AS v0 USING (delivery_id) WHERE d.state != '{DONE}'""",
    "DROP TABLE deliveries_v0",
)
MIGRATE_FROM_V1 = (
    "ALTER TABLE deliveries ADD COLUMN action TEXT",
    "ALTER TABLE deliveries ADD COLUMN repository TEXT",
)
# Version 2 to 3: a version 2 row's mode is not known; it counts as live.
MIGRATE_FROM_V2 = (
    "ALTER TABLE deliveries ADD COLUMN started_at REAL NOT NULL DEFAULT 0",
    "ALTER TABLE deliveries ADD COLUMN mode TEXT NOT NULL DEFAULT 'live'",
)
MIGRATE_FROM_V3 = (
    "ALTER TABLE deliveries ADD COLUMN body_sha256 BLOB",
    "CREATE UNIQUE INDEX IF NOT EXISTS deliveries_body ON deliveries (body_sha256)",
)
# Version 3's table of digests, which any earlier hookbot may have created at any version: carried into the column.
SEEN_BODIES = "SELECT sha256, delivery_id FROM seen_bodies"
SET_BODY_SHA256 = "UPDATE deliveries SET body_sha256 = ? WHERE delivery_id = ?"


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
            if 1 <= version <= 3:
                steps = (MIGRATE_FROM_V1, MIGRATE_FROM_V2, MIGRATE_FROM_V3)[version - 1 :]
                statements: tuple[str, ...] = sum(steps, ())
            else:
                statements = MIGRATE_FROM_V0 if converted else SCHEMA
            for statement in statements:
                conn.execute(statement)
            tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            if "seen_bodies" in tables:
                seen = [(bytes.fromhex(sha), key) for sha, key in conn.execute(SEEN_BODIES)]
                conn.executemany(SET_BODY_SHA256, seen)
                conn.execute("DROP TABLE seen_bodies")
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


# -- the inbox's operations: each runs inside one group commit on the writer's thread -------------------------

# delivery_id, event, source, received_at, body, now, action, repository, mode, the body's SHA-256 (32 bytes)
AdmissionRow = tuple[str, str, str, float, bytes, float, str | None, str | None, str, bytes]
StoredDelivery = tuple[str, str, str, float, bytes]  # delivery_id, event, source, received_at, body
Admitted = tuple[State, bool]  # the state after the admitting commit; whether it counted a first attempt to run now


def admit_unless_replayed(conn: sqlite3.Connection, row: AdmissionRow) -> Admitted | None:
    """Journal a delivery at the door (see INSERT), unless its body is journaled under another delivery id: then
    None, a replay (nothing stored). GitHub's own redelivery keeps the id, so it is still admitted (a dead letter
    runs again).

    Its state after this commit, and whether this commit queued it to run now with its first attempt counted; a
    repeat of an unfinished delivery (a dry-run process sent one accepted live) is run as one taken from the journal.
    """
    key, event, source, received_at, body, now, action, repository, mode, sha256 = row
    try:
        inserted = conn.execute(INSERT, (key, event, source, received_at, now, action, repository, mode, sha256))
    except sqlite3.IntegrityError as exc:
        if str(exc) == REPLAYED:
            return None
        raise
    if inserted.rowcount:
        conn.execute(INSERT_BODY, (body, key))
        return QUEUED, True
    conn.execute(REMEMBER_BODY, (sha256, key))
    return State(conn.execute(STATE_OF, (key,)).fetchone()[0]), False


def begin_attempt(conn: sqlite3.Connection, key: str, now: float, mode: str) -> int:
    """Count an attempt of a delivery taken from the journal and mark it running (BEGIN_ATTEMPT), before any
    handler runs; its number, 0 when it is gone."""
    row = conn.execute(BEGIN_ATTEMPT, (now, mode, now, key)).fetchone()
    return int(row[0]) if row else 0


def mark_running(conn: sqlite3.Connection, key: str, now: float, mode: str) -> None:
    """Before a delivery's first write outside hookbot: it may now leave one in flight (see RESUME_RUNNING)."""
    conn.execute(MARK_RUNNING, (now, mode, now, key))


def schedule_retry(conn: sqlite3.Connection, key: str, at: float, error: str, now: float) -> None:
    conn.execute(RETRY_LATER, (at, error, now, key))


def record_outcome(conn: sqlite3.Connection, key: str, state: State, error: str | None, now: float) -> None:
    """Mark a delivery finished; a done one will never run again, so its body goes."""
    if state == DONE:
        conn.execute(DELETE_BODY, (key,))
    conn.execute(FINISH, (state, error, now, key))


@dataclass(frozen=True, slots=True)
class Recovered:
    unfinished: list[str]  # the ids this process's mode takes
    interrupted: list[tuple[str, float]]  # running when the process died: id, when it is due again
    left_for_live: int  # queued deliveries a dry-run process leaves for a live one


def recover(conn: sqlite3.Connection, keep_after: float, mode: str, resume_after: float) -> Recovered:
    """At start: prune finished rows older than ``keep_after`` and orphan bodies; re-queue what was running (due
    ``resume_after`` seconds after its attempt began, see RESUME_RUNNING); the unfinished deliveries' ids."""
    conn.execute(PRUNE_FINISHED, (keep_after,))
    conn.execute(PRUNE_BODIES)
    interrupted = [(str(row[0]), float(row[1])) for row in conn.execute(RESUME_RUNNING, (resume_after,))]
    unfinished = [str(row[0]) for row in conn.execute(UNFINISHED_IDS, (mode,))]
    queued = int(conn.execute(QUEUED_COUNT).fetchone()[0])
    return Recovered(unfinished, interrupted, queued - len(unfinished))


def due(
    conn: sqlite3.Connection, now: float, limit: int, exclude: frozenset[str], mode: str = LIVE
) -> list[StoredDelivery]:
    """Up to ``limit`` unfinished deliveries due by ``now`` and not in ``exclude``, oldest first, with their bodies."""
    found = conn.execute(DUE, (now, mode, limit + len(exclude)))
    ids = [str(row[0]) for row in found if row[0] not in exclude][:limit]
    return [conn.execute(RESTORE, (key,)).fetchone() for key in ids]


# -- the `hookbot deliveries` command: short synchronous reads and writes of the same file ---------------------


def recent_deliveries(path: Path, *, failed_only: bool = False, limit: int = 50) -> list[JournalRow]:
    conn = connect(path)
    try:
        rows = conn.execute(RECENT, (int(failed_only), limit)).fetchall()
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
            matches = [str(row[0]) for row in conn.execute(MATCHING_IDS, (text, pattern))]
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
            keys = [str(row[0]) for row in conn.execute(FAILED_IDS)]
        else:
            keys = [key for key in ids if conn.execute(IS_FAILED, (key,)).fetchone()]
        now = time.time()
        conn.executemany(REQUEUE, [(now, key) for key in keys])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return keys
