"""A fake GitHub REST API: a real aiohttp server on loopback that records every request it is asked.

It knows the few endpoints hookbot's built-ins use and answers anything else from ``responses`` (set by a
test) or with 404, so a test can assert exactly what the bot asked GitHub to do.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_LOGIN = "hookbot-test[bot]"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakeGitHub:
    requests: list[Recorded] = field(default_factory=list)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    responses: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    tokens_issued: int = 0
    delay: float = 0.0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def calls(self, method: str, path_prefix: str = "/") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def posted_comments(self) -> list[tuple[str, str]]:
        """(issue comments path, body) for every comment created."""
        return [(r.path, r.json["body"]) for r in self.calls("POST") if r.path.endswith("/comments")]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        data = await request.json() if body else None
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), data))
        if self.delay:
            await asyncio.sleep(self.delay)
        canned = self.responses.get((request.method, request.path))
        if canned is not None:
            status, payload = canned
            return web.json_response(payload, status=status)
        if request.path == "/user":
            return web.json_response({"login": BOT_LOGIN, "type": "Bot"})
        if request.method == "POST" and request.path.startswith("/app/installations/"):
            self.tokens_issued += 1
            return web.json_response(
                {"token": f"ghs_installation_{self.tokens_issued}", "expires_at": "2099-01-01T00:00:00Z"},
                status=201,
            )
        if request.path.endswith("/comments") and "/issues/" in request.path:
            thread = self.comments.setdefault(request.path, [])
            if request.method == "GET":
                return web.json_response(thread)
            if request.method == "POST":
                comment = {"id": next(self._ids), "body": data["body"], "user": {"login": BOT_LOGIN}}
                thread.append(comment)
                return web.json_response(comment, status=201)
        return web.json_response({"message": "Not Found"}, status=404)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app
