"""The AWS Lambda entry point: ``bot.aws_lambda.handler(event, context)``.

One function takes every shape the chain sends it:

- SNS records (``EventSource: aws:sns``): the worker behind the topic. Lambda has already authenticated the
  invoker (the topic's invoke permission), so by default only the topic allow-list and the inner GitHub HMAC
  are checked; ``[sns] verify_in_lambda = true`` adds the full SNS signature check;
- S3 records (``eventSource: aws:s3``), and S3 notifications inside SNS: one ``s3`` delivery per record;
- Lambda Function URL and API Gateway HTTP events (payload versions 1.0 and 2.0) carrying a GitHub delivery:
  the ingress, checked exactly as ``POST /webhook`` checks, and answered with a ``statusCode``. With
  ``[relay] topic_arn`` set this is the relay that publishes to the topic.

A record that fails raises, so that SNS or S3 retries and then sends it to the dead-letter queue; a delivery
already handled is skipped. The Runtime (GitHub client, installation tokens, certificate cache, dedupe memory)
is built on the first invocation and reused by warm ones; each invocation runs in its own ``asyncio.run`` loop and
closes what is bound to that loop when it ends.

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
    from bot.runtime import Runtime

log = logging.getLogger("hookbot.lambda")

Event = Mapping[str, Any]
Response = dict[str, Any]


# A claim lapses this long after the invocation's own deadline: Lambda has killed the function by then, so a
# retry (SNS/Lambda's, or a redelivery) may take the work over instead of waiting out [dedupe] claim_timeout_seconds.
CLAIM_MARGIN_SECONDS = 5.0


def claim_lifetime(context: object) -> float | None:
    """Seconds the invocation has left plus the margin, from a Lambda context; None without one (tests, replay)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return max(0.0, float(remaining()) / 1000) + CLAIM_MARGIN_SECONDS


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


def _answer(status: int, document: Mapping[str, Any]) -> Response:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(document)}


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


class LambdaEntry:
    """The Lambda entry bound to one Runtime; the module-level :func:`handler` uses one built from the environment."""

    def __init__(self, runtime: Runtime, *, refusal: str | None = None) -> None:
        """``refusal``: a setup fault found at the cold start (a de-dup table with the wrong key); every event is
        refused with it, so nothing is handled without de-duplication and the line is in every failure."""
        self.runtime = runtime
        self.refusal = refusal
        self._context: object = None

    def __call__(self, event: Event, context: object = None) -> Response:
        self._context = context
        return asyncio.run(self.handle(event))

    async def handle(self, event: Event) -> Response:
        if self.refusal is not None:
            log.error("event refused: %s", self.refusal)
            if is_http_event(event):
                return _answer(503, {"error": self.refusal})
            raise RecordsFailed(self.refusal)
        try:
            if is_http_event(event):
                return await self.handle_http(event)
            sns_records = _records(event, "EventSource", "aws:sns")
            if sns_records is not None:
                return await self.handle_sns(sns_records)
            if _records(event, "eventSource", "aws:s3") is not None:
                from bot.s3_events import deliveries_from_s3_notification

                return await self.run(deliveries_from_s3_notification(dict(event), source="lambda-s3"))
            log.error("event refused: not SNS, S3 or an HTTP request", extra={"fields": {"keys": sorted(event)}})
            raise RecordsFailed("event is not an SNS, S3 or HTTP (Function URL / API Gateway) event")
        finally:
            await self.runtime.close()

    async def handle_sns(self, records: list[Mapping[str, Any]]) -> Response:
        """Check every record before acting on any: a forged record fails the invocation with nothing done."""
        from bot.github_webhook import WebhookError
        from bot.sns import NOTIFICATION, SnsError, parse_message
        from bot.sns_delivery import deliveries_from_notification
        from bot.sns_fetch import verified_message

        runtime = self.runtime
        deliveries: list[Delivery] = []
        for record in records:
            try:
                if runtime.settings.sns.verify_in_lambda:
                    message = await verified_message(record.get("Sns"), runtime.sns_verifier, runtime.sns_fetcher)
                else:
                    message = parse_message(record.get("Sns"))
                    runtime.sns_verifier.check_topic(message)
                if message.type != NOTIFICATION:
                    log.info("SNS %s ignored: Lambda subscriptions need no confirmation", message.type)
                    continue
                message = await runtime.payloads.resolve(message)  # a large delivery's body, fetched from S3
                deliveries += deliveries_from_notification(
                    message,
                    secrets=runtime.secrets,
                    require_github_signature=runtime.settings.sns.require_github_signature,
                    source="lambda-sns",
                )
            except (SnsError, WebhookError) as exc:
                log.warning(
                    "refused SNS record: %s",
                    exc.reason,
                    extra={"fields": {"status": exc.status, "subscription": record.get("EventSubscriptionArn")}},
                )
                raise RecordsFailed(f"SNS record refused ({exc.status}): {exc.reason}") from None
        return await self.run(deliveries)

    async def run(self, deliveries: list[Delivery]) -> Response:
        """Dispatch each delivery; raise after trying them all when any failed, so the event is retried whole
        and de-duplication skips the ones that succeeded."""
        summary: list[dict[str, Any]] = []
        failed: list[str] = []
        for delivery in deliveries:
            result = await self.runtime.dispatcher.dispatch(delivery, claim_lifetime=claim_lifetime(self._context))
            status = "duplicate" if result.duplicate else "ok" if result.ok else "failed"
            summary.append({"delivery": delivery.delivery_id, "event": delivery.describe(), "status": status})
            if status == "failed":
                failed.append(delivery.delivery_id)
        if failed:
            raise RecordsFailed(f"handlers failed for {', '.join(failed)}; the event will be retried")
        return {"deliveries": summary}

    async def handle_http(self, event: Event) -> Response:
        """A GitHub delivery over a Function URL / API Gateway: the same checks and status codes as /webhook."""
        from bot.github_webhook import WebhookError, delivery_from_github, verify_signature
        from bot.relay import RelayError

        runtime = self.runtime
        settings = runtime.settings
        headers = _headers(event)
        if _method(event) != "POST":
            return self._refuse(405, f"method {_method(event) or '?'} is not POST", headers)
        try:
            body = _body(event)
        except ValueError:  # binascii.Error, non-ASCII base64 text, or text that cannot be UTF-8 (lone surrogates)
            return self._refuse(400, "body is not valid base64 or UTF-8", headers)
        if len(body) > settings.server.max_body_bytes:
            return self._refuse(
                413, f"body of {len(body)} bytes is over the {settings.server.max_body_bytes} limit", headers
            )
        signature_256 = headers.get("x-hub-signature-256")
        try:
            verify_signature(
                body,
                signature_256=signature_256,
                signature_sha1=headers.get("x-hub-signature"),
                secrets=runtime.secrets,
                allow_sha1=settings.github.allow_sha1,
            )
            delivery = delivery_from_github(
                body,
                event=headers.get("x-github-event"),
                delivery_id=headers.get("x-github-delivery"),
                content_type=headers.get("content-type"),
                source="function-url",
            )
        except WebhookError as exc:
            return self._refuse(exc.status, exc.reason, headers)
        if delivery.event == "ping":
            return _answer(200, {"ok": True, "zen": delivery.payload.get("zen")})
        if runtime.relay is not None:
            try:
                message_id = await runtime.relay.publish(delivery, signature_256)
            except RelayError as exc:
                return self._refuse(exc.status, exc.reason, headers)
            if not settings.relay.also_handle:
                return _answer(
                    200, {"delivery": delivery.delivery_id, "status": "relayed", "sns_message_id": message_id}
                )
        result = await runtime.dispatcher.dispatch(delivery, claim_lifetime=claim_lifetime(self._context))
        if result.duplicate:
            return _answer(200, {"delivery": delivery.delivery_id, "status": "already handled"})
        if not result.ok:
            failed = [outcome.handler for outcome in result.outcomes if outcome.status == "failed"]
            return _answer(500, {"delivery": delivery.delivery_id, "status": "failed", "handlers": failed})
        return _answer(200, {"delivery": delivery.delivery_id, "status": "handled", "actions": result.actions})

    @staticmethod
    def _refuse(status: int, reason: str, headers: Mapping[str, str]) -> Response:
        log.warning(
            "refused delivery: %s",
            reason,
            extra={
                "fields": {
                    "status": status,
                    "event": headers.get("x-github-event"),
                    "github_delivery": headers.get("x-github-delivery"),
                }
            },
        )
        return _answer(status, {"error": reason})


_entry: LambdaEntry | None = None
_entry_lock = threading.Lock()


def build_entry(env: Mapping[str, str]) -> LambdaEntry:
    """The cold start: settings from ``env``, the Runtime, and the de-dup table's key schema checked once."""
    from bot.config import ConfigError, load_settings
    from bot.runtime import Runtime

    runtime = Runtime.build(load_settings(env))
    try:
        runtime.check_dedupe_table()
    except ConfigError as exc:
        log.error("refusing every event: %s", exc)
        return LambdaEntry(runtime, refusal=str(exc))
    return LambdaEntry(runtime)


def _default_entry() -> LambdaEntry:
    """Build the entry from the environment once per Lambda instance; warm invocations reuse it."""
    global _entry
    with _entry_lock:
        if _entry is None:
            from bot.logs import setup_logging

            setup_logging()
            _entry = build_entry(os.environ)
        return _entry


def handler(event: Event, context: object) -> Response:
    """What Lambda calls (set the function's handler to ``bot.aws_lambda.handler``)."""
    return _default_entry()(event, context)
