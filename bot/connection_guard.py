"""Caps on open connections and on the request heads they send, applied before aiohttp sees a connection.

At the cap the longest-idle connection is closed to let a new one in (`ConnectionGuard`); idle connections
(keep-alive, or headers not yet complete) are closed by aiohttp's keep-alive timer; a request head (request line
and headers) longer than 32 KiB closes its connection (`RequestHead`). The guard sits between the listening
socket and aiohttp's protocol (`GuardedSite`, `GuardedProtocol`) so that a refused connection costs aiohttp
nothing, and learns which connections have a handler running from a wrapper around each route's handler
(`tracking_busy_connections`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from bot.sparse_log import SparseLog

MAX_HEAD_BYTES = 32 * 1024  # a request line and headers; nginx allows 4 x 8 KiB by default
LISTEN_BACKLOG = 128  # aiohttp's default


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
        if self.tail:  # the blank line may straddle the previous read and this one
            end = (self.tail + data[:3]).find(b"\r\n\r\n")
            if end >= 0:
                return self._ends(end + 4 - len(self.tail))
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return self._ends(end + 4)
        self.size += len(data)
        self.tail = (self.tail + data[-3:])[-3:]
        return self.size <= self.limit

    def _ends(self, head_part: int) -> bool:
        self.size += head_part
        self.complete = True
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tracking_busy_connections(handler: Handler) -> Handler:
    """``handler``, telling the connection guard (when the app runs behind one) which connections have it running.

    A request whose body was not read to its end (refused before reading) ends its connection: aiohttp reads
    and drops the rest for a bounded time, then closes, rather than taking another request after it.

    A wrapper around each route's handler, not a middleware: with any middleware aiohttp runs a chain of two
    extra coroutine layers per request, which was a tenth of the CPU of a delivery answered at the door
    (BENCHMARKS.md). Requests no route takes must be tracked too (the head limit restarts only here), so the app
    routes them to :func:`no_route` through the same wrapper.
    """

    async def tracked(request: web.Request) -> web.StreamResponse:
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

    return tracked


async def no_route(request: web.Request) -> web.StreamResponse:
    """What aiohttp's router answers a request no route takes: 405 with ``Allow`` for a known path, else 404.

    Registered last, as a catch-all for every method and path, so that such requests pass through
    :func:`tracking_busy_connections` as well.
    """
    routes = request.app.router.routes()
    allowed = {route.method for route in routes if route.resource and route.resource.canonical == request.path}
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


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
