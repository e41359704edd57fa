"""The durable journal inbox: group commit, retries and dead letters, resume after a stop, backpressure, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.cli import main
from bot.delivery import Delivery
from bot.dispatch import DispatchResult, Outcome
from bot.inbox import (
    DUE,
    KEEP_FINISHED_SECONDS,
    PAGE_SIZE,
    SCHEMA_VERSION,
    JournalInbox,
    connect,
    journal_path,
    recent_deliveries,
    requeue,
    restore_delivery,
)
from bot.metrics import REGISTRY
from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, fixture_bytes, github_headers, make_settings

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")


def numbered_body(n: int) -> bytes:
    """ISSUE_OPENED made distinct per ``n``: the journal takes the same body under another id as a replay."""
    return ISSUE_OPENED.rstrip()[:-1] + f', "test_n": {n}}}'.encode()


def delivery(n: int, body: bytes | None = None) -> Delivery:
    body = numbered_body(n) if body is None else body
    return Delivery(event="issues", delivery_id=f"d-{n}", payload={"n": n}, body=body, source="github-http")


class Recorder:
    """A processor that records calls and answers as told: ok, failing (transient or permanent), or blocking."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.payloads: list[dict[str, Any]] = []
        self.fail: dict[str, bool] = {}  # delivery id -> permanent?
        self.gate: asyncio.Event | None = None

    async def __call__(self, item: Delivery) -> DispatchResult:
        self.calls.append(item.delivery_id)
        self.payloads.append(item.payload)
        if self.gate is not None:
            await self.gate.wait()
        result = DispatchResult(item.delivery_id)
        if item.delivery_id in self.fail:
            result.outcomes.append(Outcome("p", "failed", 1.0, "boom", permanent=self.fail[item.delivery_id]))
        else:
            result.outcomes.append(Outcome("p", "ok", 1.0))
        return result


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def make_inbox(tmp_path: Path, process: Recorder, **kwargs: Any) -> JournalInbox:
    options: dict[str, Any] = {"capacity": 100, "workers": 2, "max_attempts": 3}
    options.update(retry_base_seconds=0.01, poll_seconds=0.05)
    options.update(kwargs)
    return JournalInbox(journal_path(tmp_path), process, **options)


def states(tmp_path: Path) -> dict[str, tuple[str, int]]:
    return {row.delivery_id: (row.state, row.attempts) for row in recent_deliveries(journal_path(tmp_path))}


async def test_concurrent_submits_share_commits_and_each_runs_once(tmp_path: Path) -> None:
    process = Recorder()
    inbox = make_inbox(tmp_path, process)
    await inbox.start()
    commits_before = REGISTRY.get_sample_value("hookbot_journal_batch_size_count") or 0.0
    answers = await asyncio.gather(*(inbox.submit(delivery(n)) for n in range(50)))
    commits = (REGISTRY.get_sample_value("hookbot_journal_batch_size_count") or 0.0) - commits_before
    assert answers == ["accepted"] * 50
    assert commits < 10  # 50 deliveries, a handful of group commits (worker writes may join them)
    await until(lambda: inbox.pending == 0)
    await inbox.stop(grace=1)
    assert sorted(process.calls) == sorted(f"d-{n}" for n in range(50))
    assert set(states(tmp_path).values()) == {("done", 1)}


async def test_repeat_of_a_finished_delivery_is_a_duplicate(tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path, Recorder())
    await inbox.start()
    assert await inbox.submit(delivery(1)) == "accepted"
    assert await inbox.submit(delivery(1)) == "accepted"  # still queued: the same delivery, run once
    await until(lambda: inbox.pending == 0)
    assert await inbox.submit(delivery(1)) == "duplicate"
    await inbox.stop(grace=1)


async def test_a_submit_cancelled_while_committing_still_runs(tmp_path: Path) -> None:
    process = Recorder()
    inbox = make_inbox(tmp_path, process)
    await inbox.start()
    request = asyncio.create_task(inbox.submit(delivery(1)))
    await asyncio.sleep(0)
    request.cancel()  # the client hung up while its delivery was being committed
    await until(lambda: process.calls == ["d-1"] and inbox.pending == 0)
    await inbox.stop(grace=1)


async def test_transient_failures_retry_then_park_as_dead_letters(tmp_path: Path) -> None:
    process = Recorder()
    process.fail = {"d-1": False, "d-2": True}
    inbox = make_inbox(tmp_path, process)
    await inbox.start()
    await inbox.submit(delivery(1))
    await inbox.submit(delivery(2))
    await until(lambda: inbox.pending == 0)
    assert process.calls.count("d-1") == 3  # max_attempts
    assert process.calls.count("d-2") == 1  # permanent: no retry
    assert states(tmp_path) == {"d-1": ("failed", 3), "d-2": ("failed", 1)}

    # `hookbot deliveries retry` re-queues in the journal; the running inbox notices within a poll.
    process.fail = {}
    assert sorted(requeue(journal_path(tmp_path), all_failed=True)) == ["d-1", "d-2"]
    await until(lambda: states(tmp_path) == {"d-1": ("done", 1), "d-2": ("done", 1)})
    await inbox.stop(grace=1)


async def test_stop_leaves_unfinished_work_for_the_next_start(tmp_path: Path) -> None:
    process = Recorder()
    process.gate = asyncio.Event()  # handlers hang
    inbox = make_inbox(tmp_path, process, workers=1)
    await inbox.start()
    for n in range(3):
        await inbox.submit(delivery(n))
    await until(lambda: len(process.calls) == 1)
    await inbox.stop(grace=0.05)  # the running one is cut off after the grace period
    assert await inbox.submit(delivery(9)) == "busy"
    assert {state for state, _ in states(tmp_path).values()} <= {"queued", "running"}

    again = Recorder()
    # The cut-off one waits for the GitHub request timeout since it began (tests/test_resume.py); none here.
    resumed = make_inbox(tmp_path, again, resume_running_after=0.0)
    await resumed.start()
    assert resumed.pending == 3
    await until(lambda: resumed.pending == 0)
    await resumed.stop(grace=1)
    assert sorted(again.calls) == ["d-0", "d-1", "d-2"]


async def test_full_inbox_answers_503_with_retry_after(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> None:
    fake, url = fake_github
    fake.delay = 0.5
    settings = make_settings(tmp_path, "[server]\nqueue_size = 2\nworkers = 1\n", GITHUB_TOKEN="t", GITHUB_API_URL=url)
    client: AppClient = await aiohttp_client(create_app(Runtime.build(settings, secrets_=webhook_secrets(settings))))
    answers = [
        (await client.post("/webhook", data=body, headers=github_headers(body, "issues")))
        for body in map(numbered_body, range(3))
    ]
    assert [a.status for a in answers] == [202, 202, 503]
    assert answers[2].headers["Retry-After"] == "5"
    assert (await (await client.get("/healthz")).json())["pending"] == 2


@pytest.mark.parametrize("form", [False, True])
def test_restore_parses_the_stored_body_again(form: bool) -> None:
    body = urlencode({"payload": ISSUE_OPENED.decode()}).encode() if form else ISSUE_OPENED
    restored = restore_delivery("issues", "id-1", body, "github-http", 123.0)
    assert restored.payload["issue"]["number"] == 1
    assert (restored.delivery_id, restored.received_at, restored.body) == ("id-1", 123.0, body)


def test_deliveries_command_lists_and_requeues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = connect(journal_path(tmp_path / "state"))
    conn.execute(
        "INSERT INTO deliveries (delivery_id, event, source, received_at, state, attempts, updated_at, error)"
        " VALUES ('g-1', 'issues', 'github-http', 0, 'failed', 5, 0, 'p: boom'), "
        " ('g-2', 'push', 'github-http', 1, 'done', 1, 0, NULL)"
    )
    conn.execute("INSERT INTO bodies VALUES (1, x'7b7d')")
    conn.close()
    config = tmp_path / "hookbot.toml"
    config.write_text(f'[hookbot]\nstate_dir = "{tmp_path / "state"}"\n')
    assert main(["--config", str(config), "deliveries", "--failed"]) == 0
    out = capsys.readouterr().out
    assert "g-1" in out and "failed" in out and "p: boom" in out and "g-2" not in out
    assert main(["--config", str(config), "deliveries", "retry", "g-1", "g-2"]) == 0
    captured = capsys.readouterr()
    assert "queued g-1" in captured.out and "not queued g-2" in captured.err
    state = sqlite3.connect(journal_path(tmp_path / "state")).execute(
        "SELECT state, attempts FROM deliveries WHERE delivery_id = 'g-1'"
    )
    assert state.fetchone() == ("queued", 0)


async def test_workers_behind_slow_the_door_but_never_make_it_refuse(tmp_path: Path) -> None:
    """With the only worker stuck, the backlog passes two per worker: later deliveries are held, then taken."""
    process = Recorder()
    process.gate = asyncio.Event()
    inbox = make_inbox(tmp_path, process, workers=1)
    await inbox.start()
    answers = [await inbox.submit(delivery(n)) for n in range(6)]
    assert answers == ["accepted"] * 6
    process.gate.set()
    await until(lambda: inbox.pending == 0)
    await inbox.stop(grace=1)
    assert sorted(process.calls) == [f"d-{n}" for n in range(6)]


def bodies_kept(tmp_path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path))) as conn:
        rows = conn.execute("SELECT delivery_id FROM deliveries JOIN bodies USING (id)")
        return {str(row[0]) for row in rows}


async def test_a_redelivered_dead_letter_runs_again_and_only_unfinished_ones_keep_their_body(tmp_path: Path) -> None:
    process = Recorder()
    process.fail = {"d-2": True}
    inbox = make_inbox(tmp_path, process)
    await inbox.start()
    assert [await inbox.submit(delivery(n)) for n in (1, 2)] == ["accepted", "accepted"]
    await until(lambda: inbox.pending == 0)
    assert states(tmp_path) == {"d-1": ("done", 1), "d-2": ("failed", 1)}
    assert bodies_kept(tmp_path) == {"d-2"}  # a done delivery never runs again; a dead letter may

    process.fail = {}
    assert await inbox.submit(delivery(2)) == "accepted"  # GitHub's "Redeliver" of the dead letter
    # Done in the file and in the inbox's own count (its commit callback has run): only then is it a repeat.
    await until(lambda: states(tmp_path)["d-2"] == ("done", 1) and inbox.pending == 0)
    assert await inbox.submit(delivery(2)) == "duplicate"
    await inbox.stop(grace=1)
    assert process.calls == ["d-1", "d-2", "d-2"]
    assert bodies_kept(tmp_path) == set()


# The journal as hookbot wrote it before the body moved to its own table (schema version 0), verbatim.
SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_recent ON deliveries (received_at);
"""


async def test_a_journal_of_the_old_schema_is_migrated_on_open_without_losing_work(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    now = time.time()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(SCHEMA_V0)
        rows = [  # delivery id, state, attempts, received_at, error
            ("v-queued", "queued", 1, now - 4, None),
            ("v-running", "running", 2, now - 3, None),
            ("v-failed", "failed", 3, now - 2, "p: boom"),
            ("v-done", "done", 1, now - 1, None),
        ]
        old.executemany(
            "INSERT INTO deliveries VALUES (?, 'issues', 'github-http', ?, ?, ?, ?, 0, ?, ?)",
            [
                (key, received, ISSUE_OPENED, state, attempts, received, error)
                for key, state, attempts, received, error in rows
            ],
        )

    listed = recent_deliveries(path)  # the first open migrates, here from the CLI
    assert [(r.delivery_id, r.state, r.attempts, r.error) for r in listed] == [
        ("v-done", "done", 1, None),
        ("v-failed", "failed", 3, "p: boom"),
        ("v-running", "running", 2, None),
        ("v-queued", "queued", 1, None),
    ]
    assert listed[-1].received_at == pytest.approx(now - 4)
    assert bodies_kept(tmp_path) == {"v-queued", "v-running", "v-failed"}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert tables == {"deliveries", "bodies"}

    process = Recorder()
    inbox = make_inbox(tmp_path, process, max_attempts=5)
    await inbox.start()
    assert inbox.pending == 2
    await until(lambda: inbox.pending == 0)
    assert sorted(process.calls) == ["v-queued", "v-running"]
    assert [p["issue"]["number"] for p in process.payloads] == [1, 1]  # parsed again from the migrated bodies
    done_again = Delivery(event="issues", delivery_id="v-done", payload={}, body=ISSUE_OPENED, source="github-http")
    assert await inbox.submit(done_again) == "duplicate"
    assert requeue(path, ["v-failed"]) == ["v-failed"]  # `hookbot deliveries retry`: its body came along
    await until(lambda: states(tmp_path)["v-failed"] == ("done", 1))
    await inbox.stop(grace=1)
    assert sorted(process.calls) == ["v-failed", "v-queued", "v-running"]
    assert bodies_kept(tmp_path) == set()


async def test_start_prunes_finished_deliveries_after_the_keep_period_with_their_bodies(tmp_path: Path) -> None:
    long_ago, recently = time.time() - KEEP_FINISHED_SECONDS - 60, time.time() - 60
    with contextlib.closing(connect(journal_path(tmp_path))) as conn:
        conn.executemany(
            "INSERT INTO deliveries (id, delivery_id, event, source, received_at, state, updated_at)"
            " VALUES (?, ?, 'issues', 'github-http', ?, ?, ?)",
            [
                (1, "old-done", long_ago, "done", long_ago),
                (2, "old-failed", long_ago, "failed", long_ago),
                (3, "new-failed", long_ago, "failed", recently),
            ],
        )
        conn.executemany("INSERT INTO bodies VALUES (?, x'7b7d')", [(2,), (3,)])
    inbox = make_inbox(tmp_path, Recorder())
    await inbox.start()
    await inbox.stop(grace=1)
    assert states(tmp_path) == {"new-failed": ("failed", 0)}
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path))) as conn:
        assert conn.execute("SELECT id FROM bodies").fetchall() == [(3,)]


def test_the_poll_reads_only_the_index_of_unfinished_deliveries(tmp_path: Path) -> None:
    """The poll runs every second on a journal holding 14 days of finished rows: it must not scan them."""
    with contextlib.closing(connect(journal_path(tmp_path))) as conn:
        plan = " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {DUE}", (0.0, "live", 10)))
    assert "USING INDEX deliveries_due" in plan, plan


def test_a_converted_journal_open_elsewhere_is_left_uncompacted_but_works(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(SCHEMA_V0)
        old.execute(
            "INSERT INTO deliveries VALUES ('v-1', 'issues', 'github-http', 1, x'7b7d', 'failed', 1, 0, 1, 'e')"
        )
        assert old.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)  # still open: no WAL mode change
        with contextlib.closing(connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("PRAGMA page_size").fetchone() == (4096,)
    assert [(row.delivery_id, row.state) for row in recent_deliveries(path)] == [("v-1", "failed")]
    assert bodies_kept(tmp_path) == {"v-1"}


def test_deliveries_command_escapes_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # delivery ids and event names come from headers no signature covers: printed raw, "\x1b[2J" clears the screen
    conn = connect(journal_path(tmp_path / "state"))
    conn.execute(
        "INSERT INTO deliveries (delivery_id, event, source, received_at, state, attempts, updated_at, error)"
        " VALUES (?, ?, 'github-http', 0, 'failed', 5, 0, ?)",
        ("id-\x1b[2J-end", "issues\r", "handler: line one\nline two \x07 bell"),
    )
    conn.close()
    config = tmp_path / "hookbot.toml"
    config.write_text(f'[hookbot]\nstate_dir = "{tmp_path / "state"}"\n')
    assert main(["--config", str(config), "deliveries"]) == 0
    out = capsys.readouterr().out
    assert "id-\\x1b[2J-end" in out and "issues\\r" in out and "line one\\nline two \\x07 bell" in out
    assert not any(char in out for char in "\x1b\r\x07")
    assert len(out.splitlines()) == 2  # the table's header and the one delivery: no line broken by its error
