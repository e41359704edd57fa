"""What `/healthz` reports beyond "the process answers": parts that keep failing.

A single failed DynamoDB call or journal commit is noise (it is retried); the same part failing several times in a
row without one success means hookbot accepts deliveries it cannot handle, and an orchestrator or a load balancer
should know. Each part reports its calls here; `/healthz` turns 503 while any part is over the threshold, with
the latest reason.
"""

from __future__ import annotations

FAILURES_BEFORE_UNHEALTHY = 3


class Health:
    """Consecutive failures per named part (``"dedupe"``, ``"journal"``); a success clears that part."""

    def __init__(self, threshold: int = FAILURES_BEFORE_UNHEALTHY) -> None:
        self._threshold = threshold
        self._failures: dict[str, tuple[int, str]] = {}

    def succeeded(self, part: str) -> None:
        self._failures.pop(part, None)

    def failed(self, part: str, reason: str) -> None:
        count, _ = self._failures.get(part, (0, ""))
        self._failures[part] = (count + 1, reason)

    def problems(self) -> dict[str, str]:
        """Each part failing ``threshold`` times or more in a row, with its latest reason."""
        return {
            part: f"{count} failures in a row, the latest: {reason}"
            for part, (count, reason) in sorted(self._failures.items())
            if count >= self._threshold
        }
