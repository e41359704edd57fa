"""The AWS Lambda entry point: ``bot.aws_lambda.handler(event, context)``.

One function takes every shape the chain sends it:

- SNS records (``EventSource: aws:sns``): the worker behind the topic. Lambda has already authenticated the
  invoker (the topic's invoke permission), so by default only the topic allow-list and the inner GitHub HMAC
  are checked; ``[sns] verify_in_lambda = true`` adds the full SNS signature check;
- S3 records (``eventSource: aws:s3``), and S3 notifications inside SNS: one ``s3`` delivery per record;
- Lambda Function URL and API Gateway HTTP events (payload versions 1.0 and 2.0) carrying a GitHub delivery:
  the ingress, checked exactly as ``POST /webhook`` checks, and answered with a ``statusCode``. With
  ``[relay] topic_arn`` set this is the relay that publishes to the topic.

Every check is the shared ingress pipeline's (bot/ingress.py), as at the server's doors. A record that fails
raises, so that SNS or S3 retries and then sends it to the dead-letter queue; a delivery already handled is
skipped; an event of no known shape (an array, a string, records of another source) is one logged refusal and
a normal return, since retrying cannot help it. The Runtime (GitHub client, installation tokens, certificate
cache, dedupe memory) is built on the first invocation and reused by warm ones; each invocation runs in its own
``asyncio.run`` loop and closes what is bound to that loop when it ends.

Importing this module costs next to nothing (only the standard library): aiohttp, gidgethub, cryptography and
boto3 load on the first invocation, and boto3 only when something publishes or a handler asks for a client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.delivery import Delivery
    from bot.ingress import Answer
    from bot.runtime import Runtime

log = logging.getLogger("hookbot.lambda")

Event = Mapping[str, Any]
Response = dict[str, Any]


class RecordsFailed(Exception):
    """Raised to make Lambda report the invocation as failed, so SNS/S3 retry it and then dead-letter it."""


def _headers(event: Event) -> dict[str, str]:
    """Request headers with lower-case names (API Gateway v1 keeps the client's case, v2 lower-cases them)."""
    raw = event.get("headers") or {}
    return {str(name).lower(): str(value) for name, value in raw.items()} if isinstance(raw, Mapping) else {}


def _method(event: Event) -> str:
    http = (event.get("requestContext") or {}).get("http")
    method = http.get("method") if isinstance(http, Mapping) else event.get("httpMethod")
    return str(method or "").upper()


def _body(event: Event) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return str(body).encode("utf-8")


def _answer(answer: Answer) -> Response:
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": "application/json", **answer.headers},
        "body": json.dumps(answer.document),
    }


def _source_ip(event: Event) -> str | None:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    identity = context.get("identity") if isinstance(context, Mapping) else None
    for part in (http, identity):
        if isinstance(part, Mapping) and isinstance(part.get("sourceIp"), str):
            return str(part["sourceIp"])
    return None


def _records(event: Event, source_key: str, source: str) -> list[Mapping[str, Any]] | None:
    records = event.get("Records")
    if (
        isinstance(records, list)
        and records
        and all(isinstance(record, Mapping) and record.get(source_key) == source for record in records)
    ):
        return records
    return None


def is_http_event(event: Event) -> bool:
    return isinstance(event.get("requestContext"), Mapping) and ("headers" in event or "body" in event)


def _shape(event: object) -> str:
    """A few words on an event of no known shape, for its refusal line (never the event itself: it may be big)."""
    if isinstance(event, Mapping):
        return "an object with keys " + ", ".join(sorted(str(key) for key in event)[:10])
    return f"a JSON {type(event).__name__}"


class LambdaEntry:
    """The Lambda entry bound to one Runtime; the module-level :func:`handler` uses one built from the environment.

    Every check is the shared ingress pipeline's (bot/ingress.py); this class only translates Lambda's event
    shapes into headers and bodies and the pipeline's answers back.
    """

    def __init__(self, runtime: Runtime) -> None:
        from bot.ingress import Ingress
        from bot.logs import RefusalLog

        self.runtime = runtime
        # A warm instance keeps its refusal log across invocations, so a flood of forged requests is summarised
        # instead of logged one by one, as on the server. No timer: each invocation has its own event loop.
        self.ingress = Ingress(runtime, self.dispatch, RefusalLog(log, timer=False))

    def __call__(self, event: object, context: object = None) -> Response:
        return asyncio.run(self.handle(event))

    async def handle(self, event: object) -> Response:
        try:
            if isinstance(event, Mapping):
                if is_http_event(event):
                    return await self.handle_http(event)
                sns_records = _records(event, "EventSource", "aws:sns")
                if sns_records is not None:
                    return await self.handle_sns(sns_records)
                if _records(event, "eventSource", "aws:s3") is not None:
                    from bot.s3_events import deliveries_from_s3_notification

                    return await self.run(deliveries_from_s3_notification(dict(event), source="lambda-s3"))
            # Retrying cannot make an unknown shape known: one line, and a normal return (no retry, no traceback).
            reason = f"event is not SNS records, S3 records or an HTTP request: {_shape(event)}"
            self.ingress.refusals.refused(400, reason, None, {"status": 400})
            return {"refused": reason}
        finally:
            self.ingress.refusals.flush_if_due()
            await self.runtime.close()

    async def handle_sns(self, records: list[Mapping[str, Any]]) -> Response:
        """Check every record before acting on any: a forged record fails the invocation with nothing done."""
        from bot.ingress import Refusal

        deliveries: list[Delivery] = []
        for record in records:
            try:
                deliveries += await self.ingress.sns_record(record.get("Sns"))
            except Refusal as refusal:
                self.ingress.refusals.refused(
                    refusal.status,
                    f"SNS record: {refusal.reason}",
                    None,
                    {"status": refusal.status, "subscription": record.get("EventSubscriptionArn")},
                )
                raise RecordsFailed(f"SNS record refused ({refusal.status}): {refusal.reason}") from None
        return await self.run(deliveries)

    async def run(self, deliveries: list[Delivery]) -> Response:
        """Dispatch each delivery; raise after trying them all when any failed, so the event is retried whole
        and de-duplication skips the ones that succeeded."""
        summary: list[dict[str, Any]] = []
        failed: list[str] = []
        for delivery in deliveries:
            result = await self.runtime.dispatcher.dispatch(delivery)
            status = "duplicate" if result.duplicate else "ok" if result.ok else "failed"
            summary.append({"delivery": delivery.delivery_id, "event": delivery.describe(), "status": status})
            if status == "failed":
                failed.append(delivery.delivery_id)
        if failed:
            raise RecordsFailed(f"handlers failed for {', '.join(failed)}; the event will be retried")
        return {"deliveries": summary}

    async def dispatch(self, delivery: Delivery) -> Answer:
        """What a Function URL does with a verified delivery: run the handlers now and answer with the outcome."""
        from bot.ingress import dispatch_answer

        return dispatch_answer(delivery, await self.runtime.dispatcher.dispatch(delivery))

    async def handle_http(self, event: Event) -> Response:
        """A GitHub delivery over a Function URL / API Gateway: the same pipeline as ``POST /webhook``."""
        from bot.ingress import Refusal

        ingress = self.ingress
        headers = _headers(event)
        method = _method(event)
        remote = _source_ip(event)
        try:
            if method != "POST":
                raise Refusal(405, f"method {method or '?'} is not POST")
            body = _body(event)
        except ValueError:  # binascii.Error, non-ASCII base64 text, or text that cannot be UTF-8 (lone surrogates)
            return _answer(ingress.refuse(Refusal(400, "body is not valid base64 or UTF-8"), headers, remote))
        except Refusal as refusal:
            return _answer(ingress.refuse(refusal, headers, remote))
        return _answer(await ingress.github(headers, body, source="function-url", remote=remote))


_entry: LambdaEntry | None = None
_entry_lock = threading.Lock()


def _default_entry() -> LambdaEntry:
    """Build the Runtime from the environment once per Lambda instance; warm invocations reuse it."""
    global _entry
    with _entry_lock:
        if _entry is None:
            from bot.config import load_settings
            from bot.logs import setup_logging
            from bot.runtime import Runtime

            setup_logging()  # JSON until the settings say otherwise: a config error is logged too
            settings = load_settings(os.environ)
            setup_logging(settings.log_format, settings.log_level or "info")
            _entry = LambdaEntry(Runtime.build(settings))
        return _entry


def handler(event: object, context: object) -> Response:
    """What Lambda calls (set the function's handler to ``bot.aws_lambda.handler``)."""
    return _default_entry()(event, context)
