"""What per-repository configuration costs: a delivery's lookup on a warm cache, and refusing hostile files.

Run: `.venv/bin/python bench/repo_config.py`. Not a test: CI never runs it; README's "Per-repository
configuration" and the issue's report quote its output.
"""

from __future__ import annotations

import asyncio
import base64
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

from bot.repo_config import CeilingEntry, ServerCeiling
from bot.repo_config_loader import RepoConfigs
from bot.repo_config_yaml import RepoConfigError, parse_repo_file
from handlers import greeter

FILE = b"greeter:\n  issue_comment: 'Hi @{author}'\n  skip_authors: [dependabot*]\n"
LOOKUPS = 100_000
# Nine levels of nine: 9**9 (387 million) strings once expanded, from 414 bytes.
ALIAS_BOMB = b'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + b"".join(
    b"%c: &%c [%s]\n" % (name, name, b", ".join([b"*%c" % (name - 1)] * 9)) for name in range(ord("b"), ord("j"))
)


class ContentsAPI:
    """Answers the contents API as GitHub would for one file, counting the requests."""

    def __init__(self) -> None:
        self.requests = 0

    async def get_conditional(self, path: str, etag: str | None = None) -> tuple[int, Mapping[str, str], Any]:
        self.requests += 1
        content = base64.b64encode(FILE).decode()
        return 200, {"etag": 'W/"1"'}, {"type": "file", "size": len(FILE), "sha": "1", "content": content}


async def warm_lookups() -> tuple[float, int]:
    ceiling = ServerCeiling(
        {"greeter": CeilingEntry(greeter.GreeterConfig(), greeter.repository_settings)}, frozenset({"greeter"})
    )
    configs = RepoConfigs(ceiling)
    api = ContentsAPI()
    gh: Any = api
    await configs.resolve(gh, "octo-org/app")
    started = time.perf_counter()
    for _ in range(LOOKUPS):
        await configs.resolve(gh, "octo-org/app")
    return (time.perf_counter() - started) / LOOKUPS, api.requests


def refusal(text: bytes) -> tuple[float, int, str]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        parse_repo_file(text)
        message = "accepted"
    except RepoConfigError as exc:
        message = str(exc)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, message


def main() -> None:
    parse_repo_file(FILE)  # import PyYAML first, so the peaks below are the parse's own
    per_lookup, requests = asyncio.run(warm_lookups())
    print(f"warm lookup: {per_lookup * 1e6:.2f} us per delivery; contents requests for {LOOKUPS + 1}: {requests}")
    for name, text in (("alias bomb", ALIAS_BOMB), ("1 MiB file", b"#" * (1024 * 1024))):
        elapsed, peak, message = refusal(text)
        print(f"{name} ({len(text)} bytes): {elapsed * 1000:.2f} ms, peak {peak / 1024:.0f} KiB: {message}")


if __name__ == "__main__":
    main()
