"""The container's HTTP doors: a thin aiohttp adapter over the shared ingress pipeline (bot/ingress.py).

It turns a request into headers and a body, lets the pipeline judge them (the headers before the body is
read), journals what is accepted and answers at once; it holds no business logic.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Mapping

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import __version__
from bot.answers import RETRY_AFTER_SECONDS, Answer, admission_answer
from bot.body_budget import BodyBudget, answer_and_close
from bot.body_budget import read_body as read_bounded_body
from bot.connection_guard import no_route, tracking_busy_connections
from bot.delivery import Delivery, Refusal
from bot.dispatch import DispatchResult
from bot.inbox import Inbox, JournalInbox, Processor, journal_path
from bot.ingress import Accept, Ingress
from bot.logs import RefusalLog
from bot.metrics import HANDLER_SECONDS, INBOX_PENDING, REGISTRY
from bot.runtime import Runtime

log = logging.getLogger("hookbot.server")

RUNTIME = web.AppKey("runtime", Runtime)
INBOX = web.AppKey("inbox", Inbox)
STARTED = web.AppKey("started", float)
INGRESS = web.AppKey("ingress", Ingress)
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


def json_answer(data: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer encoded by orjson: aiohttp's json_response uses the stdlib encoder, twice the cost per answer."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def respond(answer: Answer) -> web.Response:
    return json_answer(answer.document, status=answer.status, headers=answer.headers or None)


async def read_body(request: web.Request) -> bytes | web.Response:
    """The body as sent, bounded in size, time and (across connections) memory (bot.body_budget.read_body).

    Else the refusal, already sent: 413 when it turns out over the limit (no or a false Content-Length), 408
    past the read deadline, 503 when too many request bytes are buffered at once. The rest of such a body is
    never read, so the connection is closed after the answer.
    """
    server = request.app[RUNTIME].settings.server
    try:
        return await read_bounded_body(
            request, request.app[BODY_BUDGET], max_bytes=server.max_body_bytes, deadline=server.read_deadline_seconds
        )
    except Refusal as refusal:
        answer = request.app[INGRESS].refuse(refusal, request.headers, request.remote)
        return await answer_and_close(request, respond(answer))


async def receive_webhook(request: web.Request) -> web.Response:
    """POST /webhook: the headers are judged before the body is read, then the shared pipeline decides."""
    ingress = request.app[INGRESS]
    headers, remote = request.headers, request.remote
    refused = ingress.precheck_github(headers, request.content_length, remote)
    if refused is not None:
        return respond(refused)
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    return respond(await ingress.github(headers, body, source="github-http", remote=remote, headers_checked=True))


async def receive_sns(request: web.Request) -> web.Response:
    """POST /sns: SNS HTTP(S) subscription messages, verified in full by the shared pipeline."""
    ingress = request.app[INGRESS]
    refused = ingress.precheck_sns(request.headers, request.content_length, request.remote)
    if refused is not None:
        return respond(refused)
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    return respond(await ingress.sns_http(request.headers, body, remote=request.remote))


def journal_acceptor(inbox: Inbox) -> Accept:
    """What the server does with a verified delivery: journal it and answer at once (202, or 200 for a repeat).

    Repeats are told by the journal, which remembers finished deliveries across restarts, inside the same
    group commit that stores new ones; a shared dedupe table is consulted by the worker's claim, off this path.
    """

    async def accept(delivery: Delivery) -> Answer:
        admission = await inbox.submit(delivery)
        if admission == "busy":
            log.warning("inbox full or shutting down (%d pending); asking the sender to retry later", inbox.pending)
        return admission_answer(delivery, admission)

    return accept


async def healthz(request: web.Request) -> web.Response:
    """200 "ok"; 503 "failing" with the reasons while the de-dup store or the journal keeps failing."""
    inbox = request.app[INBOX]
    runtime = request.app[RUNTIME]
    problems = runtime.health.problems()
    document: dict[str, object] = {
        "status": "failing" if problems else "ok",
        "version": __version__,
        "pending": inbox.pending,
        "uptime_seconds": round(time.monotonic() - request.app[STARTED], 1),
        "dry_run": runtime.dispatcher.dry_run,
    }
    if problems:
        document["problems"] = problems
    return json_answer(document, status=503 if problems else 200)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; with ``[server] metrics_token`` only for ``Authorization: Bearer <token>``.

    Counts of deliveries, refusals and handler outcomes tell an attacker what works, so they need not be shown to
    whoever can reach the port GitHub posts to.
    """
    token = request.app[RUNTIME].settings.server.metrics_token
    if token and not bearer_matches(request.headers.get("Authorization"), token):
        return json_answer(
            {"error": "metrics need Authorization: Bearer <[server] metrics_token>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="hookbot metrics"'},
        )
    # Read here, at scrape time, rather than updated by the inbox on every delivery.
    INBOX_PENDING.set(request.app[INBOX].pending)
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


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
    # No automatic decompression: a compressed body is refused (415) before it is read, and even a body read by
    # mistake could not inflate; an encoding aiohttp cannot decode (br without brotli) cannot raise in its parser.
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        handler_args={"auto_decompress": False},
    )
    app[RUNTIME] = runtime
    app[INBOX] = inbox or JournalInbox(
        journal_path(settings.state_dir),
        make_processor(runtime),
        capacity=settings.server.queue_size,
        workers=settings.server.workers,
        max_attempts=settings.server.max_attempts,
        retry_base_seconds=settings.server.retry_base_seconds,
        dry_run=runtime.dispatcher.dry_run,
        resume_running_after=settings.github.request_timeout_seconds,
        health=runtime.health,
    )
    app[STARTED] = time.monotonic()
    app[INGRESS] = Ingress(runtime, journal_acceptor(app[INBOX]), RefusalLog(log))
    app[BODY_BUDGET] = BodyBudget(settings.server.max_buffered_bytes, retry_after=RETRY_AFTER_SECONDS)
    app.router.add_post("/webhook", tracking_busy_connections(receive_webhook))
    app.router.add_post("/sns", tracking_busy_connections(receive_sns))
    app.router.add_get("/healthz", tracking_busy_connections(healthz))
    if settings.server.metrics_port is None:
        app.router.add_get("/metrics", tracking_busy_connections(metrics))
    app.router.add_route("*", "/{path:.*}", tracking_busy_connections(no_route))  # last: what no route above takes

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[INBOX].start()
        background = [asyncio.create_task(task) for task in background_tasks(runtime)]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        app[INGRESS].refusals.flush()
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


def create_metrics_app(app: web.Application) -> web.Application:
    """``GET /metrics`` alone, for ``[server] metrics_port``: scraped on a port GitHub's side never reaches."""
    metrics_app = web.Application()
    metrics_app[RUNTIME] = app[RUNTIME]
    metrics_app[INBOX] = app[INBOX]
    metrics_app.router.add_get("/metrics", metrics)
    return metrics_app
