"""Prometheus metrics, in one registry that `GET /metrics` renders.

prometheus_client is imported when a metric is first touched, not with this module: its import pulls in
http.server, wsgiref and email (about 19 ms, an eighth of a Lambda cold start), and the Lambda entry, which
imports this module through logging and the GitHub client, has no /metrics to serve. Each name below stands
in for its metric; touching any of them builds the registry with every metric in it, so /metrics is complete.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@functools.cache
def _metrics() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry(auto_describe=True)
    metrics: dict[str, Any] = {
        "REGISTRY": registry,
        "DELIVERIES": Counter(
            "hookbot_deliveries_total",
            "Deliveries received, by event and by what became of them at the door.",
            ["event", "outcome"],
            registry=registry,
        ),
        "HANDLER_SECONDS": Histogram(
            "hookbot_handler_seconds",
            "Time each plugin took per delivery, by plugin and outcome.",
            ["handler", "outcome"],
            registry=registry,
        ),
        "INBOX_PENDING": Gauge("hookbot_inbox_pending", "Accepted deliveries not yet finished.", registry=registry),
        "DELIVERIES_PROCESSED": Counter(
            "hookbot_deliveries_processed_total",
            "Accepted deliveries after the handlers ran, by event and outcome (done, retry, failed, duplicate).",
            ["event", "outcome"],
            registry=registry,
        ),
        "JOURNAL_BATCH": Histogram(
            "hookbot_journal_batch_size",
            "Journal writes grouped into one commit (group commit): larger under load, 1 when idle.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        ),
        "GITHUB_REQUESTS": Counter(
            "hookbot_github_requests_total",
            'GitHub API requests by method and status ("error" when no answer came back).',
            ["method", "status"],
            registry=registry,
        ),
        "GITHUB_RATE_LIMIT_REMAINING": Gauge(
            "hookbot_github_rate_limit_remaining",
            "x-ratelimit-remaining from GitHub's latest answer (NaN before the first).",
            registry=registry,
        ),
        "REFUSALS_SUPPRESSED": Counter(
            "hookbot_refusal_logs_suppressed_total",
            "Refusals not logged one by one because of a flood (they are summarised periodically).",
            registry=registry,
        ),
    }
    # Unknown until GitHub's first answer says: NaN, which no "remaining < N" alert fires on, rather than a 0
    # that reads as "rate limit exhausted" on every fresh start.
    metrics["GITHUB_RATE_LIMIT_REMAINING"].set(float("nan"))
    return metrics


class _Deferred:
    """Forwards every attribute to the object ``build`` returns, calling it on first use.

    ``labels(...)`` is answered from a dict of the children already made: prometheus_client's own lookup takes a
    lock and rebuilds the label tuple on every call, which on the receive path (a few labelled samples per
    delivery) cost more than the samples themselves. The dict holds exactly the children the registry holds.
    """

    __slots__ = ("_build", "_children", "_target")

    def __init__(self, build: Callable[[], object]) -> None:
        self._build = build
        self._target: object | None = None
        self._children: dict[tuple[str, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        target = self._target
        if target is None:
            target = self._target = self._build()
        return getattr(target, name)

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.__getattr__("labels")(*values)
        return child


def _deferred(name: str) -> Any:
    return _Deferred(lambda: _metrics()[name])


REGISTRY = cast("CollectorRegistry", _deferred("REGISTRY"))
DELIVERIES = cast("Counter", _deferred("DELIVERIES"))
HANDLER_SECONDS = cast("Histogram", _deferred("HANDLER_SECONDS"))
INBOX_PENDING = cast("Gauge", _deferred("INBOX_PENDING"))
DELIVERIES_PROCESSED = cast("Counter", _deferred("DELIVERIES_PROCESSED"))
JOURNAL_BATCH = cast("Histogram", _deferred("JOURNAL_BATCH"))
GITHUB_REQUESTS = cast("Counter", _deferred("GITHUB_REQUESTS"))
GITHUB_RATE_LIMIT_REMAINING = cast("Gauge", _deferred("GITHUB_RATE_LIMIT_REMAINING"))
REFUSALS_SUPPRESSED = cast("Counter", _deferred("REFUSALS_SUPPRESSED"))
