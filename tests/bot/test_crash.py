"""A real `hookbot serve` process killed (-9) or stopped (SIGTERM) mid-work: nothing lost, nothing done twice.

GitHub is the slow fake in this test process; the server runs as a subprocess with its own journal, so the
crash is a real one (no cleanup code runs) and the restart reads only what was committed to disk.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from bot.inbox import journal_path, recent_deliveries
from tests.fake_github import FakeGitHub
from tests.processes import Server, issue_body


def comments_per_issue(fake: FakeGitHub) -> Counter[str]:
    return Counter(path for path, _ in fake.posted_comments())


async def until(condition: object, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_kill_9_while_deliveries_are_pending_then_restart(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    fake, url = fake_github
    fake.delay = 0.4  # a slow GitHub: work is still queued and in flight when the process dies
    server = Server(tmp_path, url, "[server]\nworkers = 2\n")
    servers.append(server)
    await server.start()
    numbers = range(1, 7)
    statuses = [await server.post(issue_body(n), f"kill-{n}") for n in numbers]
    assert statuses == [202] * 6
    await until(lambda: len(fake.requests) >= 3)

    assert server.process is not None
    server.process.kill()  # SIGKILL: no shutdown code runs
    await server.process.wait()
    assert len(comments_per_issue(fake)) < 6, "the test must kill the server before the work is done"

    fake.delay = 0.0
    restarted = Server(tmp_path, url, "[server]\nworkers = 2\n")
    servers.append(restarted)
    await restarted.start()
    await restarted.wait_idle()
    await asyncio.sleep(0.3)  # a request cut off by the kill may still be landing in the fake
    per_issue = comments_per_issue(fake)
    expected = {f"/repos/Codertocat/Hello-World/issues/{n}/comments" for n in numbers}
    assert set(per_issue) == expected
    assert set(per_issue.values()) == {1}, per_issue  # acted on exactly once each
    # The same deliveries arriving again are answered from the journal: already handled.
    assert await restarted.post(issue_body(1), "kill-1") == 200
    assert await restarted.stop() == 0


async def test_sigterm_finishes_running_work_and_keeps_the_rest(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    fake, url = fake_github
    fake.delay = 0.3
    config = "[server]\nworkers = 1\nshutdown_grace_seconds = 10\n"
    server = Server(tmp_path, url, config)
    servers.append(server)
    await server.start()
    statuses = [await server.post(issue_body(n), f"term-{n}") for n in range(1, 5)]
    assert statuses == [202] * 4
    await until(lambda: len(fake.requests) >= 1)

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    with pytest.raises(aiohttp.ClientError):  # no new work once stopping: the listener is closed
        await server.post(issue_body(9), "term-9")
    assert await server.exit_code() == 0

    done = comments_per_issue(fake)
    assert done == {"/repos/Codertocat/Hello-World/issues/1/comments": 1}  # the running one finished
    left = {row.delivery_id: row.state for row in recent_deliveries(journal_path(tmp_path / "state"))}
    assert left == {"term-1": "done", "term-2": "queued", "term-3": "queued", "term-4": "queued"}

    fake.delay = 0.0
    restarted = Server(tmp_path, url, config)
    servers.append(restarted)
    await restarted.start()
    await restarted.wait_idle()
    assert set(comments_per_issue(fake).values()) == {1}
    assert len(comments_per_issue(fake)) == 4
    assert await restarted.stop(signal.SIGINT) == 0


async def test_a_fast_restart_after_kill_9_never_comments_twice(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], servers: list[Server]
) -> None:
    """GitHub lands a comment 300 ms after the POST; the restart comes sooner. A delivery that was running waits
    for the GitHub client's request timeout from its start before it runs again, so the greeter's marker check
    sees the killed process's comment. 20 runs, each killed while a comment POST is in flight; four run side by
    side (each its own server pair and issues) to keep the wall time down."""
    fake, url = fake_github
    fake.post_delay = 0.3
    config = "[server]\nworkers = 2\n[github]\nrequest_timeout_seconds = 1.0\n"

    async def crash_and_restart(run: int) -> None:
        numbers = range(100 * run + 1, 100 * run + 5)
        paths = {f"/repos/Codertocat/Hello-World/issues/{n}/comments" for n in numbers}
        directory = tmp_path / f"run-{run}"
        directory.mkdir()
        server = Server(directory, url, config)
        servers.append(server)
        await server.start()
        restarted = Server(directory, url, config)
        servers.append(restarted)
        await restarted.prepare()  # Python and hookbot's modules loaded: the restart is hookbot's own start
        for n in numbers:
            assert await server.post(issue_body(n), f"run-{run}-{n}") == 202
        await until(lambda: any(r.path in paths for r in fake.calls("POST")))  # a comment in flight: kill now
        assert server.process is not None
        server.process.kill()
        await server.process.wait()
        started = time.monotonic()
        await restarted.start()
        restart_seconds.append(time.monotonic() - started)
        await restarted.wait_idle()
        assert await restarted.stop() == 0
        per_issue = {path: count for path, count in fake.landed_comments().items() if path in paths}
        assert per_issue == dict.fromkeys(paths, 1), f"run {run}: {per_issue}"

    restart_seconds: list[float] = []
    lanes = 4
    for first in range(0, 20, lanes):
        await asyncio.gather(*(crash_and_restart(run) for run in range(first, first + lanes)))
    print(f"restart to healthy: median {sorted(restart_seconds)[len(restart_seconds) // 2]:.2f}s")
