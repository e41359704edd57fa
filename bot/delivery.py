"""The one shape every ingress turns a delivery into.

Everything after ingress (dedupe, dispatch, handlers, the inbox) sees only a :class:`Delivery`, so a handler
cannot tell, and need not care, whether the event came over HTTP, through SNS, from S3 or from a replayed file.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, Literal

from bot.records import frozen

S3_EVENT = "s3"  # the event name of deliveries made from S3 notifications (bot.s3_events)
WILDCARD = "*"  # an event filter (and a gidgethub route, see bot/dispatch.py) that matches every delivery

# A GitHub delivery id is a UUID (72d3162e-cc78-11e3-81ab-4c9367dc0958); hookbot's own add a word before one
# (replay-..., send-...). Eight hex digits tell a day's deliveries apart, as git's short hashes tell commits apart.
_UUID_TAIL = re.compile(r"^(.*?)([0-9a-fA-F]{8})-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SHORT_ID_LENGTH = 12


def short_id(delivery_id: str) -> str:
    """The short form of a delivery id that logs and `hookbot deliveries` both show (and `retry` accepts)."""
    if match := _UUID_TAIL.match(delivery_id):
        return match.group(1) + match.group(2)
    return delivery_id if len(delivery_id) <= SHORT_ID_LENGTH else delivery_id[:SHORT_ID_LENGTH]


class Refusal(Exception):
    """A request refused at a door: ``status`` is the HTTP answer and ``reason`` the one log line saying why.

    The one exception type of every check (GitHub signature and payload, SNS message, relay), so each door
    turns any of them into the same answer: a status code, a short JSON error, a rate-limited log line.
    ``retry_after`` (seconds) is set when trying again later can succeed (a certificate that could not be
    fetched, a busy relay) and becomes a ``Retry-After`` header.
    """

    def __init__(self, status: int, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


Source = Literal["github-http", "sns-http", "lambda-sns", "lambda-s3", "function-url", "replay"]


@frozen
class Delivery:
    """A verified event, ready for dispatch.

    ``body`` keeps the bytes exactly as they arrived, so a relay can forward them with the original HMAC
    still valid, and an inbox can persist them without re-serialising. ``sns_message_id`` is the SNS message
    a GitHub delivery came in, when it came through SNS.
    """

    event: str
    delivery_id: str
    payload: dict[str, Any]
    body: bytes
    source: Source
    received_at: float = field(default_factory=time.time)
    sns_message_id: str | None = None
    body_sha256: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.body_sha256:
            object.__setattr__(self, "body_sha256", hashlib.sha256(self.body).hexdigest())

    @property
    def replay_keys(self) -> tuple[str, ...]:
        """De-duplication keys besides the delivery id, each meaning "this was seen already".

        GitHub's HMAC covers the body, not X-GitHub-Delivery: a signed body replayed under a new delivery id is
        still the same delivery, so the body's SHA-256 is a key. So is the SNS MessageId, which SNS keeps when it
        delivers a message again. A delivery made in code without a body (a test's) has no body key: only a body
        says what a delivery is.
        """
        keys = (f"sha256:{self.body_sha256}",) if self.body else ()
        return (*keys, f"sns:{self.sns_message_id}") if self.sns_message_id else keys

    @property
    def action(self) -> str | None:
        return action_of(self.payload)

    @property
    def repository(self) -> str | None:
        return repository_of(self.payload)

    @property
    def installation_id(self) -> int | None:
        installation = self.payload.get("installation")
        if isinstance(installation, dict) and isinstance(installation.get("id"), int):
            return int(installation["id"])
        return None

    @property
    def from_github(self) -> bool:
        """True for GitHub events; False for S3 uploads, which need no GitHub account to act on."""
        return self.event != S3_EVENT

    def describe(self) -> str:
        """``issues.opened`` style name used in logs and config filters."""
        return describe(self.event, self.action)

    def matches(self, names: Iterable[str]) -> bool:
        """True when one of a config's event filters names this delivery: ``*``, ``push`` or ``issues.opened``."""
        return matches(self.event, self.action, names)


# Shared with bot.plugin.Event, the view of a delivery that plugins get.


def action_of(payload: Mapping[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


def repository_of(payload: Mapping[str, Any]) -> str | None:
    """``owner/name`` of the payload's repository, if it has one."""
    repo = payload.get("repository")
    if isinstance(repo, Mapping):
        name = repo.get("full_name")
        return name if isinstance(name, str) else None
    return None


def describe(event: str, action: str | None) -> str:
    return f"{event}.{action}" if action else event


def matches(event: str, action: str | None, names: Iterable[str]) -> bool:
    return any(name in (WILDCARD, event, describe(event, action)) for name in names)
