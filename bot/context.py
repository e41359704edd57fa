"""What one delivery's handlers did (or, in dry-run, would have done), and which of a plugin's steps are done."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bot.logs  # noqa: F401 - sets hookbot's logger class before the logger below is made
from bot.records import frozen

if TYPE_CHECKING:
    from bot.dedupe import DedupeStore

actions_log = logging.getLogger("hookbot.actions")


@dataclass(slots=True)
class ActionLog:
    """The side effects of one delivery, as one human-readable line each.

    `hookbot replay` prints these; in dry-run they are what *would* have happened.
    """

    dry_run: bool = False
    lines: list[str] = field(default_factory=list)

    def record(self, line: str) -> None:
        self.lines.append(f"[dry-run] {line}" if self.dry_run else line)
        actions_log.info(line, extra={"fields": {"dry_run": self.dry_run}})


@frozen
class StepMarks:
    """Which named steps of one plugin have already succeeded for one delivery.

    The dispatcher remembers a plugin's success under ``<delivery>/<plugin>``, so a retry runs only the plugins
    that failed; a plugin that does several independent things (exec runs several hooks) marks each one under
    ``<delivery>/<plugin>/<step>`` in the same de-dup store, so a retry runs only the steps that failed.
    """

    store: DedupeStore
    prefix: str  # "<delivery id>/<plugin>"
    # The marks this run wrote or found: once the plugin as a whole is marked done they are dropped (``forget``).
    known: set[str] = field(default_factory=set)

    async def done(self, step: str) -> bool:
        key = f"{self.prefix}/{step}"
        if await self.store.is_done(key):
            self.known.add(key)
            return True
        return False

    async def mark_done(self, step: str) -> None:
        key = f"{self.prefix}/{step}"
        await self.store.mark_done(key)
        self.known.add(key)

    async def forget(self) -> None:
        """Drop the step marks: called once the plugin's own mark covers the delivery, so none is needed again."""
        for key in self.known:
            await self.store.forget(key)
        self.known.clear()
