"""The one ingress pipeline that every door shares: (headers, body, source) -> Delivery or Refusal -> Answer.

hookbot has four doors: ``POST /webhook`` and ``POST /sns`` (bot/server.py), and a Lambda Function URL / API
Gateway request and the SNS records Lambda hands over (bot/aws_lambda.py). Each door only translates its
transport into headers and a body and the :class:`Answer` back into its own response; every check lives here,
so a check added for one door holds at all of them.

The checks are pure functions (gidgethub's sansio spirit): :func:`check_github_headers` needs only headers, so
a door runs it before it reads a body (the size from Content-Length, any Content-Encoding, the signature's
presence and shape, the event name); :func:`check_github_signature` checks the body's HMAC and
:func:`parsed_delivery` makes the Delivery. :class:`Ingress` is the flow around them, with the effects injected:
the SNS certificate fetch, the relay's publish, and ``accept``, which is what the door does with a verified
delivery (the server journals it and answers 202, Lambda runs the handlers at once). What a door sends back is
an :class:`~bot.answers.Answer` (bot/answers.py). Headers are any mapping looked up by lower-case name
(aiohttp's case-insensitive one, or a dict a Lambda event's headers were lower-cased into).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from bot.answers import Answer, ping_answer, refusal_answer, unwanted_answer
from bot.delivery import Delivery, Refusal, Source
from bot.github_events import event_label
from bot.github_webhook import (
    check_event_name,
    delivery_from_github,
    delivery_id_or_digest,
    verify_signature,
    well_formed,
)
from bot.metrics import DELIVERIES
from bot.records import frozen

if TYPE_CHECKING:
    from bot.logs import RefusalLog
    from bot.runtime import Runtime
    from bot.sns import SnsMessage

__all__ = ["Accept", "Ingress", "Policy", "Refusal", "check_github_headers", "check_github_signature"]

log = logging.getLogger("hookbot.ingress")

Headers = Mapping[str, str]
IDENTITY_ENCODINGS = frozenset({"", "identity"})


@frozen
class Policy:
    """The settings the checks need, taken from the Runtime at each request (tests change them on the fly)."""

    secrets: tuple[bytes, ...]
    max_body_bytes: int
    allow_sha1: bool = False
    require_github_signature: bool = True

    @classmethod
    def of(cls, runtime: Runtime) -> Policy:
        settings = runtime.settings
        return cls(
            secrets=tuple(runtime.secrets),
            max_body_bytes=settings.server.max_body_bytes,
            allow_sha1=settings.github.allow_sha1,
            require_github_signature=settings.sns.require_github_signature,
        )


def check_size_and_encoding(headers: Headers, policy: Policy, content_length: int | None) -> None:
    """413 over the size limit, 415 for any Content-Encoding: both known before a byte of the body is read.

    GitHub never compresses a delivery, and SNS never compresses a message; refusing compression outright
    means no small request can inflate into a large one.
    """
    if content_length is not None and content_length > policy.max_body_bytes:
        raise Refusal(413, f"body of {content_length} bytes is over the {policy.max_body_bytes} byte limit")
    encoding = (headers.get("content-encoding") or "").strip().lower()
    if encoding not in IDENTITY_ENCODINGS:
        raise Refusal(415, "Content-Encoding is refused: deliveries are never compressed")


def check_github_headers(headers: Headers, policy: Policy, content_length: int | None) -> None:
    """Every check on a GitHub delivery that needs no body, so a forged flood costs no reading or hashing."""
    check_size_and_encoding(headers, policy, content_length)
    signature_256 = headers.get("x-hub-signature-256")
    signature_sha1 = headers.get("x-hub-signature")
    if signature_256:
        if not well_formed(signature_256, "sha256"):
            raise Refusal(401, "X-Hub-Signature-256 does not match: it is not sha256=<64 hex digits>")
    elif signature_sha1:
        if not policy.allow_sha1:
            raise Refusal(401, "only a sha1 X-Hub-Signature was sent; set [github] allow_sha1 = true to accept it")
        if not well_formed(signature_sha1, "sha1"):
            raise Refusal(401, "X-Hub-Signature does not match: it is not sha1=<40 hex digits>")
    else:
        raise Refusal(401, "X-Hub-Signature-256 header is missing")
    check_event_name(headers.get("x-github-event"))


def check_github_signature(headers: Headers, body: bytes, policy: Policy) -> None:
    """The body's HMAC against the configured secrets; raises :class:`Refusal` (401)."""
    verify_signature(
        body,
        signature_256=headers.get("x-hub-signature-256"),
        signature_sha1=headers.get("x-hub-signature"),
        secrets=policy.secrets,
        allow_sha1=policy.allow_sha1,
    )


def parsed_delivery(headers: Headers, body: bytes, source: Source) -> Delivery:
    return delivery_from_github(
        body,
        event=headers.get("x-github-event"),
        delivery_id=headers.get("x-github-delivery"),
        content_type=headers.get("content-type"),
        source=source,
    )


Accept = Callable[[Delivery], Awaitable[Answer]]


class UnwantedLog:
    """The line a delivery no plugin wants leaves: at info level the first time an event name is seen, so a first
    test push does not seem to vanish, then at debug level, so a flood of check or workflow events costs no log."""

    def __init__(self, limit: int = 256) -> None:
        self.seen: set[str] = set()
        self.limit = limit  # event names are checked, but the set need not grow with them

    def note(self, delivery: Delivery) -> None:
        first = delivery.event not in self.seen and len(self.seen) < self.limit
        if first:
            self.seen.add(delivery.event)
        elif not log.isEnabledFor(logging.DEBUG):
            return
        log.log(
            logging.INFO if first else logging.DEBUG,
            "%s: no loaded plugin wants it; answered without journal or de-duplication%s",
            delivery.describe(),
            " (further ones are logged at debug level)" if first else "",
            extra={"fields": {"event": delivery.describe(), "repository": delivery.repository, "outcome": "unwanted"}},
        )

    def note_unread(self, event: str, delivery_id: str) -> None:
        """The debug line of a delivery answered before its payload was read (its event name was seen before)."""
        if log.isEnabledFor(logging.DEBUG):
            fields = {"delivery": delivery_id, "event": event, "outcome": "unwanted"}
            log.debug("%s: no loaded plugin wants it; answered unread", event, extra={"fields": fields})


class Ingress:
    """The flow every door runs, bound to a Runtime, to what the door does with a verified delivery (``accept``)
    and to a refusal log that stays quiet under a flood."""

    def __init__(self, runtime: Runtime, accept: Accept, refusals: RefusalLog) -> None:
        self.runtime = runtime
        self.accept = accept
        self.refusals = refusals
        self.unwanted = UnwantedLog()
        self._policy = Policy.of(runtime)
        self._policy_made_for = (runtime.settings, runtime.secrets)

    async def take(self, delivery: Delivery) -> Answer:
        """A verified delivery: accepted (``accept``), or, when no loaded plugin wants it, answered 200 at once,
        without the journal or de-duplication: nothing will be done with it, however often it comes."""
        if self.runtime.dispatcher.wants(delivery):
            return await self.accept(delivery)
        self.unwanted.note(delivery)
        return unwanted_answer(delivery.event, delivery.delivery_id)

    def unwanted_unread(self, headers: Headers, body: bytes) -> Answer | None:
        """The 200 for a verified delivery that no loaded plugin could want by its event name alone, before its
        payload is parsed or hashed: a flood of ``check_run`` or ``workflow_job`` costs little more than its HMAC.

        None when the payload has to be read: a plugin may want the event; ``ping`` (answered with its zen); a
        relay (it forwards every delivery); or an event name not seen before, whose first delivery takes the full
        path so that its info line names the action and the repository.
        """
        event = headers.get("x-github-event") or ""
        runtime = self.runtime
        if event not in self.unwanted.seen or runtime.relay is not None or runtime.dispatcher.may_want(event, body):
            return None
        delivery_id = delivery_id_or_digest(headers.get("x-github-delivery"), body)
        self.unwanted.note_unread(event, delivery_id)
        return unwanted_answer(event, delivery_id)

    @property
    def policy(self) -> Policy:
        """The runtime's checks, made again only when its settings or secrets are replaced (tests do so)."""
        runtime = self.runtime
        settings, secrets = self._policy_made_for
        if runtime.settings is not settings or runtime.secrets is not secrets:
            self._policy = Policy.of(runtime)
            self._policy_made_for = (runtime.settings, runtime.secrets)
        return self._policy

    def refuse(self, refusal: Refusal, headers: Headers, remote: str | None = None) -> Answer:
        """One rate-limited log line and a short answer for every refusal at any door.

        Headers of a refused request are unverified: they are truncated in the log and kept out of metric
        labels (an attacker choosing label values could grow the metrics registry without bound).
        """
        self.refusals.refused(
            refusal.status,
            refusal.reason,
            remote,
            {
                "status": refusal.status,
                "remote": remote,
                "event": (headers.get("x-github-event") or "")[:64] or None,
                "github_delivery": (headers.get("x-github-delivery") or "")[:64] or None,
            },
        )
        DELIVERIES.labels("unverified", f"refused-{refusal.status}").inc()
        return refusal_answer(refusal)

    def precheck_github(self, headers: Headers, content_length: int | None, remote: str | None) -> Answer | None:
        """The refusal answer when the headers alone condemn a GitHub delivery; None: read the body."""
        try:
            check_github_headers(headers, self.policy, content_length)
        except Refusal as refusal:
            return self.refuse(refusal, headers, remote)
        return None

    def precheck_sns(self, headers: Headers, content_length: int | None, remote: str | None) -> Answer | None:
        try:
            check_size_and_encoding(headers, self.policy, content_length)
        except Refusal as refusal:
            return self.refuse(refusal, headers, remote)
        return None

    async def github(
        self,
        headers: Headers,
        body: bytes,
        *,
        source: Source,
        remote: str | None = None,
        headers_checked: bool = False,
    ) -> Answer:
        """A GitHub delivery at a door: checked, then answered (ping, or unwanted), relayed, or accepted.

        ``headers_checked``: the door ran :meth:`precheck_github` before reading the body.
        """
        policy = self.policy
        try:
            if not headers_checked:
                check_github_headers(headers, policy, len(body))
            check_github_signature(headers, body, policy)
            unwanted = self.unwanted_unread(headers, body)
            if unwanted is not None:
                return unwanted
            delivery = parsed_delivery(headers, body, source)
        except Refusal as refusal:
            return self.refuse(refusal, headers, remote)
        if delivery.event == "ping":
            return ping_answer(delivery)
        relay = self.runtime.relay
        if relay is not None:
            try:
                message_id = await relay.publish(delivery, headers.get("x-hub-signature-256"))
            except Refusal as refusal:
                return self.refuse(refusal, headers, remote)
            DELIVERIES.labels(event_label(delivery.event), "relayed").inc()
            if not self.runtime.settings.relay.also_handle:
                relayed = {"delivery": delivery.delivery_id, "status": "relayed", "sns_message_id": message_id}
                return Answer(200, relayed)
        return await self.take(delivery)

    async def sns_message(self, document: Any, *, verify: bool, check_age: bool) -> SnsMessage:
        """An SNS message checked as far as its door needs: fully (signature, certificate, age), or, for a record
        Lambda hands over (the invoke is authenticated by the topic's permission), its topic only."""
        from bot.sns import parse_message
        from bot.sns_fetch import verified_message

        runtime = self.runtime
        if verify:
            return await verified_message(document, runtime.sns_verifier, runtime.sns_fetcher, check_age=check_age)
        message = parse_message(document)
        runtime.sns_verifier.check_topic(message)
        return message

    def sns_deliveries(self, message: SnsMessage, source: Source) -> list[Delivery]:
        from bot.sns_delivery import deliveries_from_notification

        policy = self.policy
        return deliveries_from_notification(
            message,
            secrets=policy.secrets,
            require_github_signature=policy.require_github_signature,
            source=source,
        )

    async def sns_http(self, headers: Headers, body: bytes, *, remote: str | None = None) -> Answer:
        """An SNS HTTP(S) subscription message: verified in full, then confirmed, noted or accepted."""
        from bot.sns import SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION

        runtime = self.runtime
        try:
            check_size_and_encoding(headers, self.policy, len(body))
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Refusal(400, "SNS body is not JSON") from None
            message = await self.sns_message(document, verify=True, check_age=True)
            message = await runtime.payloads.resolve(message)  # a large delivery's body, fetched from S3
            if message.type == SUBSCRIPTION_CONFIRMATION:
                await runtime.sns_fetcher.confirm_subscription(message)
                log.info("confirmed SNS subscription", extra={"fields": {"topic": message.topic_arn}})
                return Answer(200, {"status": "subscribed", "topic": message.topic_arn})
            if message.type == UNSUBSCRIBE_CONFIRMATION:
                log.info("SNS unsubscribed this endpoint; not acted on", extra={"fields": {"topic": message.topic_arn}})
                return Answer(200, {"status": "noted", "topic": message.topic_arn})
            deliveries = self.sns_deliveries(message, "sns-http")
        except Refusal as refusal:
            return self.refuse(refusal, headers, remote)
        answers = [await self.take(delivery) for delivery in deliveries]
        # SNS retries anything but 2xx: one 503 asks for the whole message again, and dedupe skips what was taken.
        busy = [answer for answer in answers if answer.status == 503]
        if busy or len(answers) == 1:
            return (busy or answers)[0]
        return Answer(202, {"deliveries": [d.delivery_id for d in deliveries], "status": "accepted"})

    async def sns_record(self, sns: Any) -> list[Delivery]:
        """The deliveries of one SNS record Lambda handed over; raises :class:`Refusal` (the caller logs it).

        The age window does not apply here: SNS retries a Lambda subscription for days and Lambda queues
        asynchronous invocations for hours, and the record's timestamp never changes, so every late retry of a
        genuine record would fail; de-duplication handles late copies instead.
        """
        from bot.sns import NOTIFICATION

        message = await self.sns_message(sns, verify=self.runtime.settings.sns.verify_in_lambda, check_age=False)
        if message.type != NOTIFICATION:
            log.info("SNS %s ignored: Lambda subscriptions need no confirmation", message.type)
            return []
        message = await self.runtime.payloads.resolve(message)  # a large delivery's body, fetched from S3
        return self.sns_deliveries(message, "lambda-sns")
