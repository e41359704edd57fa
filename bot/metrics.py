"""Prometheus metrics, in one registry that `GET /metrics` renders."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "hookbot_deliveries_total",
    "Deliveries received, by event and by what became of them at the door.",
    ["event", "outcome"],
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "hookbot_handler_seconds",
    "Time each plugin took per delivery, by plugin and outcome.",
    ["handler", "outcome"],
    registry=REGISTRY,
)
INBOX_PENDING = Gauge("hookbot_inbox_pending", "Accepted deliveries not yet finished.", registry=REGISTRY)
