"""An aiohttp session for an object that outlives event loops.

A warm Lambda runs each invocation in its own ``asyncio.run`` loop while the Runtime (and its caches) is built
once. An aiohttp session, like an asyncio Lock or Future, belongs to the loop it was made in, so the owner must
notice a new running loop and start afresh; ``on_new_loop`` lets it forget its own loop-bound objects at the same
moment, whichever of its methods noticed first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from bot import USER_AGENT


class LoopSession:
    """One shared session per running event loop, made on first use."""

    def __init__(self, timeout: aiohttp.ClientTimeout, *, on_new_loop: Callable[[], None] = lambda: None) -> None:
        self._timeout = timeout
        self._on_new_loop = on_new_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    def check_loop(self) -> None:
        """Forget what was made under an event loop that is no longer the running one."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._session = None  # its loop is gone; close() already closed it, or it died with that loop
            self._on_new_loop()

    def get(self) -> aiohttp.ClientSession:
        self.check_loop()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
