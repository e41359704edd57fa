"""Keep a redacted record of every delivery, so an operator can answer "what did GitHub send us, and when".

The seed's SNS-triggered loggers "retain a full or partial copy of messages; watch for and elide sensitive
information": here the partial copy is the payload with the configured paths replaced by ``[redacted]`` (keys in
any case) and, in every string value, whatever looks like a GitHub or AWS credential or an e-mail address, written
to DynamoDB (with a TTL), to S3 (one object per delivery) or to local JSON-lines files. The record is written
whatever the other plugins do with the delivery, and in dry-run too: it is hookbot's own log, not an action on
GitHub. boto3 and file writes run in a thread, so a slow store never holds up the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.plugin import WILDCARD, Context, Event, GitHubAPI, Router, Section, Setting, Setup

if TYPE_CHECKING:
    from handlers.audit.records import AuditConfig

router = Router()
needs_github = False  # it records deliveries; it never calls GitHub

SETTINGS = Section(
    "audit",
    (
        Setting("destination", "text", None, "`dynamodb://TABLE`, `s3://BUCKET/PREFIX/` or `file:///DIR/`"),
        Setting("redact", "list", (), "key paths replaced by `[redacted]` (`**.email`, `sender.*_url`), any case"),
        Setting(
            "redact_values",
            "bool",
            True,
            "also replace e-mail addresses inside values (credentials inside values always are)",
        ),
        Setting("events", "list", ("*",), "which deliveries to record (event or event.action)"),
        Setting("ttl_days", "int", 90, "DynamoDB: how long a record is kept (the expires_at attribute)"),
    ),
)


def setup(plugin: Setup) -> AuditConfig | None:
    """No ``[audit]`` section: nothing to record, said without importing the recorder, which every start (a Lambda
    cold start above all) would otherwise pay for; any section is checked in full (records.configure)."""
    if not plugin.section:
        return None
    from handlers.audit import records

    return records.configure(plugin.section)


def wants(config: AuditConfig, event: Event) -> bool:
    """Only the events ``[audit] events`` names: a delivery nobody else wants either is then answered at the door."""
    return config.destination is not None and event.matches(config.events)


@router.register(WILDCARD)
async def record_delivery(event: Event, gh: GitHubAPI, ctx: Context[AuditConfig]) -> None:
    from handlers.audit import records

    await records.record_delivery(event, gh, ctx)
