"""The seam between accepting a delivery and acting on it.

The HTTP answer never waits for handlers: accepted deliveries go into a bounded inbox served by worker tasks.
This in-process inbox loses its queue on a crash; the durable SQLite inbox replaces it behind the same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.delivery import Delivery

log = logging.getLogger("hookbot.inbox")

Processor = Callable[[Delivery], Awaitable[object]]


class Inbox(Protocol):
    @property
    def pending(self) -> int:
        """Accepted deliveries not yet finished (queued plus in progress)."""
        ...

    async def submit(self, delivery: Delivery) -> bool:
        """Take a delivery for processing; False when full (the caller answers 503)."""
        ...

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class MemoryInbox:
    """A bounded asyncio queue and a fixed pool of workers."""

    def __init__(self, process: Processor, *, capacity: int, workers: int) -> None:
        self._process = process
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=capacity)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._in_progress = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._in_progress

    async def submit(self, delivery: Delivery) -> bool:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            return False
        return True

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"hookbot-worker-{i}") for i in range(self._workers)]

    async def stop(self, grace: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._in_progress += 1
            try:
                await self._process(delivery)
            except Exception:
                log.exception("processing a delivery failed unexpectedly")
            finally:
                self._in_progress -= 1
                self._queue.task_done()
