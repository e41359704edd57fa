"""Ordering: one deployment per function at a time, and never older code over newer.

Every deployment carries an *order*: when the push happened, when the S3 object was written, when the comment was
made. Two guards use it:

- in this process, deployments to one function wait their turn on an ``asyncio.Lock`` (:class:`DeployQueue`), and
  one that is older than another already asked for the same function is dropped while it waits;
- across processes, the newest order done is kept in the function's own tags (``hookbot:order``,
  ``hookbot:source``) rather than in local state, because tags travel with the function: a second replica, a
  restarted container or a Lambda cold start all read the same truth, and a late redelivery of an old push cannot
  put old code back. Tags rather than the Description because the Description is for humans (and published
  versions keep it), while a tag can be read back exactly.

All of it is pure (no AWS or GitHub calls): the AWS steps write the tags this module makes and hand back the tags
it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from handlers.lambda_deploy.errors import Superseded

TAG_ORDER = "hookbot:order"
TAG_SOURCE = "hookbot:source"


class DeployQueue:
    """Deployments to one function, one at a time and newest first.

    Locks belong to an event loop, so they are remade when the loop changes (a warm Lambda runs each invocation
    in a new loop).
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._newest: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _lock(self, function: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._locks, self._loop = {}, loop
        return self._locks.setdefault(function, asyncio.Lock())

    def busy(self, function: str) -> bool:
        return self._lock(function).locked()

    @contextlib.asynccontextmanager
    async def turn(self, function: str, order: float) -> AsyncIterator[None]:
        """Wait for ``function``'s turn; raise Superseded when something newer was asked for meanwhile."""
        self._newest[function] = max(order, self._newest.get(function, order))
        async with self._lock(function):
            if self._newest[function] > order:
                raise Superseded(f"superseded by a newer deployment to {function}")
            yield


def order_of(timestamp: Any, fallback: float) -> float:
    """Epoch seconds from GitHub's or S3's timestamps (ISO 8601 text or epoch numbers)."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return float(timestamp)
    if isinstance(timestamp, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(timestamp).timestamp()
    return fallback


def order_tags(order: float, source: str) -> dict[str, str]:
    """The tags that record what a function runs now; Lambda tag values allow letters, digits, spaces and
    ``_.:/=+-@``, at most 256 characters."""
    return {TAG_ORDER: repr(order), TAG_SOURCE: re.sub(r"[^\w .:/=+\-@]", "_", source)[:256]}


def check_order(tags: Mapping[str, str] | None, function: str, order: float) -> None:
    """Refuse to deploy over something newer, as recorded in the function's tags by any process."""
    if not tags:
        return
    with contextlib.suppress(ValueError):
        if float(tags.get(TAG_ORDER, "")) > order:
            raise Superseded(f"{function} already runs newer code ({tags.get(TAG_SOURCE, 'unknown')})")
