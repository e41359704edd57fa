"""Bounds on what an unauthenticated client can make the server hold, applied below the request handlers.

Everything here runs before a delivery's signature is checked (the HMAC covers the body, so the body has to be
read first), so each bound is a small fixed amount of memory or time whatever a client sends:

- a request body is read as raw chunks, never inflated (the server is built with ``auto_decompress=False``), up
  to ``max_body_bytes``, within a read deadline;
- the bytes of request bodies held at once are counted across all connections (`BodyBudget`): past the cap a
  body that has stopped arriving gives way first, else the newcomer gets 503 with ``Retry-After``;
- open connections are capped (`ConnectionGuard`): at the cap the longest-idle connection is closed to let a new
  one in; idle connections (keep-alive, or headers not yet complete) are closed by aiohttp's keep-alive timer;
  a request head (request line and headers) longer than 32 KiB closes its connection (`RequestHead`);
- "too many open files" on accept is logged once a minute (`AcceptErrorLog`), not once per accept attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar, cast

from aiohttp import web

from bot.delivery import Refusal

log = logging.getLogger("hookbot.server")

STALL_SECONDS = 1.0  # a body with no new bytes for this long is "stalled" and gives way when the budget is full
ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
Answer = TypeVar("Answer", bound=web.StreamResponse)
MAX_HEAD_BYTES = 32 * 1024  # a request line and headers; nginx allows 4 x 8 KiB by default
LISTEN_BACKLOG = 128  # aiohttp's default
# Descriptors kept free under the open-files limit: for the journal, logs and calls to GitHub and AWS, and for
# connections accepted but not yet seen by the guard. asyncio accepts up to `backlog` connections per wake-up and
# hands each to its protocol a couple of loop turns later, and a connection closed to make room gives its
# descriptor back only on the next turn: a few backlogs are in flight under a connection flood (measured: 2 were
# not enough).
FD_RESERVE = 64 + 4 * LISTEN_BACKLOG


class BodyReservation:
    """One body being read: the bytes it holds of the shared budget and when its last bytes arrived."""

    __slots__ = ("budget", "evict", "held", "last_progress", "refusal")

    def __init__(self, budget: BodyBudget, evict: Callable[[Refusal], None], now: float) -> None:
        self.budget = budget
        self.evict = evict
        self.held = 0
        self.last_progress = now
        self.refusal: Refusal | None = None

    def take(self, size: int) -> None:
        """Count ``size`` more bytes as held, or raise Refusal (503) when the budget cannot make room."""
        if self.refusal is not None:
            raise self.refusal
        self.budget.take(self, size)

    def release(self) -> None:
        self.budget.release(self)


class BodyBudget:
    """Bytes of request bodies buffered at once, across all connections.

    A reader that needs more than is free first makes stalled readers (no bytes for ``stall_seconds``) give up
    theirs, least recently progressing first: a client that stops sending mid-body cannot keep a genuine delivery
    out. Only when that is not enough is the reader itself refused. Memory held by bodies therefore stays at the
    cap (plus one chunk per connection in aiohttp's own buffer) whatever the number of connections.
    """

    def __init__(
        self,
        limit: int,
        *,
        retry_after: int,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.used = 0
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.readers: set[BodyReservation] = set()

    def reserve(self, evict: Callable[[Refusal], None]) -> BodyReservation:
        """Start counting one body; ``evict`` is called with the refusal if the budget later takes its bytes back."""
        reservation = BodyReservation(self, evict, self.clock())
        self.readers.add(reservation)
        return reservation

    def take(self, reader: BodyReservation, size: int) -> None:
        now = self.clock()
        if self.used + size > self.limit:
            self.make_room(reader, size, now)
        if self.used + size > self.limit:
            raise Refusal(
                503,
                f"over {self.limit} bytes of request bodies are being received; retry later",
                retry_after=self.retry_after,
            )
        reader.held += size
        self.used += size
        reader.last_progress = now

    def make_room(self, reader: BodyReservation, size: int, now: float) -> None:
        stalled = sorted(
            (r for r in self.readers if r is not reader and r.held and now - r.last_progress >= self.stall_seconds),
            key=lambda r: r.last_progress,
        )
        for victim in stalled:
            if self.used + size <= self.limit:
                return
            refusal = Refusal(
                503,
                f"body stalled for {now - victim.last_progress:.0f}s while the {self.limit} byte budget was full",
                retry_after=self.retry_after,
            )
            self.release(victim)
            victim.refusal = refusal
            victim.evict(refusal)

    def release(self, reader: BodyReservation) -> None:
        if reader in self.readers:
            self.readers.discard(reader)
            self.used -= reader.held
            reader.held = 0


async def read_body(request: web.BaseRequest, budget: BodyBudget, *, max_bytes: int, deadline: float) -> bytes:
    """The request body as sent (never inflated), read within ``deadline`` seconds and counted against ``budget``.

    Raises Refusal: 413 past ``max_bytes`` (also when no Content-Length was sent), 408 when the body has not
    arrived in time, 503 when the shared budget is full. After any of these the rest of the body is not read, so
    the answer must close the connection (`answer_and_close`).
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise Refusal(413, f"body of {request.content_length} bytes is over the {max_bytes} byte limit")
    content = request.content

    def evict(refusal: Refusal) -> None:
        content.set_exception(refusal)  # wakes the read below if it is waiting for bytes

    reservation = budget.reserve(evict)
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(deadline):
            while chunk := await content.readany():
                received += len(chunk)
                if received > max_bytes:
                    raise Refusal(413, f"body is over the {max_bytes} byte limit")
                reservation.take(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        chunks.clear()
        raise Refusal(408, f"body did not arrive within {deadline:g}s ({received} bytes came)") from None
    except BaseException:
        # The budget takes these bytes back at once; the traceback would keep them alive while the refusal is
        # written, so they are let go here.
        chunks.clear()
        raise
    finally:
        reservation.release()
    return b"".join(chunks)


async def answer_and_close(request: web.BaseRequest, response: Answer) -> Answer:
    """Send ``response``, then close the connection at once.

    Used when the body was not read to its end: aiohttp would otherwise keep reading (and discarding) it for up
    to its lingering time, and a stalled client would hold the connection that much longer.
    """
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes the answer before it closes
    return response


class RequestHead:
    """Counts the bytes of a request's head (request line and headers) up to the blank line that ends it.

    aiohttp keeps a head being received in memory and bounds it only per header line (8 KiB, 128 lines): about
    1 MiB a connection, which 1,000 connections sending heads slowly turned into 1.9 GB. GitHub's heads are
    about 1 KiB, a proxy adds a few.
    """

    __slots__ = ("complete", "limit", "size", "tail")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.tail = b""  # the last bytes seen, for a blank line split across two reads
        self.complete = False

    def feed(self, data: bytes) -> bool:
        """Count ``data``; False when the head has grown past the limit without ending."""
        if self.complete:
            return True
        end = (self.tail + data[:3]).find(b"\r\n\r\n")
        if end >= 0:
            head_part = end + 4 - len(self.tail)
        else:
            end = data.find(b"\r\n\r\n")
            head_part = end + 4 if end >= 0 else len(data)
        self.size += head_part
        self.complete = end >= 0
        self.tail = (self.tail + data[-3:])[-3:]
        return self.size <= self.limit

    def expect_next(self) -> None:
        """The request is over and the connection stays open: count the next request's head."""
        self.size, self.tail, self.complete = 0, b"", False


class ConnectionGuard:
    """Caps open connections; at the cap the longest-idle one is closed so that a new request still gets in.

    "Idle" means no request handler is running on it: a keep-alive connection between requests, or one whose
    request headers are not complete yet (aiohttp's keep-alive timer closes either after ``idle_timeout``). A
    connection whose handler runs is never closed here; when every connection is busy a new one is refused.
    """

    def __init__(
        self,
        max_connections: int,
        *,
        max_head_bytes: int = MAX_HEAD_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_head_bytes = max_head_bytes
        self.clock = clock
        self.open: dict[asyncio.Transport, RequestHead] = {}
        self.idle: OrderedDict[asyncio.Transport, float] = OrderedDict()  # oldest idle first
        self.head_too_long = SparseLog(clock=clock)

    def protocol_factory(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedProtocol(factory(), self)

    def admit(self, transport: asyncio.Transport) -> RequestHead | None:
        """The new connection's head counter, or None when it is refused (every connection has a request running)."""
        while len(self.open) >= self.max_connections and self.idle:
            oldest, _ = self.idle.popitem(last=False)
            del self.open[oldest]
            oldest.abort()
        if len(self.open) >= self.max_connections:
            return None
        head = self.open[transport] = RequestHead(self.max_head_bytes)
        self.idle[transport] = self.clock()
        return head

    def closed(self, transport: asyncio.Transport) -> None:
        self.open.pop(transport, None)
        self.idle.pop(transport, None)

    def busy(self, transport: asyncio.Transport) -> None:
        self.idle.pop(transport, None)

    def done(self, transport: asyncio.Transport, *, reusable: bool) -> None:
        """The handler finished; ``reusable``: the body was read to its end, so another request may follow."""
        head = self.open.get(transport)
        if head is None:
            return
        if reusable:
            head.expect_next()
        self.idle[transport] = self.clock()


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's per-connection protocol, seen through the guard: refused connections never reach aiohttp, and a
    connection whose request head grows past the limit is dropped before aiohttp buffers more of it."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.head: RequestHead | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.head = self.guard.admit(transport)
        if self.head is None:
            transport.abort()
            return
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.head is None:
            return
        if not self.head.feed(data):
            self.guard.head_too_long(
                logging.WARNING, "closed a connection whose request head passed %d bytes", self.head.limit
            )
            self.transport.abort()
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.closed(self.transport)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


CONNECTIONS = web.AppKey("connections", ConnectionGuard)


@web.middleware
async def track_busy_connections(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tell the connection guard (when the app runs behind one) which connections have a handler running.

    A request whose body was not read to its end (refused before reading) ends its connection: aiohttp reads
    and drops the rest for a bounded time, then closes, rather than taking another request after it.
    """
    guard = request.app.get(CONNECTIONS)
    transport = request.transport
    if guard is None or transport is None:
        return await handler(request)
    guard.busy(transport)
    try:
        return await handler(request)
    finally:
        reusable = request.content.is_eof()
        if not reusable:
            request.protocol.close()
        guard.done(transport, reusable=reusable)


class GuardedSite(web.BaseSite):
    """A TCP listener like aiohttp's TCPSite, whose connections pass through a ConnectionGuard first."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self.host = host
        self.port = port
        self.guard = guard

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(server), self.host, self.port, backlog=self._backlog, reuse_address=True
        )


class SparseLog:
    """A line that an attacker could repeat at will, logged at most once a minute with how often it was left out."""

    def __init__(self, every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self.clock = clock
        self.last: float | None = None
        self.suppressed = 0

    def __call__(self, level: int, message: str, *args: object) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < self.every_seconds:
            self.suppressed += 1
            return
        log.log(level, message + " (%d more times since the last line)", *args, self.suppressed)
        self.last = now
        self.suppressed = 0


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
