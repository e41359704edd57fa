"""hookbot's work per delivery without HTTP: CPU time per delivery of the real inbox and dispatcher, in process.

32 closed-loop submitters (like wrk's 32 connections) each verify a signed ``issues.opened`` body, parse it into a
Delivery and submit it to a real JournalInbox (SQLite journal in a temp dir, group commit, workers) whose
workers run the real dispatcher and plugins (dry-run), until every delivery is finished. The figure is the
process's CPU time (all threads) per delivery, and its split between the event-loop thread and the others (the
journal's); with no sockets and no second process it is steadier than a server run, so it suits comparing one
change at a time: ``PYTHONPATH=/other/checkout python bench/inprocess.py`` measures another checkout's code.
Every delivery has a body of its own (bench/load.py's pool: one field differs), since hookbot takes a body it has
seen before for a duplicate whatever its delivery id, and a repeated body would measure the duplicate path.

    python bench/inprocess.py [--config 'handlers = []'] [--deliveries 10000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import hmac
import logging
import os
import pstats
import statistics
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from load import WORKLOADS  # bench/load.py and bench/servers.py, beside this script
from servers import thread_cpu_seconds

from bot.commands.serve import tune_garbage_collector
from bot.config import load_settings
from bot.github_webhook import delivery_from_github, verify_signature
from bot.inbox import JournalInbox
from bot.logs import setup_logging
from bot.runtime import Runtime
from bot.server import make_processor

SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway secret
CLIENTS = 32


def signed_bodies(first: int, count: int) -> list[tuple[bytes, str]]:
    """``count`` distinct signed ``issues.opened`` bodies, numbered from ``first`` (no number is used twice: the
    runtime's de-duplication memory outlives each run)."""
    workload = WORKLOADS["issues"]
    before, after = workload.template().split(workload.marker)
    bodies = [before + workload.unique(number) + after for number in range(first, first + count)]
    return [(body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()) for body in bodies]


async def run(runtime: Runtime, state: Path, bodies: list[tuple[bytes, str]]) -> tuple[float, float]:
    """Submit every body through a fresh journal inbox; CPU us per delivery on the loop and other threads."""
    deliveries = len(bodies)
    inbox = JournalInbox(
        state / f"journal-{uuid.uuid4().hex}.sqlite3", make_processor(runtime), capacity=10_000, workers=8
    )
    await inbox.start()
    submitted = 0
    admissions: Counter[str] = Counter()

    async def client() -> None:
        nonlocal submitted
        while submitted < deliveries:
            body, signature = bodies[submitted]
            submitted += 1
            verify_signature(body, signature_256=signature, signature_sha1=None, secrets=runtime.secrets)
            delivery = delivery_from_github(
                body, event="issues", delivery_id=str(uuid.uuid4()), content_type="application/json", source="replay"
            )
            admissions[await inbox.submit(delivery)] += 1

    loop_before, others_before = thread_cpu_seconds(os.getpid())
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    while inbox.pending:  # noqa: ASYNC110 - the inbox exposes a count, not an event
        await asyncio.sleep(0.001)
    loop_after, others_after = thread_cpu_seconds(os.getpid())
    await inbox.stop(grace=1.0)
    if admissions["accepted"] != deliveries:  # a duplicate or a refusal would measure another path
        raise SystemExit(f"not every delivery was accepted as new: {dict(admissions)}")
    return (loop_after - loop_before) / deliveries * 1e6, (others_after - others_before) / deliveries * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="", help="hookbot.toml text, e.g. 'handlers = []'")
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one repetition (main thread) instead")
    parser.add_argument("--sort", default="tottime", help="with --profile: tottime or cumulative")
    parser.add_argument("--lines", type=int, default=30, help="with --profile: how many functions to show")
    args = parser.parse_args()
    setup_logging()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(Path(os.devnull).open("w"))  # noqa: SIM115 - open for the whole run; formatting still runs
    with tempfile.TemporaryDirectory(prefix="hookbot-inprocess-") as tmp:
        state = Path(tmp)
        (state / "hookbot.toml").write_text(args.config)
        env = {"HOOKBOT_STATE_DIR": str(state), "GITHUB_WEBHOOK_SECRET": SECRET, "HOOKBOT_DRY_RUN": "1"}
        runtime = Runtime.build(load_settings(env, state / "hookbot.toml"))
        tune_garbage_collector()  # as `hookbot serve` does once it has started
        warmup = 2_000
        asyncio.run(run(runtime, state, signed_bodies(0, warmup)))  # imports, caches, the first journal pages
        runs = [signed_bodies(warmup + i * args.deliveries, args.deliveries) for i in range(args.repetitions)]
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(asyncio.run, run(runtime, state, runs[0]))
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
            return
        samples = [asyncio.run(run(runtime, state, bodies)) for bodies in runs]
    loop_us = statistics.median(s[0] for s in samples)
    others_us = statistics.median(s[1] for s in samples)
    print(
        f"CPU per delivery, median of {args.repetitions} x {args.deliveries}: {loop_us + others_us:.1f} us"
        f" (event loop {loop_us:.1f}, other threads {others_us:.1f}); every run: "
        + ", ".join(f"{a + b:.1f}" for a, b in samples)
    )


if __name__ == "__main__":
    main()
