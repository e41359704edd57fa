"""The benchmark's peer: a minimal aiohttp + gidgethub bot built the way python/bedevere receives webhooks.

Issue 6 measured such a bot at roughly a third of a bare aiohttp handler, and hookbot's goal is to be faster than
it while doing more; this server puts that bot in the same run as hookbot, on the same core and load, so the
ratio hookbot / peer is measured rather than quoted. It is written for this benchmark (no code taken from
bedevere); only its shape follows bedevere's ``__main__``: one aiohttp handler that

1. reads the body and builds ``gidgethub.sansio.Event.from_http(request.headers, body, secret=...)``, which
   verifies the HMAC-SHA256 signature and parses the JSON (stdlib ``json``);
2. answers a ``ping`` at once, and otherwise makes a ``gidgethub.abc.GitHubAPI`` for this delivery and awaits
   ``router.dispatch(event, gh)`` on a module-level ``gidgethub.routing.Router``, *before* answering;
3. answers 200 with an empty body (500 with a traceback on stderr when anything raised, 401 for a bad
   signature).

The one handler, ``issues``/``opened``, does the work of hookbot's greeter (handlers/greeter.py): skip bot
senders, ``getiter`` the issue's comments looking for a hidden marker, format the greeting, ``post`` one comment.
Its client answers every request locally, like hookbot's dry-run client (bot/github.py ``DryRunGitHubAPI``): a
GET gets 200 ``[]``, anything else 200 and a small JSON object, both ``application/json``, no network. So both
bots pay gidgethub's client machinery (URL building, headers, content-type parsing, JSON both ways) for the same
two calls and neither pays a real GitHub.

What it does not do, on purpose, because those are what hookbot does on top ("doing more"): no durable
journal (a delivery whose processing is cut short by a crash or a restart is lost: GitHub sees the 200 or a
timeout and does not resend by itself), no de-duplication by ``X-GitHub-Delivery`` (a redelivery runs the
handler again), no retries or rate-limit handling, no metrics, no per-delivery log lines, no handler isolation
(one failing handler fails the delivery). Its latency includes the handler's work, since GitHub waits for it.

Where it departs from bedevere, each departure makes the peer faster, so "hookbot is faster than the peer" errs
on hookbot's side: bedevere also sleeps one second per delivery (to let GitHub settle), opens an aiohttp
``ClientSession`` per delivery, reads its secret from the environment per request and, in some versions, prints
the delivery id and the remaining rate limit to stderr per delivery; the peer does none of these (the secret is
read once at start). Like ``bench/bare_server.py`` it runs on the stock asyncio loop unless ``--uvloop`` is
given, with aiohttp's access log off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from bare_server import new_loop
from gidgethub import ValidationFailure, routing, sansio
from gidgethub.abc import GitHubAPI

SECRET_KEY = web.AppKey("secret", str)
MARKER = "<!-- peer:greeter -->"
GREETING = "Thanks for opening this issue, @{author}! A maintainer will take a look soon."
JSON_HEADERS = {"content-type": "application/json"}

router = routing.Router()


class LocalGitHubAPI(GitHubAPI):
    """gidgethub's client with its transport answered in process, as hookbot's dry-run client answers."""

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        if method == "GET":
            return 200, JSON_HEADERS, b"[]"
        return 200, JSON_HEADERS, b'{"dry_run": true}'

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def already_greeted(gh: GitHubAPI, comments_url: str) -> bool:
    async for comment in gh.getiter(comments_url):
        if MARKER in (comment.get("body") or ""):
            return True
    return False


@router.register("issues", action="opened")
async def greet_issue(event: sansio.Event, gh: GitHubAPI) -> None:
    if event.data["sender"].get("type") == "Bot":
        return
    issue: dict[str, Any] = event.data["issue"]
    comments_url = f"/repos/{event.data['repository']['full_name']}/issues/{issue['number']}/comments"
    if await already_greeted(gh, comments_url):
        return
    text = GREETING.format(author=issue["user"]["login"])
    await gh.post(comments_url, data={"body": f"{text}\n\n{MARKER}"})


async def webhook(request: web.Request) -> web.Response:
    try:
        body = await request.read()
        event = sansio.Event.from_http(request.headers, body, secret=request.app[SECRET_KEY])
        if event.event == "ping":
            return web.Response(status=200)
        gh = LocalGitHubAPI("hookbot-bench-peer", oauth_token="bench-token")  # noqa: S106 - never sent anywhere
        await router.dispatch(event, gh)
        return web.Response(status=200)
    except ValidationFailure as exc:
        print(f"refused a delivery: {exc}", file=sys.stderr)
        return web.Response(status=401)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return web.Response(status=500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the stock asyncio loop")
    args = parser.parse_args()
    secret = os.environ.get("GITHUB_WEBHOOK_SECRET")
    if not secret:
        sys.exit("GITHUB_WEBHOOK_SECRET is not set: the peer verifies every delivery's signature")
    app = web.Application(client_max_size=25 * 1024 * 1024)
    app[SECRET_KEY] = secret
    app.router.add_post("/webhook", webhook)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=new_loop(args.uvloop))


if __name__ == "__main__":
    main()
