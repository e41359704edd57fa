"""What a door sends back: an :class:`Answer` (status, a small JSON document, extra headers) and the answers every
door gives for the same outcome, each counted in ``/metrics`` once.

Apart from the pipeline (bot/ingress.py) so that the Lambda entry can answer without importing it; its log lines
keep the door's logger name, ``hookbot.ingress``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from bot.delivery import Delivery, Refusal
from bot.github_events import event_label
from bot.metrics import DELIVERIES
from bot.records import frozen

if TYPE_CHECKING:
    from bot.dispatch import DispatchResult

log = logging.getLogger("hookbot.ingress")

RETRY_AFTER_SECONDS = 5


@frozen
class Answer:
    """What a door sends back: an HTTP status, a small JSON document, and any extra headers (Retry-After)."""

    status: int
    document: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def refusal_answer(refusal: Refusal) -> Answer:
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
    return Answer(refusal.status, {"error": refusal.reason}, headers)


def ping_answer(delivery: Delivery) -> Answer:
    """200 with GitHub's zen; and one log line, so a new webhook's first delivery is seen to arrive."""
    DELIVERIES.labels("ping", "pong").inc()
    hook = delivery.payload.get("hook")
    fields = {
        "delivery": delivery.delivery_id,
        "event": "ping",
        "repository": delivery.repository,
        "outcome": "pong",
        "hook": hook.get("id") if isinstance(hook, dict) else None,
    }
    log.info("delivery pong", extra={"fields": fields})
    return Answer(200, {"ok": True, "zen": delivery.payload.get("zen")})


def admission_answer(delivery: Delivery, admission: str) -> Answer:
    """The answer for a delivery handed to a journal: 202 taken, 200 a repeat, 503 full (retry later)."""
    label = event_label(delivery.event)
    if admission == "busy":
        DELIVERIES.labels(label, "refused-503").inc()
        return Answer(503, {"error": "busy, retry later"}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if admission == "duplicate":
        DELIVERIES.labels(label, "duplicate").inc()
        fields = {"delivery": delivery.delivery_id, "event": delivery.event, "outcome": "duplicate"}
        log.info("delivery already handled", extra={"fields": fields})
        return Answer(200, {"delivery": delivery.delivery_id, "status": "already handled"})
    DELIVERIES.labels(label, "accepted").inc()
    return Answer(202, {"delivery": delivery.delivery_id, "status": "accepted"})


def dispatch_answer(delivery: Delivery, result: DispatchResult) -> Answer:
    """The answer for a delivery whose handlers ran before answering (Lambda): 200 done or repeat, 500 failed."""
    label = event_label(delivery.event)
    if result.duplicate:
        DELIVERIES.labels(label, "duplicate").inc()
        return Answer(200, {"delivery": delivery.delivery_id, "status": "already handled"})
    if not result.ok:
        DELIVERIES.labels(label, "failed").inc()
        failed = [outcome.handler for outcome in result.outcomes if outcome.status == "failed"]
        return Answer(500, {"delivery": delivery.delivery_id, "status": "failed", "handlers": failed})
    DELIVERIES.labels(label, "handled").inc()
    return Answer(200, {"delivery": delivery.delivery_id, "status": "handled", "actions": result.actions})


def unwanted_answer(event: str, delivery_id: str) -> Answer:
    DELIVERIES.labels(event_label(event), "unwanted").inc()
    return Answer(200, {"delivery": delivery_id, "status": "no plugin wants it"})
