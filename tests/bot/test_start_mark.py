"""The journal's start mark: a delivery admitted at the door runs without a commit of its own, and is marked running
(with the time) only before its first write outside hookbot, which waits for that commit (bot/effects.py).

Journal work is counted in operations (the group commit's batch sizes, JOURNAL_BATCH), never timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

from bot.context import ActionLog
from bot.delivery import Delivery
from bot.dispatch import DispatchResult, Outcome
from bot.effects import before_effect
from bot.github import DryRunGitHubAPI, HookbotGitHubAPI, aiohttp_transport, no_transport
from bot.inbox import JournalInbox, journal_path, recent_deliveries
from bot.metrics import REGISTRY
from bot.runtime import Runtime
from bot.server import make_processor
from tests.fake_github import FakeGitHub
from tests.helpers import fixture_bytes, make_settings, start_mark_recorded

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
COMMENTS = "/repos/Codertocat/Hello-World/issues/1/comments"
Handler = Callable[[HookbotGitHubAPI, int], Awaitable[None]]  # (client, attempt number in this process)


def delivery(key: str) -> Delivery:
    """An ``issues.opened`` delivery with a body of its own (the journal takes a body seen before as a replay)."""
    body = orjson.dumps(dict(orjson.loads(ISSUE_OPENED), test_key=key))
    return Delivery(event="issues", delivery_id=key, payload=orjson.loads(body), body=body, source="github-http")


def journal_operations() -> float:
    return REGISTRY.get_sample_value("hookbot_journal_batch_size_sum") or 0.0


def row(tmp_path: Path, key: str) -> tuple[str, int, float]:
    """(state, attempts, started_at) as committed, read as another process would."""
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path))) as conn:
        found = conn.execute(
            "SELECT state, attempts, started_at FROM deliveries WHERE delivery_id = ?", (key,)
        ).fetchone()
    return str(found[0]), int(found[1]), float(found[2])


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


class Plugin:
    """A processor acting as a plugin would: through a real GitHub client against the fake GitHub."""

    def __init__(self, url: str, handler: Handler, *, fail_first: bool = False) -> None:
        self.url = url
        self.handler = handler
        self.fail_first = fail_first
        self.runs = 0

    async def __call__(self, item: Delivery) -> DispatchResult:
        self.runs += 1
        async with aiohttp.ClientSession() as session:
            gh = HookbotGitHubAPI(aiohttp_transport(session), actions=ActionLog(), base_url=self.url)
            await self.handler(gh, self.runs)
        failed = self.fail_first and self.runs == 1
        outcome = Outcome("p", "failed", 1.0, "try again") if failed else Outcome("p", "ok", 1.0)
        return DispatchResult(item.delivery_id, outcomes=[outcome])


async def started_inbox(tmp_path: Path, process: Callable[[Delivery], Awaitable[DispatchResult]]) -> JournalInbox:
    """A started inbox whose poll has run once and waits an hour: from here on, only deliveries write."""
    before = journal_operations()
    inbox = JournalInbox(journal_path(tmp_path), process, capacity=10, workers=2, poll_seconds=3600)
    await inbox.start()
    await until(lambda: journal_operations() == before + 2)  # recovery, then the first poll
    return inbox


async def operations_for(inbox: JournalInbox, key: str) -> float:
    """Journal operations spent on one delivery, from its admission to its recorded outcome."""
    before = journal_operations()
    assert await inbox.submit(delivery(key)) == "accepted"
    await until(lambda: inbox.pending == 0)  # pending drops once the outcome's commit is done
    return journal_operations() - before


async def test_a_delivery_that_only_reads_costs_two_journal_operations_and_is_never_marked(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    _, url = fake_github
    seen: list[tuple[str, int, float]] = []

    async def reads(gh: HookbotGitHubAPI, run: int) -> None:
        await gh.getitem(COMMENTS)
        seen.append(row(tmp_path, "read-1"))

    inbox = await started_inbox(tmp_path, Plugin(url, reads))
    assert await operations_for(inbox, "read-1") == 2  # admitted (its attempt counted), then done
    await inbox.stop(grace=1)
    assert seen == [("queued", 1, 0.0)]  # while it ran: nothing in flight that a crash could leave behind
    assert row(tmp_path, "read-1")[:2] == ("done", 1)
    assert [(r.state, r.attempts) for r in recent_deliveries(journal_path(tmp_path))] == [("done", 1)]


async def test_a_post_is_sent_only_after_the_delivery_is_marked_running(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    at_github: list[tuple[str, tuple[str, int, float]]] = []
    fake.on_request = lambda request: at_github.append((request.method, row(tmp_path, "post-1")))
    fake.responses[("PATCH", "/repos/Codertocat/Hello-World/issues/1")] = (200, {"number": 1})

    async def comments_twice(gh: HookbotGitHubAPI, run: int) -> None:
        await gh.getitem(COMMENTS)
        await gh.post(COMMENTS, data={"body": "one"})
        await gh.patch("/repos/Codertocat/Hello-World/issues/1", data={"title": "two"})

    inbox = await started_inbox(tmp_path, Plugin(url, comments_twice))
    began = time.time()
    assert await operations_for(inbox, "post-1") == 3  # admitted, marked once for both writes, done
    await inbox.stop(grace=1)
    (get, before_write), (post, (state, attempts, started_at)), (patch, _) = at_github
    assert (get, post, patch) == ("GET", "POST", "PATCH")
    assert before_write == ("queued", 1, 0.0)
    assert (state, attempts) == ("running", 1) and started_at >= began - 1  # committed before the POST was sent
    assert row(tmp_path, "post-1")[:2] == ("done", 1)


async def test_writes_from_handlers_running_side_by_side_share_one_mark(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    marked: list[str] = []
    fake.on_request = lambda request: marked.append(row(tmp_path, "both-1")[0])

    async def two_plugins(gh: HookbotGitHubAPI, run: int) -> None:
        await asyncio.gather(*(gh.post(COMMENTS, data={"body": f"plugin {n}"}) for n in (1, 2)))

    inbox = await started_inbox(tmp_path, Plugin(url, two_plugins))
    assert await operations_for(inbox, "both-1") == 3
    await inbox.stop(grace=1)
    assert marked == ["running", "running"]


async def test_a_retry_is_marked_when_its_attempt_is_counted(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    at_post: list[tuple[str, int, float]] = []
    fake.on_request = lambda request: at_post.append(row(tmp_path, "retry-1")) if request.method == "POST" else None

    async def reads_then_posts(gh: HookbotGitHubAPI, run: int) -> None:
        await gh.getitem(COMMENTS)
        if run == 2:
            await gh.post(COMMENTS, data={"body": "second attempt"})

    process = Plugin(url, reads_then_posts, fail_first=True)
    inbox = JournalInbox(
        journal_path(tmp_path), process, capacity=10, workers=1, poll_seconds=0.02, retry_base_seconds=0.01
    )
    await inbox.start()
    assert await inbox.submit(delivery("retry-1")) == "accepted"
    await until(lambda: inbox.pending == 0)
    await inbox.stop(grace=1)
    assert process.runs == 2
    assert [(state, attempts) for state, attempts, _ in at_post] == [("running", 2)]
    assert row(tmp_path, "retry-1")[:2] == ("done", 2)


async def test_a_dry_run_greeting_costs_two_journal_operations(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    """The greeter in dry-run through the real dispatcher: admitted, then done; its comment is only recorded."""
    fake, url = fake_github
    runtime = Runtime.build(make_settings(tmp_path, GITHUB_API_URL=url), dry_run=True)
    inbox = await started_inbox(tmp_path, make_processor(runtime))
    try:
        assert await operations_for(inbox, "dry-1") == 2
    finally:
        await inbox.stop(grace=1)
        await runtime.close()
    assert fake.requests == []
    assert row(tmp_path, "dry-1") == ("done", 1, 0.0)


async def test_a_live_greeting_is_marked_before_its_comment_reaches_github(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    at_post: list[tuple[str, int, float]] = []
    fake.on_request = lambda request: at_post.append(row(tmp_path, "live-1")) if request.method == "POST" else None
    runtime = Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url), dry_run=False)
    inbox = await started_inbox(tmp_path, make_processor(runtime))
    began = time.time()
    try:
        assert await operations_for(inbox, "live-1") == 3  # admitted, marked before the comment, done
    finally:
        await inbox.stop(grace=1)
        await runtime.close()
    assert len(fake.posted_comments()) == 1
    [(state, attempts, started_at)] = at_post
    assert (state, attempts) == ("running", 1) and started_at >= began - 1


async def test_no_mark_outside_an_inbox_and_none_for_what_a_dry_run_client_records(
    fake_github: tuple[FakeGitHub, str],
) -> None:
    """The Lambda entry and the CLI run handlers without a journal: a write goes out without waiting on anything;
    a dry-run client sends nothing, so it never asks for a mark even inside an inbox."""
    fake, url = fake_github
    await before_effect()  # nothing set: returns at once
    async with aiohttp.ClientSession() as session:
        gh = HookbotGitHubAPI(aiohttp_transport(session), actions=ActionLog(), base_url=url)
        await gh.post(COMMENTS, data={"body": "from a Lambda"})
    assert len(fake.posted_comments()) == 1

    asked: list[str] = []
    with start_mark_recorded(lambda: asked.append("mark")):
        dry = DryRunGitHubAPI(no_transport, can_read=False, actions=ActionLog(dry_run=True), base_url=url)
        await dry.post(COMMENTS, data={"body": "recorded only"})
        assert asked == []
        await before_effect()
        await before_effect()
        assert asked == ["mark"]  # once per delivery


async def test_a_delivery_that_kills_the_process_every_time_is_parked_after_max_attempts(tmp_path: Path) -> None:
    """Its first attempt is counted at the door, each later one before it runs: the crash loop ends, whether or not
    it wrote anything (each "crash" here is a stop that cuts the running delivery off)."""
    runs: list[str] = []

    async def dies(item: Delivery) -> DispatchResult:
        runs.append(item.delivery_id)
        if item.delivery_id == "writes":
            await before_effect()
        await asyncio.Event().wait()  # the process dies here
        raise AssertionError("never reached")

    async def run_until_the_crash(restart: int) -> None:
        inbox = JournalInbox(
            journal_path(tmp_path), dies, capacity=10, workers=2, max_attempts=3, resume_running_after=0.0
        )
        await inbox.start()
        if restart == 0:
            for key in ("reads", "writes"):
                assert await inbox.submit(delivery(key)) == "accepted"
        if restart < 3:
            await until(lambda: len(runs) == 2 * (restart + 1))
            await until(lambda: {row(tmp_path, key)[1] for key in ("reads", "writes")} == {restart + 1})
        else:
            await until(lambda: inbox.pending == 0)  # parked without running
        await inbox.stop(grace=0.01)

    for restart in range(4):
        await run_until_the_crash(restart)
    assert sorted(runs) == ["reads"] * 3 + ["writes"] * 3
    for key in ("reads", "writes"):
        assert row(tmp_path, key)[:2] == ("failed", 4)
    errors = {r.delivery_id: r.error for r in recent_deliveries(journal_path(tmp_path))}
    assert errors == {"reads": "gave up after 3 attempts", "writes": "gave up after 3 attempts"}
