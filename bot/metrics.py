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
DELIVERIES_PROCESSED = Counter(
    "hookbot_deliveries_processed_total",
    "Accepted deliveries after the handlers ran, by event and outcome (done, retry, failed, duplicate).",
    ["event", "outcome"],
    registry=REGISTRY,
)
JOURNAL_BATCH = Histogram(
    "hookbot_journal_batch_size",
    "Journal writes grouped into one commit (group commit): larger under load, 1 when idle.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
GITHUB_REQUESTS = Counter(
    "hookbot_github_requests_total",
    "GitHub API requests by method and status (\"error\" when no answer came back).",
    ["method", "status"],
    registry=REGISTRY,
)
GITHUB_RATE_LIMIT_REMAINING = Gauge(
    "hookbot_github_rate_limit_remaining",
    "x-ratelimit-remaining from GitHub's latest answer.",
    registry=REGISTRY,
)
REFUSALS_SUPPRESSED = Counter(
    "hookbot_refusal_logs_suppressed_total",
    "Refusals not logged one by one because of a flood (they are summarised periodically).",
    registry=REGISTRY,
)
