"""An SNS Notification turned into Deliveries: pure logic shared by ``POST /sns`` and the Lambda entry.

A Notification carries one of three things:

- a GitHub delivery as the relay publishes it: ``Message`` is GitHub's body exactly, and the String message
  attributes ``X-GitHub-Event``, ``X-GitHub-Delivery`` and ``X-Hub-Signature-256`` are GitHub's headers, so the
  HMAC is checked here end to end (required unless ``[sns] require_github_signature = false``). Message
  attributes are not covered by the SNS signature; the HMAC is what makes the event name and id trustworthy;
- a legacy GitHub message without attributes (GitHub's old "Amazon SNS" service): accepted only when
  ``require_github_signature`` is switched off, on the SNS signature alone (or, in Lambda, the invoke), its
  event told from the payload (bot.github_events) or refused as ambiguous;
- an S3 event notification: one Delivery per record (see :mod:`bot.s3_events`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson

from bot.delivery import Delivery, Refusal, Source
from bot.github_events import event_from_payload
from bot.github_webhook import delivery_from_github, stored_body_type, verify_signature
from bot.s3_events import deliveries_from_s3_notification, is_s3_notification
from bot.sns import NOTIFICATION, SnsMessage

EVENT_ATTRIBUTE = "X-GitHub-Event"
DELIVERY_ATTRIBUTE = "X-GitHub-Delivery"
SIGNATURE_ATTRIBUTE = "X-Hub-Signature-256"


def deliveries_from_notification(
    message: SnsMessage,
    *,
    secrets: Sequence[bytes],
    require_github_signature: bool,
    source: Source,
) -> list[Delivery]:
    """The Deliveries an SNS Notification (already SNS-verified, or from Lambda's trusted invoke) carries.

    Raises :class:`Refusal`: 401 for a GitHub HMAC that fails or is required and missing, 400 for a Message
    that is none of the three shapes. An S3 test event (sent when a bucket's notifications are set up) is
    an empty list: nothing to do.
    """
    if message.type != NOTIFICATION:
        raise Refusal(400, f"SNS {message.type} is not a Notification")
    body = message.message.encode("utf-8")
    attributes = message.attributes
    if EVENT_ATTRIBUTE in attributes or SIGNATURE_ATTRIBUTE in attributes:
        signature = attributes.get(SIGNATURE_ATTRIBUTE)
        if signature or require_github_signature:
            verify_signature(body, signature_256=signature, signature_sha1=None, secrets=secrets)
        delivery = delivery_from_github(
            body,
            event=attributes.get(EVENT_ATTRIBUTE),
            delivery_id=attributes.get(DELIVERY_ATTRIBUTE),
            content_type=stored_body_type(body),
            source=source,
        )
        return [dataclasses.replace(delivery, sns_message_id=message.message_id)]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refusal(400, "SNS Message is not JSON: neither a GitHub delivery nor an S3 notification") from None
    if isinstance(document, dict) and document.get("Event") == "s3:TestEvent":
        return []
    if is_s3_notification(document):
        return deliveries_from_s3_notification(document, source=source)
    if not isinstance(document, dict):
        raise Refusal(400, "SNS Message is JSON but not an object")
    if require_github_signature:
        raise Refusal(
            401,
            "SNS Message has no X-Hub-Signature-256 attribute and [sns] require_github_signature is true "
            "(HOOKBOT_REQUIRE_GITHUB_SIGNATURE): only a message the GitHub HMAC covers can act",
        )
    event = event_from_payload(document)
    if event is None:
        raise Refusal(
            400, "SNS Message has no X-GitHub-Event attribute and its payload's event is unknown or ambiguous"
        )
    delivery_id = f"sns-{message.message_id}"
    return [Delivery(event=event, delivery_id=delivery_id, payload=document, body=body, source=source)]
