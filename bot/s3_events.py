"""S3 event notifications turned into Deliveries, one per record.

S3 percent-encodes object keys in notifications and writes a space as ``+``, so the key is decoded here once and
handlers see the real key. The event name is ``s3`` and the action is S3's own ``eventName``, e.g.
``ObjectCreated:Put``, so a plugin registers ``@router.register("s3")`` like any GitHub event.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import orjson

from bot.delivery import S3_EVENT, Delivery, Source


def is_s3_notification(document: Any) -> bool:
    records = document.get("Records") if isinstance(document, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(record, dict) and record.get("eventSource") == "aws:s3" for record in records)
    )


def delivery_from_s3_record(record: dict[str, Any], *, source: Source) -> Delivery:
    """One Delivery for one S3 record; its payload keeps the record and adds the decoded fields handlers need.

    The delivery id is S3's ``sequencer`` with bucket and key, which stays the same when SNS or Lambda deliver
    the same notification again, so de-duplication works for S3 events too.
    """
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name", "")
    obj = s3.get("object") or {}
    key = unquote_plus(obj.get("key", ""))
    payload = {
        "action": record.get("eventName", ""),
        "bucket": bucket,
        "key": key,
        "version_id": obj.get("versionId"),
        "size": obj.get("size"),
        "etag": obj.get("eTag"),
        "event_time": record.get("eventTime"),
        "region": record.get("awsRegion"),
        "record": record,
    }
    sequencer = obj.get("sequencer") or record.get("eventTime", "")
    delivery_id = f"s3:{bucket}/{key}@{obj.get('versionId') or ''}#{sequencer}"
    return Delivery(event=S3_EVENT, delivery_id=delivery_id, payload=payload, body=orjson.dumps(record), source=source)


def deliveries_from_s3_notification(document: dict[str, Any], *, source: Source) -> list[Delivery]:
    return [delivery_from_s3_record(record, source=source) for record in document.get("Records", [])]
