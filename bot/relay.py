"""The relay: the ingress end of the SNS chain (GitHub no longer publishes to SNS itself).

With ``[relay] topic_arn`` set, a GitHub delivery that passed the HMAC check is published to that topic exactly
as GitHub sent it: ``Message`` is the body, and GitHub's three headers travel as String message attributes, so
the worker behind the topic checks the same HMAC again (see :mod:`bot.sns_delivery`). A forged delivery never
gets here: the ingress refuses it with 401 first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from bot.aws import AwsClients
from bot.delivery import Delivery, Refusal
from bot.github_webhook import sign
from bot.sns_delivery import DELIVERY_ATTRIBUTE, EVENT_ATTRIBUTE, SIGNATURE_ATTRIBUTE

log = logging.getLogger("hookbot.relay")

SNS_MAX_MESSAGE_BYTES = 256 * 1024  # SNS's limit for a message and its attributes together



def message_attributes(delivery: Delivery, signature_256: str) -> dict[str, dict[str, str]]:
    return {
        EVENT_ATTRIBUTE: {"DataType": "String", "StringValue": delivery.event},
        DELIVERY_ATTRIBUTE: {"DataType": "String", "StringValue": delivery.delivery_id},
        SIGNATURE_ATTRIBUTE: {"DataType": "String", "StringValue": signature_256},
    }


class Relay:
    """Publishes verified deliveries to one SNS topic through boto3, off the event loop."""

    def __init__(self, topic_arn: str, aws: AwsClients, *, secrets: Sequence[bytes]) -> None:
        self.topic_arn = topic_arn
        self._aws = aws
        self._secrets = secrets

    async def publish(self, delivery: Delivery, signature_256: str | None) -> str:
        """Publish ``delivery``; returns the SNS MessageId.

        ``signature_256`` is GitHub's own header. A delivery accepted on a sha1 signature (old GitHub
        Enterprise, opted in) has none, so it is signed here with the current secret: the body was verified, and
        the worker shares the secret.
        """
        try:
            text = delivery.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, "body is not UTF-8 text, so SNS cannot carry it") from None
        if len(delivery.body) > SNS_MAX_MESSAGE_BYTES - 1024:
            raise Refusal(413, f"body of {len(delivery.body)} bytes is over what an SNS message can carry (256 KiB)")
        signature = signature_256 or sign(delivery.body, self._secrets[0])
        try:
            response = await asyncio.to_thread(self._publish, text, message_attributes(delivery, signature))
        except Exception as exc:  # botocore's errors are many classes; any of them means "not published"
            # The detail (topic and account ARNs, IAM wording) stays in hookbot's own log: the answer ends up in
            # GitHub's delivery log, which everyone with access to the webhook's settings can read.
            log.error(
                "publishing delivery %s to %s failed: %s",
                delivery.delivery_id,
                self.topic_arn,
                exc,
                extra={"fields": {"topic": self.topic_arn, "event": delivery.event}},
            )
            raise Refusal(502, "publishing the delivery failed; hookbot's log has the detail") from None
        message_id = str(response["MessageId"])
        log.info(
            "relayed delivery to SNS",
            extra={"fields": {"topic": self.topic_arn, "sns_message_id": message_id, "event": delivery.event}},
        )
        return message_id

    def _publish(self, text: str, attributes: dict[str, dict[str, str]]) -> dict[str, Any]:
        # In the worker thread: making the first client imports boto3, which must not stall the event loop.
        response: dict[str, Any] = self._aws.client("sns").publish(
            TopicArn=self.topic_arn, Message=text, MessageAttributes=attributes
        )
        return response
