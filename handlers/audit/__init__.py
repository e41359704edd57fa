"""Keep a redacted record of every delivery, so an operator can answer "what did GitHub send us, and when".

The seed's SNS-triggered loggers "retain a full or partial copy of messages; watch for and elide sensitive
information": here the partial copy is the payload with the configured paths replaced by ``[redacted]``, written
to DynamoDB (with a TTL), to S3 (one object per delivery) or to local JSON-lines files. The record is written
whatever the other plugins do with the delivery, and in dry-run too: it is hookbot's own log, not an action on
GitHub. boto3 and file writes run in a thread, so a slow store never holds up the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gidgethub import sansio
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router

from bot.config import Section, Setting
from bot.context import HandlerContext
from bot.delivery import WILDCARD
from bot.plugins import NOT_SET_UP, NotSetUp

if TYPE_CHECKING:
    from handlers.audit.records import AuditConfig

router = Router()
needs_github = False  # it records deliveries; it never calls GitHub

SETTINGS = Section(
    "audit",
    (
        Setting("destination", "text", None, "`dynamodb://TABLE`, `s3://BUCKET/PREFIX/` or `file:///DIR/`"),
        Setting("redact", "list", (), "key paths replaced by `[redacted]` (`**.email`, `sender.*_url`)"),
        Setting("events", "list", ("*",), "which deliveries to record (event or event.action)"),
        Setting("ttl_days", "int", 90, "DynamoDB: how long a record is kept (the expires_at attribute)"),
    ),
)


def configure(section: Mapping[str, Any]) -> AuditConfig | NotSetUp:
    """No ``[audit]`` section: nothing to record, said without importing the recorder, which every start (a Lambda
    cold start above all) would otherwise pay for; any section is checked in full (records.configure)."""
    if not section:
        return NOT_SET_UP
    from handlers.audit import records

    return records.configure(section)


@router.register(WILDCARD)
async def record_delivery(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    from handlers.audit import records

    await records.record_delivery(event, gh, ctx)
