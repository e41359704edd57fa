"""GitHub API clients: personal token, GitHub App installation tokens, or dry-run.

One aiohttp session is shared by every client; a gidgethub client object is made per delivery (they are cheap)
so that each records the delivery's own actions. Every request goes to the configured API base URL and never
to a URL taken from a payload: a forged or odd payload cannot aim the bot's token at another host.
"""

from __future__ import annotations

import asyncio
import calendar
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from gidgethub import aiohttp as gh_aiohttp

from bot import USER_AGENT
from bot.config import GitHubSettings
from bot.context import ActionLog

TOKEN_REFRESH_MARGIN = 300.0  # renew an installation token this many seconds before it expires
HIDDEN_MARKER = re.compile(r"\s*<!-- hookbot:[\w.-]+ -->")  # the idempotency markers handlers put in comments


class UntrustedURLError(Exception):
    """A request aimed somewhere other than the configured GitHub API."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


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


class HookbotGitHubAPI(gh_aiohttp.GitHubAPI):
    """gidgethub's aiohttp client, pinned to one API origin and recording every write in an ActionLog."""

    def __init__(self, session: aiohttp.ClientSession, *, actions: ActionLog, **kwargs: Any) -> None:
        super().__init__(session, USER_AGENT, **kwargs)
        self.actions = actions
        self._allowed_origin = _origin(self.base_url)

    def _check_url(self, url: str) -> str:
        if _origin(url) != self._allowed_origin:
            raise UntrustedURLError(f"refusing a GitHub request to {url}: only {self.base_url} is trusted")
        return urlsplit(url).path

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        path = self._check_url(url)
        response = await super()._request(method, url, headers, body)
        if method != "GET" and response[0] < 400:
            self.actions.record(describe_request(method, path, body))
        return response


class DryRunGitHubAPI(HookbotGitHubAPI):
    """Records writes instead of sending them; reads go to GitHub only when there are credentials to read with."""

    def __init__(self, session: aiohttp.ClientSession, *, can_read: bool, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._can_read = can_read

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        path = self._check_url(url)
        if method == "GET":
            if self._can_read:
                return await gh_aiohttp.GitHubAPI._request(self, method, url, headers, body)
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
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens: dict[int, tuple[str, float]] = {}
        self._token_locks: dict[int, asyncio.Lock] = {}
        self._bot_login: str | None = settings.bot_login

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30, connect=5),
                headers={"User-Agent": USER_AGENT},
            )
            self._loop = loop
            self._token_locks = {}
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _installation_token(self, installation_id: int) -> str:
        cached = self._tokens.get(installation_id)
        if cached and cached[1] - TOKEN_REFRESH_MARGIN > time.time():
            return cached[0]
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached and cached[1] - TOKEN_REFRESH_MARGIN > time.time():
                return cached[0]
            assert self.settings.app_id and self.settings.private_key
            app_client = HookbotGitHubAPI(self.session(), actions=ActionLog(), base_url=self.settings.api_url)
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
            return await self._installation_token(installation_id)
        return None

    async def for_installation(self, installation_id: int | None, actions: ActionLog) -> HookbotGitHubAPI:
        """The client to act with on behalf of a delivery (its installation, when it came to a GitHub App)."""
        if self.dry_run:
            token = self.settings.token if self.settings.has_credentials else None
            return DryRunGitHubAPI(
                self.session(),
                can_read=token is not None,
                actions=actions,
                oauth_token=token,
                base_url=self.settings.api_url,
            )
        token = await self._oauth_token(installation_id)
        return HookbotGitHubAPI(self.session(), actions=actions, oauth_token=token, base_url=self.settings.api_url)

    async def bot_login(self) -> str | None:
        """The account the bot writes as, so handlers can ignore its own events (asked once, then cached)."""
        if self._bot_login is None and self.settings.token and not self.dry_run:
            gh = HookbotGitHubAPI(
                self.session(), actions=ActionLog(), oauth_token=self.settings.token, base_url=self.settings.api_url
            )
            user = await gh.getitem("/user")
            self._bot_login = str(user["login"])
        return self._bot_login


def _parse_github_time(text: str) -> float:
    """GitHub's ``2016-07-11T22:14:10Z`` timestamps as epoch seconds."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
