"""The container's HTTP ingress: a thin aiohttp adapter over the pure checks in bot.github_webhook.

It verifies, builds a Delivery, hands it to the inbox and answers at once; it holds no business logic.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Coroutine, Mapping

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import __version__
from bot.delivery import Delivery
from bot.dispatch import DispatchResult
from bot.github_webhook import WebhookError, delivery_from_github, verify_signature
from bot.inbox import Inbox, JournalInbox, Processor, journal_path
from bot.logs import RefusalLog
from bot.metrics import DELIVERIES, HANDLER_SECONDS, INBOX_PENDING, REGISTRY
from bot.relay import RelayError
from bot.runtime import Runtime
from bot.sns import SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION, SnsError
from bot.sns_delivery import deliveries_from_notification
from bot.sns_fetch import verified_message

log = logging.getLogger("hookbot.server")

RUNTIME = web.AppKey("runtime", Runtime)
INBOX = web.AppKey("inbox", Inbox)
STARTED = web.AppKey("started", float)
REFUSALS = web.AppKey("refusals", RefusalLog)
RETRY_AFTER_SECONDS = "5"
SIGNATURE_256 = re.compile(r"sha256=[0-9a-fA-F]{64}")


def json_answer(data: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer encoded by orjson: aiohttp's json_response uses the stdlib encoder, twice the cost per answer."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def refuse(status: int, reason: str, request: web.Request) -> web.Response:
    """One log line (rate-limited under a flood) and a short plain answer for every refusal.

    Headers of a refused request are unverified, so they are truncated in the log and kept out of metric labels
    (an attacker choosing label values could grow the metrics registry without bound).
    """
    request.app[REFUSALS].refused(
        status,
        reason,
        request.remote,
        {
            "status": status,
            "remote": request.remote,
            "event": (request.headers.get("X-GitHub-Event") or "")[:64] or None,
            "github_delivery": (request.headers.get("X-GitHub-Delivery") or "")[:64] or None,
        },
    )
    DELIVERIES.labels("unverified", f"refused-{status}").inc()
    return json_answer({"error": reason}, status=status)


async def receive_webhook(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    if request.content_length is not None and request.content_length > settings.server.max_body_bytes:
        return refuse(
            413, f"body of {request.content_length} bytes is over the {settings.server.max_body_bytes} limit", request
        )
    signature_256 = request.headers.get("X-Hub-Signature-256")
    signature_sha1 = request.headers.get("X-Hub-Signature")
    if not signature_256 and not signature_sha1:
        return refuse(401, "X-Hub-Signature-256 header is missing", request)
    if signature_256 and not SIGNATURE_256.fullmatch(signature_256.strip()):
        # Refused before the body is read: a forged flood costs no reading, hashing or parsing.
        return refuse(401, "X-Hub-Signature-256 does not match: it is not sha256=<64 hex digits>", request)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, f"body is over the {settings.server.max_body_bytes} byte limit", request)
    try:
        verify_signature(
            body,
            signature_256=signature_256,
            signature_sha1=signature_sha1,
            secrets=runtime.secrets,
            allow_sha1=settings.github.allow_sha1,
        )
        delivery = delivery_from_github(
            body,
            event=request.headers.get("X-GitHub-Event"),
            delivery_id=request.headers.get("X-GitHub-Delivery"),
            content_type=request.headers.get("Content-Type"),
            source="github-http",
        )
    except WebhookError as exc:
        return refuse(exc.status, exc.reason, request)
    return await relay_or_accept(request, delivery, signature_256)


async def relay_or_accept(request: web.Request, delivery: Delivery, signature_256: str | None) -> web.Response:
    """With ``[relay] topic_arn``, publish the verified delivery to SNS instead of (or besides) handling it."""
    runtime = request.app[RUNTIME]
    if runtime.relay is None or delivery.event == "ping":
        return await accept(request, delivery)
    try:
        message_id = await runtime.relay.publish(delivery, signature_256)
    except RelayError as exc:
        return refuse(exc.status, exc.reason, request)
    DELIVERIES.labels(delivery.event, "relayed").inc()
    if runtime.settings.relay.also_handle:
        return await accept(request, delivery)
    return json_answer({"delivery": delivery.delivery_id, "status": "relayed", "sns_message_id": message_id})


async def receive_sns(request: web.Request) -> web.Response:
    """SNS HTTP(S) subscription messages: verified in full, then confirmed, logged or accepted as deliveries."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    if request.content_length is not None and request.content_length > settings.server.max_body_bytes:
        return refuse(413, f"SNS body of {request.content_length} bytes is over the limit", request)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, f"SNS body is over the {settings.server.max_body_bytes} byte limit", request)
    try:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SnsError(400, "SNS body is not JSON") from None
        message = await verified_message(document, runtime.sns_verifier, runtime.sns_fetcher)
        if message.type == SUBSCRIPTION_CONFIRMATION:
            await runtime.sns_fetcher.confirm_subscription(message)
            log.info("confirmed SNS subscription", extra={"fields": {"topic": message.topic_arn}})
            return json_answer({"status": "subscribed", "topic": message.topic_arn})
        if message.type == UNSUBSCRIBE_CONFIRMATION:
            log.info("SNS unsubscribed this endpoint; not acted on", extra={"fields": {"topic": message.topic_arn}})
            return json_answer({"status": "noted", "topic": message.topic_arn})
        deliveries = deliveries_from_notification(
            message,
            secrets=runtime.secrets,
            require_github_signature=settings.sns.require_github_signature,
            source="sns-http",
        )
    except (SnsError, WebhookError) as exc:
        return refuse(exc.status, exc.reason, request)
    answers = [await accept(request, delivery) for delivery in deliveries]
    # SNS retries anything but 2xx: one 503 asks for the whole message again, and dedupe skips what was taken.
    busy = [answer for answer in answers if answer.status == 503]
    if busy or len(answers) == 1:
        return (busy or answers)[0]
    return json_answer({"deliveries": [d.delivery_id for d in deliveries], "status": "accepted"}, status=202)


async def accept(request: web.Request, delivery: Delivery) -> web.Response:
    """Answer a verified delivery: 200 for ping and repeats, 202 once journaled, 503 when the inbox is full.

    Repeats are told by the journal, which remembers finished deliveries across restarts, inside the same
    group commit that stores new ones; a shared dedupe table is consulted by the worker's claim, off this path.
    """
    inbox = request.app[INBOX]
    if delivery.event == "ping":
        DELIVERIES.labels("ping", "pong").inc()
        fields = {
            "delivery": delivery.delivery_id,
            "event": "ping",
            "repository": delivery.repository,
            "outcome": "pong",
            "hook": hook_id(delivery),
        }
        log.info("delivery pong", extra={"fields": fields})
        return json_answer({"ok": True, "zen": delivery.payload.get("zen")})
    admission = await inbox.submit(delivery)
    if admission == "busy":
        DELIVERIES.labels(delivery.event, "refused-503").inc()
        log.warning("inbox full or shutting down (%d pending); asking the sender to retry later", inbox.pending)
        return json_answer({"error": "busy, retry later"}, status=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
    if admission == "duplicate":
        DELIVERIES.labels(delivery.event, "duplicate").inc()
        log.info("delivery %s was already handled", delivery.delivery_id)
        return json_answer({"delivery": delivery.delivery_id, "status": "already handled"})
    DELIVERIES.labels(delivery.event, "accepted").inc()
    return json_answer({"delivery": delivery.delivery_id, "status": "accepted"}, status=202)


def hook_id(delivery: Delivery) -> object:
    hook = delivery.payload.get("hook")
    return hook.get("id") if isinstance(hook, dict) else None


async def healthz(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    return json_answer(
        {
            "status": "ok",
            "version": __version__,
            "pending": inbox.pending,
            "uptime_seconds": round(time.monotonic() - request.app[STARTED], 1),
            "dry_run": request.app[RUNTIME].dispatcher.dry_run,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    # Read here, at scrape time, rather than updated by the inbox on every delivery.
    INBOX_PENDING.set(request.app[INBOX].pending)
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_processor(runtime: Runtime) -> Processor:
    """What an inbox worker does with a delivery: dispatch it and record each handler's time."""

    async def process(delivery: Delivery) -> DispatchResult:
        result = await runtime.dispatcher.dispatch(delivery)
        for outcome in result.outcomes:
            if outcome.status != "skipped":  # a plugin with nothing to do for this event took no time
                HANDLER_SECONDS.labels(outcome.handler, outcome.status).observe(outcome.ms / 1000)
        return result

    return process


def create_app(runtime: Runtime, inbox: Inbox | None = None) -> web.Application:
    settings = runtime.settings
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    app[RUNTIME] = runtime
    app[INBOX] = inbox or JournalInbox(
        journal_path(settings.state_dir),
        make_processor(runtime),
        capacity=settings.server.queue_size,
        workers=settings.server.workers,
        max_attempts=settings.server.max_attempts,
        retry_base_seconds=settings.server.retry_base_seconds,
    )
    app[STARTED] = time.monotonic()
    app[REFUSALS] = RefusalLog(log)
    app.router.add_post("/webhook", receive_webhook)
    app.router.add_post("/sns", receive_sns)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[INBOX].start()
        background = [asyncio.create_task(task) for task in background_tasks(runtime)]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        app[REFUSALS].flush()
        await runtime.close()

    async def drain(app: web.Application) -> None:
        # on_shutdown runs once the listening socket is closed (SIGTERM/SIGINT): from here the inbox answers
        # "busy" (503) to requests still arriving on open connections, running handlers get the grace period,
        # and whatever is still queued stays in the journal for the next start.
        await app[INBOX].stop(grace=settings.server.shutdown_grace_seconds)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(drain)
    return app


def background_tasks(runtime: Runtime) -> list[Coroutine[object, object, None]]:
    """Periodic jobs of a running server: the missed-delivery sweep when ``[github] redeliver_every`` is set."""
    every = runtime.settings.github.redeliver_every
    if not every:
        return []
    from bot.redeliver import redeliver_periodically

    return [redeliver_periodically(runtime, every)]
