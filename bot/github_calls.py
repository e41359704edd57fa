"""gidgethub's public request methods with a fast path for the plain calls handlers make.

gidgethub expands every URL as a URI template (through ``urljoin`` and ``uritemplate``), parses every answer's
content type with the ``email`` package and encodes JSON with the standard library: about 20 us per call, which
was a fifth of a greeted delivery's CPU (BENCHMARKS.md). A plain call (an API path or URL without template
variables, no JWT, no extra headers, token or no auth, no cache) is built here with string operations and orjson
and still goes through gidgethub's documented hooks: ``manage_rate_limit``, ``_request`` and
``handle_rate_limit_error``. Any other call goes to gidgethub unchanged. Only these methods' public signatures are
relied on, never gidgethub's private request path, so a gidgethub release can change its internals freely.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from gidgethub import HTTPException, sansio
from gidgethub import abc as gh_abc

JSON = "application/json"
ACCEPT = sansio.accept_format()  # gidgethub's default Accept header
SUCCESS_STATUSES = frozenset({200, 201, 202, 204})  # what gidgethub answers with data rather than an exception


def next_page(link: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (GitHub's pagination), as gidgethub's getiter expects it."""
    for part in (link or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return target.strip().removeprefix("<").removesuffix(">")
    return None


def decipher_response(status: int, headers: Mapping[str, str], body: bytes) -> tuple[Any, Any, str | None]:
    """gidgethub's ``decipher_response`` for a successful UTF-8 JSON answer, with orjson and no ``email`` parsing.

    Anything else (an error status, another content type or charset) goes to gidgethub's own, so its exceptions
    (rate limits, validation errors) stay exactly gidgethub's.
    """
    media_type, _, params = headers.get("content-type", "").partition(";")
    utf8_json = media_type.strip().lower() == JSON and params.strip().lower() in ("", "charset=utf-8")
    if status in SUCCESS_STATUSES and utf8_json:
        data = orjson.loads(body) if body else None
        # gidgethub's RateLimit.from_http answers None for an answer without the headers by catching a KeyError;
        # asking first spares the exception (a dry-run client's answers carry none).
        rate = sansio.RateLimit.from_http(headers) if "x-ratelimit-limit" in headers else None
        return data, rate, next_page(headers.get("link"))
    return sansio.decipher_response(status, headers, body)


class PlainCalls(gh_abc.GitHubAPI):
    """gidgethub's client with the fast path; a subclass still provides ``_request`` and ``sleep``."""

    def __init__(self, requester: str, **kwargs: Any) -> None:
        super().__init__(requester, **kwargs)
        self._caching = kwargs.get("cache") is not None  # gidgethub's ETag cache: then gidgethub builds every call
        self._api_root = self.base_url.removesuffix("/")

    async def getitem(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        if not self._is_plain(url, url_vars, jwt, extra_headers):
            return await super().getitem(
                url, url_vars, accept=accept, jwt=jwt, oauth_token=oauth_token, extra_headers=extra_headers
            )
        data, _ = await self._plain_request("GET", url, b"", accept, oauth_token)
        return data

    async def getiter(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
        iterable_key: str | None = gh_abc.ITERABLE_KEY,
    ) -> AsyncGenerator[Any, None]:
        if not self._is_plain(url, url_vars, jwt, extra_headers):
            pages = super().getiter(
                url,
                url_vars,
                accept=accept,
                jwt=jwt,
                oauth_token=oauth_token,
                extra_headers=extra_headers,
                iterable_key=iterable_key,
            )
            async for item in pages:
                yield item
            return
        next_url: str | None = url
        while next_url:
            data, next_url = await self._plain_request("GET", next_url, b"", accept, oauth_token)
            if isinstance(data, dict) and iterable_key in data:
                data = data[iterable_key]
            for item in data:
                yield item

    async def post(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        data: Any,
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        if content_type != JSON or not self._is_plain(url, url_vars, jwt, extra_headers):
            return await super().post(
                url,
                url_vars,
                data=data,
                accept=accept,
                jwt=jwt,
                oauth_token=oauth_token,
                extra_headers=extra_headers,
                content_type=content_type,
            )
        answer, _ = await self._plain_request("POST", url, data, accept, oauth_token)
        return answer

    async def patch(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        data: Any,
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        if not self._is_plain(url, url_vars, jwt, extra_headers):
            return await super().patch(
                url, url_vars, data=data, accept=accept, jwt=jwt, oauth_token=oauth_token, extra_headers=extra_headers
            )
        answer, _ = await self._plain_request("PATCH", url, data, accept, oauth_token)
        return answer

    async def put(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        data: Any = b"",
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        if not self._is_plain(url, url_vars, jwt, extra_headers):
            return await super().put(
                url, url_vars, data=data, accept=accept, jwt=jwt, oauth_token=oauth_token, extra_headers=extra_headers
            )
        answer, _ = await self._plain_request("PUT", url, data, accept, oauth_token)
        return answer

    async def delete(
        self,
        url: str,
        url_vars: Mapping[str, Any] | None = None,
        *,
        data: Any = b"",
        accept: str = ACCEPT,
        jwt: str | None = None,
        oauth_token: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        if not self._is_plain(url, url_vars, jwt, extra_headers):
            await super().delete(
                url, url_vars, data=data, accept=accept, jwt=jwt, oauth_token=oauth_token, extra_headers=extra_headers
            )
            return
        await self._plain_request("DELETE", url, data, accept, oauth_token)

    def _is_plain(
        self, url: str, url_vars: Mapping[str, Any] | None, jwt: str | None, extra_headers: dict[str, str] | None
    ) -> bool:
        """A call the fast path builds exactly as gidgethub would (else gidgethub builds it)."""
        return not (
            url_vars or "{" in url or "/." in url or jwt is not None or extra_headers or self._cache is not None
        )

    async def _plain_request(
        self, method: str, url: str, data: Any, accept: str, oauth_token: str | None
    ) -> tuple[Any, str | None]:
        """(decoded answer, next page URL) of one plain call, through gidgethub's hooks and ``_request``."""
        full_url = url if url.startswith(("https://", "http://")) else f"{self._api_root}/{url.removeprefix('/')}"
        token = self.oauth_token if oauth_token is None else oauth_token
        headers = {"user-agent": self.requester, "accept": accept}
        if token is not None:
            headers["authorization"] = f"token {token}"
        if data == b"":
            body = b""
        else:
            body = orjson.dumps(data)
            headers["content-type"] = "application/json; charset=utf-8"
        headers["content-length"] = str(len(body))
        attempt = 0
        while True:
            attempt += 1
            await self.manage_rate_limit(method=method, url=full_url)
            status, response_headers, response_body = await self._request(method, full_url, headers, body)
            try:
                answer, self.rate_limit, more = decipher_response(status, response_headers, response_body)
            except HTTPException as exc:
                if not await self.handle_rate_limit_error(method=method, url=full_url, exception=exc, attempt=attempt):
                    raise
                continue
            return answer, more
