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
    from bot.answers import Answer
    from bot.delivery import Delivery
    from bot.runtime import Runtime

log = logging.getLogger("hookbot.lambda")

Event = Mapping[str, Any]
Response = dict[str, Any]


# The scheduled recovery event (deploy/template.yaml's RecoverySchedule): {"hookbot": "redeliver", "every": "10m"}.
RECOVERY_EVENT = "redeliver"
DEFAULT_RECOVERY_PERIOD_SECONDS = 600.0

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

    def __init__(self, runtime: Runtime, *, refusal: str | None = None) -> None:
        """``refusal``: a setup fault found at the cold start (a de-dup table with the wrong key); every event is
        refused with it, so nothing is handled without de-duplication and the line is in every failure."""
        from bot.ingress import Ingress
        from bot.logs import RefusalLog

        self.runtime = runtime
        self.refusal = refusal
        self._context: object = None
        # A warm instance keeps its refusal log across invocations, so a flood of forged requests is summarised
        # instead of logged one by one, as on the server. No timer: each invocation has its own event loop.
        self.ingress = Ingress(runtime, self.dispatch, RefusalLog(log, timer=False))

    def __call__(self, event: object, context: object = None) -> Response:
        self._context = context
        return asyncio.run(self.handle(event))

    async def handle(self, event: object) -> Response:
        if self.refusal is not None:
            log.error("event refused: %s", self.refusal)
            if isinstance(event, Mapping) and is_http_event(event):
                from bot.answers import Answer

                return _answer(Answer(503, {"error": self.refusal}))
            raise RecordsFailed(self.refusal)
        try:
            if isinstance(event, Mapping):
                if event.get("hookbot") == RECOVERY_EVENT:
                    return await self.handle_recovery(event)
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

    async def handle_recovery(self, event: Mapping[str, Any]) -> Response:
        """The scheduled sweep: the same as `hookbot redeliver`, looking back two periods.

        The period is the event's ``every`` (the schedule's own rate), else ``[github] redeliver_every``, else
        10 minutes. A sweep that cannot run (no hooks configured, a bad period) logs why and fails nothing: a
        failed scheduled invocation would only be retried into the failed-deliveries queue, and the next
        schedule tries again anyway.
        """
        from bot.config_schema import ConfigError, parse_duration
        from bot.redeliver import redeliver

        runtime = self.runtime
        try:
            every_text = event.get("every")
            every = (
                parse_duration(str(every_text), "the recovery event's every")
                if every_text
                else runtime.settings.github.redeliver_every or DEFAULT_RECOVERY_PERIOD_SECONDS
            )
            report = await redeliver(runtime, 2 * every, dry_run=runtime.dispatcher.dry_run)
        except ConfigError as exc:
            log.warning("recovery sweep skipped: %s", exc)
            return {"recovery": "skipped", "reason": str(exc)}
        log.info(
            "recovery sweep: %d asked again, %d errors",
            len(report.redelivered),
            len(report.errors),
            extra={"fields": {"checked": report.checked, "look_back_seconds": 2 * every}},
        )
        return {
            "recovery": "done",
            "checked": report.checked,
            "redelivered": report.redelivered,
            "errors": report.errors,
        }

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
            result = await self.runtime.dispatcher.dispatch(delivery, claim_lifetime=claim_lifetime(self._context))
            status = "duplicate" if result.duplicate else "ok" if result.ok else "failed"
            summary.append({"delivery": delivery.delivery_id, "event": delivery.describe(), "status": status})
            if status == "failed":
                failed.append(delivery.delivery_id)
        if failed:
            raise RecordsFailed(f"handlers failed for {', '.join(failed)}; the event will be retried")
        return {"deliveries": summary}

    async def dispatch(self, delivery: Delivery) -> Answer:
        """What a Function URL does with a verified delivery: run the handlers now and answer with the outcome."""
        from bot.answers import dispatch_answer

        result = await self.runtime.dispatcher.dispatch(delivery, claim_lifetime=claim_lifetime(self._context))
        return dispatch_answer(delivery, result)

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


def build_entry(env: Mapping[str, str]) -> LambdaEntry:
    """The cold start: settings from ``env``, the Runtime, and the de-dup table's key schema checked once."""
    from bot.config import load_settings
    from bot.config_schema import ConfigError
    from bot.logs import setup_logging
    from bot.runtime import Runtime

    settings = load_settings(env)
    setup_logging(settings.log_format, settings.log_level or "info")
    runtime = Runtime.build(settings)
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

            setup_logging()  # JSON until the settings say otherwise: a config error is logged too
            _entry = build_entry(os.environ)
        return _entry


def handler(event: object, context: object) -> Response:
    """What Lambda calls (set the function's handler to ``bot.aws_lambda.handler``)."""
    return _default_entry()(event, context)
