"""A log line that an attacker could make hookbot repeat at will, written at most once a minute.

Shared by the connection guard (request heads over the limit) and the accept error log (out of descriptors): a
flood then costs one line a minute, which still says how many were left out, instead of filling the disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("hookbot.server")


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
