"""Deliveries too large for SNS travel through S3 (the claim-check pattern), in the SNS Extended Client's format.

SNS carries at most 256 KiB per message, counting the message attributes; GitHub sends up to 25 MB. Over the limit
the relay writes the body to ``[relay] payload_bucket`` and publishes a pointer instead, spelled as AWS's SNS
Extended Client Library spells it, so that any consumer using AWS's own library (or its SQS counterpart) reads
hookbot's messages, and hookbot reads theirs:

- the message is the JSON array ``["software.amazon.payloadoffloading.PayloadS3Pointer",
  {"s3BucketName": BUCKET, "s3Key": KEY}]``;
- the Number attribute ``ExtendedPayloadSize`` is the body's size in bytes (the library's older spelling,
  ``SQSLargePayloadSize`` with ``com.amazon.sqs.javamessaging.MessageS3Pointer``, is read too);
- every other attribute (GitHub's three headers) stays on the message as it is.

The worker fetches the object and hands its bytes on exactly as if they had been the message, so GitHub's HMAC is
checked over the fetched bytes before anything else uses them. A pointer is followed only into the configured
bucket: a message naming another bucket is refused, so a publisher to the topic cannot make the worker read
whatever its role can reach.

Pure logic (the pointer format, the size rule) apart from two thin boto3 calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bot.delivery import Refusal
from bot.records import record

if TYPE_CHECKING:
    from bot.aws import AwsClients
    from bot.sns import SnsMessage

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SNS_MAX_MESSAGE_BYTES = 256 * 1024  # SNS's limit for a message and its attributes together


@record
class S3Pointer:
    """Where a delivery too big for SNS was put: the S3 object the message points at."""

    bucket: str
    key: str


def message_size(message: bytes, attributes: Mapping[str, Mapping[str, str]]) -> int:
    """What SNS counts against its limit: the message's bytes plus each attribute's name, type and value."""
    total = len(message)
    for name, attribute in attributes.items():
        total += len(name.encode()) + len(attribute.get("DataType", "").encode())
        total += len(attribute.get("StringValue", "").encode())
    return total


def fits_in_sns(message: bytes, attributes: Mapping[str, Mapping[str, str]]) -> bool:
    return message_size(message, attributes) <= SNS_MAX_MESSAGE_BYTES


def new_key() -> str:
    """A fresh object key, as the Extended Client makes them (a UUID): never derived from unauthenticated headers."""
    return str(uuid.uuid4())


def pointer_message(
    pointer: S3Pointer, size: int, attributes: Mapping[str, Mapping[str, str]]
) -> tuple[str, dict[str, Any]]:
    """The SNS message and attributes that stand for a body of ``size`` bytes stored at ``pointer``.

    ``json.dumps`` with its default separators: the text is the same the Extended Client publishes.
    """
    text = json.dumps([POINTER_CLASS, {"s3BucketName": pointer.bucket, "s3Key": pointer.key}])
    return text, {**attributes, SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(size)}}


def find_pointer(message: SnsMessage) -> S3Pointer | None:
    """The S3 pointer a message carries instead of its body; None for an ordinary message.

    A message with the size attribute must be a pointer: anything else is refused (400) rather than taken as a
    body, since the publisher said it is not one.
    """
    if SIZE_ATTRIBUTE not in message.attributes and LEGACY_SIZE_ATTRIBUTE not in message.attributes:
        return None
    try:
        document = json.loads(message.message)
    except ValueError:
        document = None
    if (
        isinstance(document, list)
        and len(document) == 2
        and document[0] in (POINTER_CLASS, LEGACY_POINTER_CLASS)
        and isinstance(document[1], dict)
        and isinstance(document[1].get("s3BucketName"), str)
        and isinstance(document[1].get("s3Key"), str)
        and document[1]["s3BucketName"]
        and document[1]["s3Key"]
    ):
        return S3Pointer(document[1]["s3BucketName"], document[1]["s3Key"])
    raise Refusal(400, f"SNS message has {SIZE_ATTRIBUTE} but is not an S3 pointer of the Extended Client")


class PayloadStore:
    """Reads and writes offloaded bodies in the one configured bucket."""

    def __init__(self, aws: AwsClients, bucket: str | None, *, max_bytes: int) -> None:
        self._aws = aws
        self.bucket = bucket
        self._max_bytes = max_bytes

    async def put(self, body: bytes) -> S3Pointer:
        if not self.bucket:
            raise RuntimeError("no [relay] payload_bucket configured")
        pointer = S3Pointer(self.bucket, new_key())
        await asyncio.to_thread(self._put, pointer, body)
        return pointer

    def _put(self, pointer: S3Pointer, body: bytes) -> None:
        self._aws.client("s3").put_object(Bucket=pointer.bucket, Key=pointer.key, Body=body)

    async def resolve(self, message: SnsMessage) -> SnsMessage:
        """``message`` with the body its pointer stands for in place of the pointer (unchanged if it has none).

        Raises Refusal: 403 for a pointer into another bucket than ``[relay] payload_bucket`` (or with none
        configured), 413 for an object over the body size limit, 400 for one that is not UTF-8 text, 502 when S3
        cannot give it (the record is retried, and in the end dead-lettered).
        """
        pointer = find_pointer(message)
        if pointer is None:
            return message
        if not self.bucket or pointer.bucket != self.bucket:
            raise Refusal(
                403,
                f"SNS message points into bucket {pointer.bucket!r}, not the configured [relay] payload_bucket"
                f" {self.bucket!r}; refused",
            )
        body = await asyncio.to_thread(self._get, pointer)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, f"s3://{pointer.bucket}/{pointer.key} is not UTF-8 text") from None
        attributes = {
            name: value
            for name, value in message.attributes.items()
            if name not in (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
        }
        return replace(message, message=text, attributes=attributes)

    def _get(self, pointer: S3Pointer) -> bytes:
        client = self._aws.client("s3")
        try:
            response = client.get_object(Bucket=pointer.bucket, Key=pointer.key)
        except Exception as exc:  # botocore's errors: NoSuchKey (expired after 14 days), access denied, network
            raise Refusal(502, f"cannot read s3://{pointer.bucket}/{pointer.key}: {exc}") from None
        size = int(response.get("ContentLength", 0))
        if size > self._max_bytes:
            response["Body"].close()
            raise Refusal(413, f"s3://{pointer.bucket}/{pointer.key} is {size} bytes, over the {self._max_bytes} limit")
        data: bytes = response["Body"].read(self._max_bytes + 1)
        if len(data) > self._max_bytes:
            raise Refusal(413, f"s3://{pointer.bucket}/{pointer.key} is over the {self._max_bytes} limit")
        return data
