"""GitHub API clients: personal token, GitHub App installation tokens, or dry-run.

One aiohttp session is shared by every client; a gidgethub client object is made per delivery (they are cheap)
so that each records the delivery's own actions. Every request goes to the configured API base URL and never
to a URL taken from a payload: a forged or odd payload cannot aim the bot's token at another host. The client's
fast path for plain calls is bot/github_calls.py, on gidgethub's public methods.

Resilience (gidgethub has no retry logic of its own; it offers two hooks, used here):

- 5xx answers and dropped connections are retried with exponential backoff and jitter, but only for idempotent
  methods. A POST whose answer was lost may have taken effect (a comment created, then the connection dropped),
  so it is never repeated here: the handler fails, the inbox retries the delivery later, and the handler's own
  idempotency check (the greeter's hidden marker, per-plugin dedupe keys) finds what the first attempt did.
  That one rule covers every plugin, not just comment-writers, which a client-level "search before re-POST"
  could not.
- Rate limits (403/429) are refusals, so GitHub did nothing and any method may be retried: wait ``Retry-After``
  (secondary limit) or until ``x-ratelimit-reset`` (primary limit), and before each request pause while the
  shared quota is known to be spent; all waits come out of a per-delivery time budget, after which the handler
  fails and the inbox's delivery-level backoff takes over.
- Any other 4xx is permanent: that handler fails, the others still run, and the delivery is not retried.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from gidgethub import BadRequest, HTTPException, RateLimitExceeded, sansio

from bot import USER_AGENT
from bot.context import ActionLog
from bot.effects import before_effect
from bot.github_calls import PlainCalls, decipher_response
from bot.loop_session import LoopSession
from bot.metrics import GITHUB_RATE_LIMIT_REMAINING, GITHUB_REQUESTS
from bot.settings import GitHubSettings

log = logging.getLogger("hookbot.github")

TOKEN_REFRESH_MARGIN = 300.0  # renew an installation token this many seconds before it expires
HIDDEN_MARKER = re.compile(r"\s*<!-- hookbot:[\w.-]+ -->")  # the idempotency markers handlers put in comments
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # change nothing on GitHub: safe to repeat after a crash
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
MAX_ATTEMPTS = 4  # per request, for 5xx, dropped connections and rate-limit refusals alike
BACKOFF_BASE_SECONDS = 0.5
WAIT_BUDGET_SECONDS = 60.0  # what one delivery's client may spend waiting on GitHub before failing the handler
SECONDARY_LIMIT_WAIT = 60.0  # GitHub: without Retry-After, wait at least a minute after a secondary limit


@dataclass(slots=True)
class RateLimitState:
    """The quota of one set of credentials, shared by every client made with them."""

    remaining: int | None = None
    reset: float | None = None

    def update(self, headers: Mapping[str, str]) -> None:
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if remaining is not None and remaining.isdigit():
            self.remaining = int(remaining)
            GITHUB_RATE_LIMIT_REMAINING.set(self.remaining)
        if reset is not None and reset.isdigit():
            self.reset = float(reset)


def is_permanent(exc: BaseException) -> bool:
    """True for a failure that retrying the delivery cannot fix.

    That is a 4xx other than a rate limit or a conflict, or a handler error that depends on nothing outside
    (a missing key or a wrong type in the payload): the same payload would fail the same way every time. Fixed
    handler code can still run them again with `hookbot deliveries retry`.
    """
    if isinstance(exc, LookupError | TypeError | ValueError | AttributeError):
        return True
    if isinstance(exc, RateLimitExceeded) or not isinstance(exc, BadRequest):
        return False
    return rate_limit_wait(exc) is None and int(exc.status_code) not in {408, 409, 429}


def rate_limit_wait(exc: HTTPException, now: float | None = None) -> float | None:
    """Seconds to wait before retrying a rate-limited request, or None when ``exc`` is no rate limit."""
    status = int(exc.status_code)
    if status not in {403, 429}:
        return None
    headers = exc.headers
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, float(reset) - (time.time() if now is None else now)) + 1.0
    if status == 429 or "rate limit" in str(exc).lower():
        return SECONDARY_LIMIT_WAIT
    return None


def backoff_seconds(attempt: int, base: float, cap: float = math.inf) -> float:
    """Exponential backoff with "equal jitter": half the step is fixed, half random, so retries spread out.

    Shared by this client's per-request retries and the inbox's per-delivery ones.
    """
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not cryptography


class UntrustedURLError(Exception):
    """A request aimed somewhere other than the configured GitHub API."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


@functools.lru_cache(maxsize=8)
def _trusted(base_url: str) -> tuple[tuple[str, str, int | None], str]:
    """The API's origin, and the ``scheme://netloc/`` text any URL spelled the same way starts with."""
    parts = urlsplit(base_url)
    return _origin(base_url), f"{parts.scheme}://{parts.netloc}/"


def describe_request(method: str, path: str, body: bytes) -> str:
    """One readable line for a write request: what `hookbot replay` prints and what the logs record."""
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = {}
    segments = path.strip("/").split("/")
    if (
        method == "POST"
        and len(segments) == 6
        and segments[0] == "repos"
        and segments[3] == "issues"
        and segments[5] == "comments"
        and isinstance(data, dict)
    ):
        text = HIDDEN_MARKER.sub("", str(data.get("body", ""))).strip()
        return f"comment on {segments[1]}/{segments[2]}#{segments[4]}: {text}"
    summary = orjson.dumps(data).decode() if data else ""
    return f"{method} {path} {summary}".rstrip()


Answer = tuple[int, Mapping[str, str], bytes]
Transport = Callable[[str, str, Mapping[str, str], bytes], Awaitable[Answer]]


def aiohttp_transport(session: aiohttp.ClientSession) -> Transport:
    """Requests over the shared aiohttp session (bot.testing answers in-process instead)."""

    async def send(method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        async with session.request(method, url, headers=headers, data=body) as response:
            return response.status, response.headers, await response.read()

    return send


async def no_transport(method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """The transport of a dry-run client without credentials, which sends nothing: it answers every call itself."""
    raise RuntimeError(f"a dry-run client without credentials sent {method} {url}")


class HookbotGitHubAPI(PlainCalls):
    """gidgethub's client, pinned to one API origin, retrying what is safe and recording every write.

    It implements gidgethub's two documented I/O methods, ``_request`` (through ``transport``) and ``sleep``.
    Before a request that is not a read it awaits the running delivery's start mark (bot/effects.py), so that a
    crash while the request is in flight makes the restarted worker wait for it to land; ``marks_writes=False``
    for a client whose writes change nothing a handler could repeat (an App's installation token).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        actions: ActionLog,
        rate: RateLimitState | None = None,
        budget: float = WAIT_BUDGET_SECONDS,
        marks_writes: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(USER_AGENT, **kwargs)
        self._transport = transport
        self._marks_writes = marks_writes
        self.actions = actions
        self._allowed_origin, self._allowed_prefix = _trusted(self.base_url)
        self._rate = rate or RateLimitState()
        self._budget = budget

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _pause(self, seconds: float, why: str) -> bool:
        """Sleep if the budget allows; False (no sleep) when it would be overdrawn."""
        if seconds > self._budget:
            return False
        self._budget -= seconds
        log.info("GitHub: %s; waiting %.1fs", why, seconds)
        await self.sleep(seconds)
        return True

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        """Before a request: while the shared quota is spent, wait for its reset (within the budget)."""
        if self._rate.remaining == 0 and self._rate.reset is not None:
            wait = self._rate.reset - time.time() + 1.0
            if wait > 0 and await self._pause(wait, "rate limit spent until its reset"):
                self._rate.remaining = None

    async def handle_rate_limit_error(self, *, method: str, url: str, exception: HTTPException, attempt: int) -> bool:
        """After a 403/429 rate-limit refusal: wait and retry (GitHub refused it, so even a POST is safe)."""
        wait = rate_limit_wait(exception)
        if wait is None or attempt >= MAX_ATTEMPTS:
            return False
        return await self._pause(wait, f"{int(exception.status_code)} rate limit on {method} {urlsplit(url).path}")

    async def get_conditional(self, path: str, etag: str | None = None) -> tuple[int, Mapping[str, str], Any]:
        """GET an API ``path`` with ``If-None-Match: etag``: (status, headers, JSON body) for a 200, 304 or 404.

        gidgethub's ``getitem`` neither returns the ETag nor takes a 304 as an answer; a 304 does not count
        against the rate limit, which is what makes revalidating a cached file every minute cheap. Any other
        status raises gidgethub's exception for it, as ``getitem`` would.
        """
        headers = sansio.create_headers(self.requester, accept=sansio.accept_format(), oauth_token=self.oauth_token)
        if etag:
            headers["if-none-match"] = etag
        status, response_headers, body = await self._request("GET", f"{self._api_root}{path}", headers)
        if status in (304, 404):
            return status, response_headers, None
        data, _, _ = decipher_response(status, response_headers, body)
        return status, response_headers, data

    def _check_url(self, url: str) -> str:
        """The path of ``url``, which must be on the API's origin (the plain prefix check is the common case)."""
        if url.startswith(self._allowed_prefix):
            return url[len(self._allowed_prefix) - 1 :].partition("?")[0].partition("#")[0]
        if _origin(url) != self._allowed_origin:
            raise UntrustedURLError(f"refusing a GitHub request to {url}: only {self.base_url} is trusted")
        return urlsplit(url).path

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        path = self._check_url(url)
        if self._marks_writes and method not in READ_METHODS:
            await before_effect()
        attempt = 0
        while True:
            attempt += 1
            retryable = method in IDEMPOTENT_METHODS and attempt < MAX_ATTEMPTS
            try:
                response = await self._transport(method, url, headers, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                GITHUB_REQUESTS.labels(method, "error").inc()
                if retryable and await self._pause(
                    backoff_seconds(attempt, BACKOFF_BASE_SECONDS), f"{type(exc).__name__} on {method} {path}"
                ):
                    continue
                raise
            status, response_headers, _ = response
            GITHUB_REQUESTS.labels(method, str(status)).inc()
            self._rate.update(response_headers)
            if (
                status in TRANSIENT_STATUSES
                and retryable
                and await self._pause(backoff_seconds(attempt, BACKOFF_BASE_SECONDS), f"{status} on {method} {path}")
            ):
                continue
            if method != "GET" and status < 400:
                self.actions.record(describe_request(method, path, body))
            return response


class DryRunGitHubAPI(HookbotGitHubAPI):
    """Records writes instead of sending them; reads go to GitHub only when there are credentials to read with."""

    def __init__(self, transport: Transport, *, can_read: bool, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self._can_read = can_read

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        path = self._check_url(url)
        if method == "GET":
            if self._can_read:
                return await HookbotGitHubAPI._request(self, method, url, headers, body)
            return 200, {"content-type": "application/json"}, b"[]"
        self.actions.record(describe_request(method, path, body))
        return 200, {"content-type": "application/json"}, b'{"dry_run": true}'


class GitHubClients:
    """Makes the GitHub client for a delivery, sharing one HTTP session and caching App installation tokens.

    Safe to keep across event loops (a warm Lambda runs each invocation in a new loop): the session and the
    locks are remade when the running loop changes.
    """

    def __init__(self, settings: GitHubSettings, *, dry_run: bool) -> None:
        self.settings = settings
        self.dry_run = dry_run
        self._tokens: dict[int, tuple[str, float]] = {}
        self._rates: dict[int | None, RateLimitState] = {}
        self._token_locks: dict[int, asyncio.Lock] = {}
        timeout = settings.request_timeout_seconds
        self._http = LoopSession(
            aiohttp.ClientTimeout(total=timeout, connect=min(5.0, timeout)), on_new_loop=self._token_locks.clear
        )
        self._bot_login: str | None = settings.bot_login

    def session(self) -> aiohttp.ClientSession:
        return self._http.get()

    def transport(self) -> Transport:
        return aiohttp_transport(self.session())

    async def close(self) -> None:
        await self._http.close()

    async def installation_token(self, installation_id: int) -> str:
        cached = self._tokens.get(installation_id)
        if cached and cached[1] - TOKEN_REFRESH_MARGIN > time.time():
            return cached[0]
        self._http.check_loop()  # a lock made under an earlier loop cannot be awaited in this one
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached and cached[1] - TOKEN_REFRESH_MARGIN > time.time():
                return cached[0]
            assert self.settings.app_id and self.settings.private_key
            app_client = HookbotGitHubAPI(
                self.transport(), actions=ActionLog(), marks_writes=False, base_url=self.settings.api_url
            )
            # Lazy: gidgethub.apps imports PyJWT and cryptography, which token and dry-run setups never need.
            from gidgethub import apps

            response = await apps.get_installation_access_token(
                app_client,
                installation_id=str(installation_id),
                app_id=self.settings.app_id,
                private_key=self.settings.private_key,
            )
            expires = _parse_github_time(response["expires_at"])
            self._tokens[installation_id] = (response["token"], expires)
            return str(response["token"])

    async def _oauth_token(self, installation_id: int | None) -> str | None:
        if self.settings.token:
            return self.settings.token
        if self.settings.app_id and installation_id is not None:
            return await self.installation_token(installation_id)
        return None

    async def for_installation(self, installation_id: int | None, actions: ActionLog) -> HookbotGitHubAPI:
        """The client to act with on behalf of a delivery (its installation, when it came to a GitHub App)."""
        if self.dry_run:
            token = self.settings.token if self.settings.has_credentials else None
            # Without a token nothing is sent, so no HTTP session is made (at a Lambda cold start, none at all).
            return DryRunGitHubAPI(
                self.transport() if token is not None else no_transport,
                can_read=token is not None,
                actions=actions,
                oauth_token=token,
                base_url=self.settings.api_url,
            )
        token = await self._oauth_token(installation_id)
        # A personal token has one quota whatever the installation; each App installation has its own.
        rate = self._rates.setdefault(None if self.settings.token else installation_id, RateLimitState())
        return HookbotGitHubAPI(
            self.transport(), actions=actions, rate=rate, oauth_token=token, base_url=self.settings.api_url
        )

    async def bot_login(self) -> str | None:
        """The account the bot writes as, so handlers can ignore its own events (asked once, then cached)."""
        if self._bot_login is None and self.settings.token and not self.dry_run:
            gh = HookbotGitHubAPI(
                self.transport(), actions=ActionLog(), oauth_token=self.settings.token, base_url=self.settings.api_url
            )
            user = await gh.getitem("/user")
            self._bot_login = str(user["login"])
        return self._bot_login


def _parse_github_time(text: str) -> float:
    """GitHub's ``2016-07-11T22:14:10Z`` timestamps as epoch seconds."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
