"""The only I/O SNS handling does: fetching signing certificates (cached) and visiting a SubscribeURL.

Both happen only for URLs :class:`bot.sns.SnsVerifier` has already found trustworthy, and never follow redirects
(a redirect would take the request to a host nobody checked). Certificates are cached, bounded and with a
lifetime, and a burst of messages signed with one certificate fetches it once: later callers wait for the
fetch already in flight. Fetches are limited per host, and a failed fetch is answered from memory for a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.delivery import Refusal
from bot.loop_session import LoopSession
from bot.sns import SUBSCRIPTION_CONFIRMATION, SnsMessage, SnsVerifier, parse_message

log = logging.getLogger("hookbot.sns")

Getter = Callable[[str], Awaitable[bytes]]

MAX_CERTIFICATE_BYTES = 64 * 1024  # an SNS certificate is about 2 KB; anything huge is not one
CERTIFICATE_LIFETIME = 24 * 3600.0  # AWS rotates signing certificates yearly; a day bounds a revoked one's life
MAX_CERTIFICATES = 32  # AWS uses one per region at a time, a few more around a rotation
# An unsigned message with an allowed topic may name any SimpleNotificationService-<hex>.pem at a trusted host: each
# host gets a few fetches a minute (AWS serves one certificate per region), and a failed URL is not tried again for
# a minute, so such messages cannot make hookbot fetch without end.
FETCHES_PER_HOST = 6
FETCH_WINDOW_SECONDS = 60.0
FAILURE_LIFETIME = 60.0
MAX_TRACKED = 64  # hosts counted and failed URLs remembered: memory stays flat whatever the URLs


class SnsFetcher:
    """Certificate cache plus SubscribeURL visits, safe to keep across event loops (a warm Lambda's case).

    ``get`` fetches a URL and returns its body; by default a real HTTP GET through a session remade whenever the
    running event loop changes. Tests pass their own to count fetches.
    """

    def __init__(
        self,
        get: Getter | None = None,
        *,
        max_entries: int = MAX_CERTIFICATES,
        lifetime: float = CERTIFICATE_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._get = get or self._http_get
        self._max_entries = max_entries
        self._lifetime = lifetime
        self._clock = clock
        self._certificates: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._failures: OrderedDict[str, tuple[Refusal, float]] = OrderedDict()
        self._fetches: OrderedDict[str, list[float]] = OrderedDict()  # host -> fetch times inside the window
        self._in_flight: dict[str, asyncio.Future[bytes]] = {}
        self._http = LoopSession(aiohttp.ClientTimeout(total=10, connect=5), on_new_loop=self._in_flight.clear)

    async def _http_get(self, url: str) -> bytes:
        async with self._http.get().get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=response.reason or ""
                )
            body = bytearray()
            async for chunk in response.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > MAX_CERTIFICATE_BYTES:
                    break  # enough to know it is too big; the caller refuses it
            return bytes(body)

    async def certificate(self, url: str) -> bytes:
        """The PEM at ``url`` (already checked by :meth:`SnsVerifier.precheck`), from the cache when fresh."""
        cached = self._certificates.get(url)
        if cached is not None and cached[1] > self._clock():
            self._certificates.move_to_end(url)
            return cached[0]
        self._http.check_loop()
        pending = self._in_flight.get(url)
        if pending is None:
            self._check_may_fetch(url)
            pending = asyncio.ensure_future(self._fetch(url))
            self._in_flight[url] = pending
        # Shielded: one caller giving up (a cancelled request) must not cancel the fetch the others wait for.
        return await asyncio.shield(pending)

    def _check_may_fetch(self, url: str) -> None:
        """Raise the remembered refusal of a URL that failed within a minute, or a 503 for a host fetched from too
        often; otherwise count this fetch against its host."""
        now = self._clock()
        failed = self._failures.get(url)
        if failed is not None:
            if failed[1] > now:
                raise failed[0]
            del self._failures[url]
        host = urlsplit(url).hostname or ""
        recent = [at for at in self._fetches.pop(host, []) if at > now - FETCH_WINDOW_SECONDS]
        if len(recent) >= FETCHES_PER_HOST:
            self._fetches[host] = recent
            raise Refusal(
                503, f"too many SNS certificate fetches from {host} this minute", retry_after=int(FETCH_WINDOW_SECONDS)
            )
        self._fetches[host] = [*recent, now]
        while len(self._fetches) > MAX_TRACKED:
            self._fetches.popitem(last=False)

    def _remember_failure(self, url: str, refusal: Refusal) -> Refusal:
        self._failures[url] = (refusal, self._clock() + FAILURE_LIFETIME)
        self._failures.move_to_end(url)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
        return refusal

    async def _fetch(self, url: str) -> bytes:
        try:
            body = await self._get(url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            refusal = Refusal(503, f"cannot fetch SNS certificate {url}: {exc}", retry_after=int(FAILURE_LIFETIME))
            raise self._remember_failure(url, refusal) from None
        finally:
            self._in_flight.pop(url, None)
        if len(body) > MAX_CERTIFICATE_BYTES:
            refusal = Refusal(403, f"{url} is over {MAX_CERTIFICATE_BYTES} bytes; not an SNS certificate")
            raise self._remember_failure(url, refusal)
        self._certificates[url] = (body, self._clock() + self._lifetime)
        self._certificates.move_to_end(url)
        while len(self._certificates) > self._max_entries:
            self._certificates.popitem(last=False)
        log.info("fetched SNS signing certificate", extra={"fields": {"url": url, "cached": len(self._certificates)}})
        return body

    async def confirm_subscription(self, message: SnsMessage) -> None:
        """Visit a verified SubscriptionConfirmation's SubscribeURL, which is what tells SNS to start sending."""
        if message.type != SUBSCRIPTION_CONFIRMATION or message.subscribe_url is None:
            raise ValueError("only a SubscriptionConfirmation has a SubscribeURL to visit")
        try:
            await self._get(message.subscribe_url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Refusal(503, f"cannot confirm the subscription to {message.topic_arn}: {exc}") from None

    async def close(self) -> None:
        await self._http.close()


async def verified_message(
    document: Any, verifier: SnsVerifier, fetcher: SnsFetcher, *, check_age: bool = True
) -> SnsMessage:
    """Parse and fully verify an SNS message; every check that needs no certificate runs before any fetch.

    ``check_age=False`` for records Lambda hands over (see :meth:`SnsVerifier.precheck`).
    """
    message = parse_message(document)
    verifier.precheck(message, check_age=check_age)
    verifier.verify(message, await fetcher.certificate(message.signing_cert_url), check_age=check_age)
    return message
