"""`hookbot deliveries`: a table with a header, the same short ids the logs show (and `retry` accepts),
event.action and repository, "no deliveries yet" when empty, and --json for scripts."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from bot.cli import main
from bot.delivery import short_id
from bot.inbox import SCHEMA_VERSION, connect, journal_path, recent_deliveries

GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
ROWS = [  # delivery id, event, action, repository, state, attempts, error
    (GUID, "issues", "opened", "octo-org/app", "done", 1, None),
    ("replay-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "push", None, "octo-org/tools", "failed", 5, "exec: exit 1"),
    ("s3-upload-key", "s3", None, None, "queued", 1, None),
]


def fill(state_dir: Path) -> None:
    with contextlib.closing(connect(journal_path(state_dir))) as conn:
        for number, (key, event, action, repository, state, attempts, error) in enumerate(ROWS):
            conn.execute(
                "INSERT INTO deliveries (delivery_id, event, source, received_at, state, attempts, updated_at, error,"
                " action, repository) VALUES (?, ?, 'github-http', ?, ?, ?, 0, ?, ?, ?)",
                (key, event, time.time() - 60 + number, state, attempts, error, action, repository),
            )


def test_no_deliveries_yet(bare_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deliveries"]) == 0
    assert capsys.readouterr().out.startswith("no deliveries yet: no journal at ")
    connect(journal_path(bare_env / "state")).close()
    assert main(["deliveries"]) == 0
    assert capsys.readouterr().out == "no deliveries yet\n"
    assert main(["deliveries", "--failed"]) == 0
    assert capsys.readouterr().out == "no failed deliveries\n"


def test_the_table_has_a_header_and_aligned_columns(bare_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(bare_env / "state")
    assert main(["deliveries"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split() == ["RECEIVED", "ID", "EVENT", "REPOSITORY", "STATE", "ATTEMPTS", "LAST", "ERROR"]
    rows = lines[1:]
    assert [row.split()[2] for row in rows] == ["s3-upload-ke", "replay-0b1c2d3e", "72d3162e"]  # newest first
    for column in ("ID", "EVENT", "REPOSITORY", "STATE", "ATTEMPTS"):
        assert {row[header.index(column) - 1] for row in rows} == {" "}, f"{column} is not aligned"
    assert "issues.opened" in rows[2] and "octo-org/app" in rows[2]
    assert rows[1].endswith("exec: exit 1") and " failed " in rows[1]
    assert short_id(GUID) == "72d3162e"


def test_json_gives_full_ids_for_scripts(bare_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(bare_env / "state")
    assert main(["deliveries", "--json", "--failed"]) == 0
    [line] = [orjson.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["delivery_id"], line["event"], line["state"], line["attempts"], line["repository"]) == (
        ROWS[1][0],
        "push",
        "failed",
        5,
        "octo-org/tools",
    )


def test_retry_takes_the_short_id_the_table_shows(bare_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(bare_env / "state")
    assert main(["deliveries", "retry", "replay-0b1c2d3e"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"queued {ROWS[1][0]}"
    with contextlib.closing(connect(journal_path(bare_env / "state"))) as conn:
        conn.execute(
            "INSERT INTO deliveries (delivery_id, event, source, received_at, state, updated_at)"
            " VALUES ('72d3162e-ffff', 'issues', 'github-http', 0, 'failed', 0)"
        )
    assert main(["deliveries", "retry", "72d3162e"]) == 1
    assert "72d3162e: the start of 2 delivery ids; give more of it" in capsys.readouterr().err


def test_a_version_1_journal_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(
            """
            CREATE TABLE deliveries (id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
                source TEXT NOT NULL, received_at REAL NOT NULL, state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
                updated_at REAL NOT NULL, error TEXT);
            CREATE TABLE bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
            INSERT INTO deliveries (delivery_id, event, source, received_at, state, updated_at)
                VALUES ('old-1', 'issues', 'github-http', 1, 'done', 1);
            PRAGMA user_version = 1;
            """
        )
    [row] = recent_deliveries(path)
    assert (row.delivery_id, row.action, row.repository) == ("old-1", None, None)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
