"""The benchmark's baseline: an aiohttp handler that only reads the body and answers 202.

It is what any Python webhook receiver pays before doing anything at all (HTTP parsing, reading ~10 KB, one
answer), so hookbot's figures are quoted as a ratio of this one measured in the same run on the same core. By
default it runs on aiohttp's stock asyncio loop, as the reference figures in issue 6 were taken; ``--uvloop``
gives the same handler on uvloop, so the report can also show the ratio against an equally tuned baseline.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, text="accepted")


def new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the stock asyncio loop")
    args = parser.parse_args()
    app = web.Application(client_max_size=25 * 1024 * 1024)
    app.router.add_post("/webhook", receive)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=new_loop(args.uvloop))


if __name__ == "__main__":
    main()
