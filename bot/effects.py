"""The moment before a delivery first changes something outside hookbot, when the journal's start mark is due.

After a ``kill -9`` a delivery that may have had a write in flight (a comment POST GitHub lands a little later)
must not run again before that write has landed or failed, or the restarted worker's idempotency check (the
greeter's hidden marker) misses it and acts twice; a delivery that had not written yet may run again at once.
So the inbox (bot/inbox.py) commits "running since <time>" for a delivery only when it is about to make its first
write, and waits for that commit before the write goes out: a delivery that only reads, and every dry-run one,
costs no commit for it.

The inbox sets :data:`start_mark` for the task that runs a delivery (the handlers' tasks inherit it);
:func:`before_effect` awaits it. The GitHub client calls it before every request that is not a read
(bot/github.py), and plugins call it (re-exported by bot.plugin) before effects of their own that a crash could
leave in flight: exec before it starts a user's command, lambda_deploy before its AWS writes. Outside the inbox
(the Lambda entry, the CLI) nothing is set and it costs one context-variable read. Standard library only: the
Lambda entry imports this through the GitHub client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

StartMark = Callable[[], Awaitable[None]]

# The running delivery's mark: commits it on the first call, and returns once that commit is done on every call.
start_mark: ContextVar[StartMark | None] = ContextVar("hookbot_start_mark", default=None)


async def before_effect() -> None:
    """Await before a change outside hookbot that a crash could leave in flight (see the module docstring).

    Cheap to call before every such change: only the delivery's first call waits for a journal commit.
    """
    mark = start_mark.get()
    if mark is not None:
        await mark()


class OnceMark:
    """A delivery's start mark: ``commit`` (the journal's "running since now") asked for once, at the first call.

    Several handlers may write at once (plugins run side by side): the first call asks for the commit and every
    call waits for it. The wait is shielded, so a handler cancelled while waiting cancels nobody else's.
    """

    __slots__ = ("_commit", "_committed")

    def __init__(self, commit: Callable[[], asyncio.Future[None]] | None) -> None:
        """``commit`` None: nothing to mark (already marked running, or the attempt is over)."""
        self._commit = commit
        self._committed: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        if self._committed is None:
            if self._commit is None:
                return
            self._committed = self._commit()
        await asyncio.shield(self._committed)

    def close(self) -> None:
        """The attempt is over (its outcome queued): a write a stray task makes after it marks nothing."""
        self._commit = None
