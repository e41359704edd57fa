"""Bytes of request bodies held at once, across all connections, and reading one body within its bounds.

A delivery's signature covers its body, so the body has to be read before anything about the sender is known.
Each body is therefore read as raw chunks (never inflated: the server is built with ``auto_decompress=False``), up
to ``max_body_bytes``, within a read deadline, and its bytes are counted against one shared `BodyBudget`: past
the cap a body that has stopped arriving gives way first, else the newcomer gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from bot.delivery import Refusal

STALL_SECONDS = 1.0  # a body with no new bytes for this long is "stalled" and gives way when the budget is full
Answer = TypeVar("Answer", bound=web.StreamResponse)


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
    if content.is_eof():
        # The whole body came with the head (a delivery of a few KiB usually does) and aiohttp has it buffered
        # already: there is nothing to wait for or to count while waiting.
        body = content.read_nowait()
        check_size(len(body), max_bytes)
        return body

    def evict(refusal: Refusal) -> None:
        content.set_exception(refusal)  # wakes the read below if it is waiting for bytes

    reservation = budget.reserve(evict)
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(deadline):
            while chunk := await content.readany():
                received += len(chunk)
                check_size(received, max_bytes)
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


def check_size(received: int, max_bytes: int) -> None:
    """413 once the bytes received pass ``max_bytes`` (a body sent without a Content-Length, or a false one)."""
    if received > max_bytes:
        raise Refusal(413, f"body is over the {max_bytes} byte limit")


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
