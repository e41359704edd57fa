"""The record of what one delivery's handlers did (or, in dry-run, would have done)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field


@dataclass(slots=True)
class ActionLog:
    """The side effects of one delivery, as one human-readable line each.

    `hookbot replay` prints these; in dry-run they are what *would* have happened.
    """

    dry_run: bool = False
    lines: list[str] = field(default_factory=list)

    def record(self, line: str) -> None:
        self.lines.append(f"[dry-run] {line}" if self.dry_run else line)
        logging.getLogger("hookbot.actions").info(line, extra={"fields": {"dry_run": self.dry_run}})
