"""Serving the app until a signal asks to stop, within the process's open-files limit.

aiohttp's run_app, taken apart so that the listener sits behind a `ConnectionGuard`, the connection cap stays
under the open-files limit (so accept never fails for want of a descriptor), and "too many open files" on accept
is logged once a minute (`AcceptErrorLog`), not once per accept attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

from aiohttp import web

from bot.connection_guard import CONNECTIONS, LISTEN_BACKLOG, ConnectionGuard, GuardedSite
from bot.sparse_log import SparseLog

log = logging.getLogger("hookbot.server")

ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Descriptors kept free under the open-files limit: for the journal, logs and calls to GitHub and AWS, and for
# connections accepted but not yet seen by the guard. asyncio accepts up to `backlog` connections per wake-up and
# hands each to its protocol a couple of loop turns later, and a connection closed to make room gives its
# descriptor back only on the next turn: a few backlogs are in flight under a connection flood (measured: 2 were
# not enough).
FD_RESERVE = 64 + 4 * LISTEN_BACKLOG


class AcceptErrorLog:
    """The event loop's exception handler: "too many open files" and its kin on accept, once a minute.

    On the stock asyncio loop every failed accept reports to this handler (Python 3.11 reports each of a whole
    backlog's attempts per wake-up), and on Linux the listening socket keeps waking the loop: logged one line each,
    that was a million lines in two minutes. uvloop (libuv) accepts and drops such connections itself and reports
    nothing. Anything else goes to the loop's default handler.
    """

    def __init__(self, every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.sparse = SparseLog(every_seconds, clock)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS):
            loop.default_exception_handler(context)
            return
        self.sparse(
            logging.ERROR,
            "cannot accept connections: %s; raise the open-files limit (ulimit -n) or lower [server] max_connections",
            exc.strerror,
        )


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one (systemd and some shells start at 1024); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(configured: int, open_files_limit: int) -> int:
    """The connection cap, lowered to stay under the open-files limit so that accept never fails for want of one."""
    room = max(open_files_limit - FD_RESERVE, 1) if open_files_limit != resource.RLIM_INFINITY else configured
    if configured > room:
        log.warning(
            "[server] max_connections %d is over what the open-files limit %d allows; using %d",
            configured,
            open_files_limit,
            room,
        )
    return min(configured, room)


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int,
    idle_timeout: float,
    metrics_app: web.Application | None = None,
    metrics_port: int | None = None,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``app`` (and ``metrics_app`` on ``metrics_port``) until SIGTERM/SIGINT, then shut down gracefully.

    ``on_listening`` runs once every socket is bound, so "listening" is never said before a port clash.

    aiohttp's run_app, with the listener behind a ConnectionGuard. (The app itself turns aiohttp's automatic
    decompression off, so that no door inflates a body before it is authenticated.)
    """
    guard = ConnectionGuard(max_connections)
    app[CONNECTIONS] = guard
    runner = web.AppRunner(
        app,
        handle_signals=True,
        access_log=None,
        handler_cancellation=True,
        keepalive_timeout=idle_timeout,
    )
    runners = [runner]
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, guard).start()
        if metrics_app is not None and metrics_port is not None:
            metrics_runner = web.AppRunner(metrics_app, access_log=None, keepalive_timeout=idle_timeout)
            runners.append(metrics_runner)
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, host, metrics_port).start()
        on_listening()
        await asyncio.Event().wait()  # until a signal raises GracefulExit out of the loop
    finally:
        for each in reversed(runners):
            await each.cleanup()


def run_until_signalled(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on ``loop`` until it ends or a signal asks to stop, as aiohttp's run_app does."""
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            remaining = asyncio.all_tasks(loop)
            for each in remaining:
                each.cancel()
            loop.run_until_complete(asyncio.gather(*remaining, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
