"""`hookbot dlq replay`: run the deliveries parked in the stack's failed-deliveries queue again.

Two shapes land in that queue (deploy/template.yaml):

- **an SNS subscription's redriven message**: SNS could not hand the message to the worker at all; the SQS body is
  the SNS envelope (``Type``, ``MessageId``, ``TopicArn``, ``Message``, ``MessageAttributes``, ...), the same
  document an SQS subscription receives;
- **a Lambda on-failure destination record**: the worker failed after Lambda's retries; the SQS body is
  ``{"version": "1.0", "requestContext": {...}, "requestPayload": EVENT, "responseContext": {...}, ...}``
  where ``requestPayload`` is the event the worker got (SNS records, S3 records, or a scheduled recovery event).

Each becomes the event the worker would have got and goes through the worker's own entry (:class:`LambdaEntry`):
the same topic allow-list, S3 pointer rule, GitHub HMAC, de-duplication and handlers. A message is deleted only
after its event succeeded; otherwise it stays in the queue (visible again at once) with its reason printed.
Pure logic (telling the shapes apart) apart from the SQS calls, which run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.aws import AwsClients
from bot.aws_lambda import LambdaEntry, RecordsFailed

SNS_REDRIVE = "sns-redrive"
LAMBDA_DESTINATION = "lambda-destination"
VISIBILITY_SECONDS = 300  # a message being replayed is hidden this long from other readers of the queue


class NotADeadLetter(ValueError):
    """The message is neither shape; it is kept and reported."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    shape: str
    event: Mapping[str, Any]


def dead_letter(body: str) -> DeadLetter:
    """The worker event a failed-deliveries message stands for."""
    try:
        document = json.loads(body)
    except ValueError:
        raise NotADeadLetter("body is not JSON") from None
    if not isinstance(document, dict):
        raise NotADeadLetter("body is not a JSON object")
    payload = document.get("requestPayload")
    if isinstance(payload, dict) and isinstance(document.get("requestContext"), dict):
        return DeadLetter(LAMBDA_DESTINATION, payload)
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        record = {
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": f"{document.get('TopicArn')}:dlq-replay",
            "Sns": _lambda_spelling(document),
        }
        return DeadLetter(SNS_REDRIVE, {"Records": [record]})
    raise NotADeadLetter("neither an SNS message nor a Lambda on-failure record")


def _lambda_spelling(document: Mapping[str, Any]) -> dict[str, Any]:
    """An SNS envelope as a Lambda record's ``Sns`` object spells it (``SigningCertUrl``, ``UnsubscribeUrl``)."""
    sns = {k: v for k, v in document.items() if k not in ("SigningCertURL", "UnsubscribeURL")}
    sns["SigningCertUrl"] = document.get("SigningCertURL", "")
    sns["UnsubscribeUrl"] = document.get("UnsubscribeURL", "")
    sns.setdefault("Subject", None)
    sns.setdefault("MessageAttributes", {})
    return sns


@dataclass(slots=True)
class ReplayReport:
    succeeded: int = 0
    failed: int = 0


async def replay(
    entry: LambdaEntry,
    aws: AwsClients,
    queue_url: str,
    *,
    max_messages: int | None,
    keep_all: bool,
    say: Callable[[str], None],
) -> ReplayReport:
    """Replay up to ``max_messages`` messages; ``keep_all`` (``--dry-run``) deletes none."""
    report = ReplayReport()
    sqs = aws.client("sqs")
    seen = 0
    kept: list[str] = []  # receipt handles: hidden while this run lasts (so it reads each once), then released
    while max_messages is None or seen < max_messages:
        batch = min(10, max_messages - seen) if max_messages is not None else 10
        answer = await asyncio.to_thread(
            sqs.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch,
            WaitTimeSeconds=1,
            VisibilityTimeout=VISIBILITY_SECONDS,
        )
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen += 1
            ok, line = await _replay_one(entry, message.get("Body", ""))
            if ok:
                report.succeeded += 1
            else:
                report.failed += 1
            message_id = message.get("MessageId", "?")
            if ok and not keep_all:
                await asyncio.to_thread(sqs.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                say(f"{message_id}  {line}  deleted")
            else:
                kept.append(message["ReceiptHandle"])
                say(f"{message_id}  {line}  kept")
    for handle in kept:  # visible again at once, for the next replay (or another reader of the queue)
        await asyncio.to_thread(
            sqs.change_message_visibility, QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    return report


async def _replay_one(entry: LambdaEntry, body: str) -> tuple[bool, str]:
    try:
        letter = dead_letter(body)
    except NotADeadLetter as exc:
        return False, f"unreadable: {exc}"
    try:
        result = await entry.handle(letter.event)
    except RecordsFailed as exc:
        return False, f"{letter.shape}  failed: {exc}"
    if "refused" in result:  # the entry's answer to an event of no known shape
        return False, f"{letter.shape}  refused: {result['refused']}"
    deliveries = result.get("deliveries", [])
    summary = ", ".join(f"{d['delivery']} {d['event']} {d['status']}" for d in deliveries) or "nothing to do"
    return True, f"{letter.shape}  {summary}"
