"""The only I/O SNS handling does: fetching signing certificates (cached) and visiting a SubscribeURL.

Both happen only for URLs :class:`bot.sns.SnsVerifier` has already found trustworthy, and never follow redirects
(a redirect would take the request to a host nobody checked). Certificates are cached, bounded and with a
lifetime, and a burst of messages signed with one certificate fetches it once: later callers wait for the
fetch already in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.delivery import Refusal
from bot.loop_session import LoopSession
from bot.sns import SUBSCRIPTION_CONFIRMATION, SnsMessage, SnsVerifier, parse_message

log = logging.getLogger("hookbot.sns")

Getter = Callable[[str], Awaitable[bytes]]

MAX_CERTIFICATE_BYTES = 64 * 1024  # an SNS certificate is about 2 KB; anything huge is not one
CERTIFICATE_LIFETIME = 24 * 3600.0  # AWS rotates signing certificates yearly; a day bounds a revoked one's life
MAX_CERTIFICATES = 32  # AWS uses one per region at a time, a few more around a rotation


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
            pending = asyncio.ensure_future(self._fetch(url))
            self._in_flight[url] = pending
        # Shielded: one caller giving up (a cancelled request) must not cancel the fetch the others wait for.
        return await asyncio.shield(pending)

    async def _fetch(self, url: str) -> bytes:
        try:
            body = await self._get(url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Refusal(503, f"cannot fetch SNS certificate {url}: {exc}") from None
        finally:
            self._in_flight.pop(url, None)
        if len(body) > MAX_CERTIFICATE_BYTES:
            raise Refusal(403, f"{url} is over {MAX_CERTIFICATE_BYTES} bytes; not an SNS certificate")
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
