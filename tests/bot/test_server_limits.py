"""The bounds below the request handlers (bot.body_budget, bot.connection_guard, bot.serve_loop): body budget,
read deadline, connection cap, accept errors. The same bounds under real floods against a `hookbot serve` process
are in tests/bot/test_hostile.py."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.body_budget import BodyBudget
from bot.connection_guard import ConnectionGuard, RequestHead
from bot.delivery import Refusal
from bot.runtime import Runtime, webhook_secrets
from bot.serve_loop import AcceptErrorLog, connection_cap
from bot.server import BODY_BUDGET, create_app
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, fixture_bytes, github_headers, make_settings

FORGED_SIGNATURE = "sha256=" + "0" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_refuses_past_the_cap_and_counts_released_bytes_again() -> None:
    budget = BodyBudget(100, retry_after=5, clock=Clock())
    first = budget.reserve(lambda refusal: None)
    first.take(60)
    second = budget.reserve(lambda refusal: None)
    with pytest.raises(Refusal) as refused:
        second.take(50)  # the first is still arriving (not stalled): the newcomer is the one refused
    assert (refused.value.status, refused.value.retry_after) == (503, 5)
    first.release()
    second.take(50)
    assert budget.used == 50


def test_budget_makes_stalled_bodies_give_way_least_recently_progressing_first() -> None:
    clock = Clock()
    budget = BodyBudget(100, retry_after=5, stall_seconds=1.0, clock=clock)
    evicted: list[str] = []
    older = budget.reserve(lambda refusal: evicted.append("older"))
    older.take(40)
    clock.now += 0.5
    newer = budget.reserve(lambda refusal: evicted.append("newer"))
    newer.take(40)
    clock.now += 2  # both stalled now
    genuine = budget.reserve(lambda refusal: evicted.append("genuine"))
    genuine.take(30)
    assert evicted == ["older"] and budget.used == 70
    with pytest.raises(Refusal) as refused:
        older.take(1)  # an evicted body cannot take bytes again
    assert refused.value.status == 503


def test_connection_guard_closes_the_longest_idle_first_and_never_a_busy_one() -> None:
    class Transport:
        def __init__(self, name: str) -> None:
            self.name = name
            self.aborted = False

        def abort(self) -> None:
            self.aborted = True

    clock = Clock()
    guard = ConnectionGuard(2, clock=clock)
    busy, idle, newcomer, another = (Transport(n) for n in ("busy", "idle", "newcomer", "another"))
    assert guard.admit(busy) and guard.admit(idle)  # type: ignore[arg-type]
    guard.busy(busy)  # type: ignore[arg-type]
    assert guard.admit(newcomer)  # type: ignore[arg-type]
    assert idle.aborted and not busy.aborted
    guard.busy(newcomer)  # type: ignore[arg-type]
    assert not guard.admit(another)  # type: ignore[arg-type]  # every connection is busy: the new one is refused
    guard.done(busy, reusable=True)  # type: ignore[arg-type]
    assert guard.admit(another)  # type: ignore[arg-type]
    assert busy.aborted and not newcomer.aborted


@pytest.mark.parametrize("split", [1, 2, 3, 5, 40])
def test_request_head_is_counted_up_to_its_blank_line_however_it_is_split(split: int) -> None:
    request = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"{" * 100_000
    head = RequestHead(80)
    pieces = [request[i : i + split] for i in range(0, 200, split)] + [request[200:]]
    assert all(head.feed(piece) for piece in pieces)  # the body after the head is never counted
    assert head.complete and head.size == request.index(b"\r\n\r\n") + 4
    head.expect_next()
    assert head.feed(b"GET /healthz HTTP/1.1\r\n") and not head.feed(b"X-Pad: " + b"a" * 100)


def test_connection_cap_stays_under_the_open_files_limit() -> None:
    assert connection_cap(1000, 1_048_576) == 1000
    assert 0 < connection_cap(1000, 1024) < 1024 - 128


def test_too_many_open_files_is_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    handler = AcceptErrorLog(clock=clock)
    loop = asyncio.new_event_loop()
    context = {"message": "socket.accept() out of system resource", "exception": OSError(errno.EMFILE, "Too many")}
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(11_000):
                handler(loop, context)
            clock.now += 61
            handler(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 2 and "10999 more times" in lines[1]


@pytest.fixture
async def small_client(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> AppClient:
    _, url = fake_github
    config = make_settings(
        tmp_path,
        "[server]\nmax_body_bytes = 100000\nmax_buffered_bytes = 150000\nread_deadline_seconds = 1\n",
        GITHUB_TOKEN="t",
        GITHUB_API_URL=url,
    )
    app = create_app(Runtime.build(config, secrets_=webhook_secrets(config)))
    # any body not progressing gives way at once: the test need not wait for a stall to be noticed
    app[BODY_BUDGET] = BodyBudget(150_000, retry_after=5, stall_seconds=0.0)
    test_client: AppClient = await aiohttp_client(app)
    return test_client


async def start_stalled_body(client: AppClient, sent: int, declared: int) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        (
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\n"
            f"X-GitHub-Delivery: stalled\r\nX-Hub-Signature-256: {FORGED_SIGNATURE}\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        + b" " * sent
    )
    await writer.drain()
    return reader, writer


async def answer_then_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded: a hang fails the test)."""
    async with asyncio.timeout(30):
        return await reader.read()


async def test_a_stalled_body_is_answered_408_and_closed_at_the_read_deadline(small_client: AppClient) -> None:
    reader, writer = await start_stalled_body(small_client, sent=10, declared=1000)
    answer = await answer_then_close(reader)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_stalled_bodies_give_way_to_a_new_delivery_when_the_budget_is_full(small_client: AppClient) -> None:
    # two bodies of 90,000 bytes with one byte still to come: together over the 150,000 byte budget
    first_reader, first_writer = await start_stalled_body(small_client, sent=90_000, declared=90_001)
    for _ in range(500):  # wait until the server holds them (not a timing: a bounded poll of the budget)
        if small_client.app[BODY_BUDGET].used >= 90_000:
            break
        await asyncio.sleep(0.01)
    second_reader, second_writer = await start_stalled_body(small_client, sent=90_000, declared=90_001)
    evicted = await answer_then_close(first_reader)
    assert evicted.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in evicted
    body = fixture_bytes("github/issues.opened.json")
    response = await small_client.post("/webhook", data=body, headers=github_headers(body, "issues"))
    assert response.status == 202
    # the second gives way in its turn, or meets the read deadline: either way answered and closed
    assert (await answer_then_close(second_reader)).startswith((b"HTTP/1.1 503", b"HTTP/1.1 408"))
    first_writer.close()
    second_writer.close()
