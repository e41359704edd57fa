"""`make bench`: hookbot's receive path beside a bare aiohttp handler and its peers, interleaved, on loopback.

Each round starts every server fresh, pinned to core 0, and drives it with wrk pinned to core 1 with distinct,
genuinely signed deliveries (bench/load.py); it waits until hookbot's ``/healthz`` reports nothing pending, so the
figure includes the work, not just the answers. Servers take turns in every round (bench/servers.py:
bare aiohttp, on uvloop, a bedevere-style peer, Probot and @octokit/webhooks when Node.js is there, and hookbot on
a handled and an unhandled delivery), so drift and the neighbours' load hit all of them alike; the report
(bench/report.py) compares CPU per delivery with the bare handler's on the same workload. Then a longer hookbot
run samples RSS for flatness, a forged-signature flood measures RSS under attack, and fresh interpreters time the
Lambda cold start (bench/coldstart.py). Results go to bench/results.json, bench/latency.png and the generated
section of BENCHMARKS.md; bench/profiling.py has the profiling and A/B modes.

Every load is bounded (wrk -d), every wait has a deadline, and every server started is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from coldstart import cold_start
from load import Load, Round, measure
from profiling import against, breakdown, cprofile, profile
from report import plot, render, summarise, write_benchmarks_md
from servers import BENCH, ROOT, Server, machine, make_servers, node_peers_installed


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pool",
        type=int,
        default=400_000,
        help="distinct signed bodies per workload: more than the fastest server answers in one run (~33,000/s)",
    )
    parser.add_argument("--soak-segments", type=int, default=6, help="hookbot-only segments sampling RSS")
    parser.add_argument("--cold-repetitions", type=int, default=15)
    parser.add_argument("--only", help="measure the servers whose name contains this, no report")
    parser.add_argument("--profile", action="store_true", help="profile hookbot with py-spy instead")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--cprofile", action="store_true", help="profile hookbot's loop thread with cProfile instead")
    parser.add_argument("--breakdown", action="store_true", help="CPU per request with more and more plugins")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT", help="A/B hookbot here against another checkout")
    parser.add_argument(
        "--workload",
        choices=("issues", "push"),
        default="issues",
        help="for --against, --profile and --cprofile: handled issues.opened, or a push no plugin wants",
    )
    return parser.parse_args()


def rounds_of(servers: list[Server], load: Load, args: argparse.Namespace) -> list[Round]:
    rounds: list[Round] = []
    for number in range(1, args.rounds + 1):
        for server in servers:
            with server.running():
                r = measure(server, load, number, args.duration, args.warmup)
            rounds.append(r)
            print(
                f"round {number} {r.server:12} {r.requests_per_s:8.0f} req/s  effective {r.effective_per_s:8.0f}/s"
                f"  drain {r.drain_s:5.2f}s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  non-2xx {r.non_2xx}"
                f"  socket errors {r.socket_errors}  RSS {r.rss_mib:.1f} MiB  CPU {r.cpu_busy:.0%}"
                f" = {r.cpu_us_per_request:.0f} us/request",
                flush=True,
            )
    return rounds


def soak(hookbot: Server, load: Load, segments: int, duration_s: int) -> list[float]:
    """RSS of one long-running hookbot after each segment of load: it should stay flat."""
    samples: list[float] = []
    with hookbot.running():
        for _ in range(segments):
            load.run(hookbot.url, duration_s, hookbot.workload)
            hookbot.drain()
            samples.append(hookbot.rss_mib())
            print(f"soak: RSS {samples[-1]:.1f} MiB", flush=True)
    return samples


def forged_flood(hookbot: Server, load: Load, duration_s: int) -> Round:
    """hookbot under a flood of well-formed deliveries signed with the wrong key: every one is a 401."""
    hookbot.workload = "issues-forged"
    try:
        with hookbot.running():
            r = measure(hookbot, load, 0, duration_s, 0)
    finally:
        hookbot.workload = "issues"
    print(f"forged flood: {r.requests} requests, RSS {r.rss_mib:.1f} MiB, {r.cpu_us_per_request:.0f} us/request")
    return r


def main() -> int:
    args = arguments()
    # A SIGTERM (e.g. from `timeout`) unwinds through the `finally` blocks, so no server is left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("wrk and taskset are needed: apt-get install -y wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the server on one, wrk on the other")
    if not node_peers_installed():
        print("Node.js or bench/node/node_modules is missing: Probot and @octokit/webhooks are skipped", flush=True)

    with tempfile.TemporaryDirectory(prefix="hookbot-bench-") as tmp:
        workdir = Path(tmp)
        load = Load(workdir, args.connections, args.pool)
        if args.breakdown:
            breakdown(workdir, load, args.duration, args.warmup)
            return 0
        if args.against:
            against(workdir, load, args.against, args.rounds, args.duration, args.warmup, args.workload)
            return 0
        if args.cprofile:
            cprofile(workdir, load, args.duration, args.workload)
            return 0
        if args.profile:
            profile(workdir, load, args.duration, args.rate, args.workload)
            return 0
        info = machine()
        servers = [s for s in make_servers(workdir) if args.only is None or args.only in s.name]
        rounds = rounds_of(servers, load, args)
        if args.only:
            return 0
        hookbot = servers[-1]
        rss = soak(hookbot, load, args.soak_segments, args.duration) if args.soak_segments else []
        forged = forged_flood(hookbot, load, args.duration)
        cold = cold_start(workdir, args.cold_repetitions)
        for name, figures in (cold or {}).get("variants", {}).items():
            print(
                f"cold start, {name}: {figures['imports_ms']} vs {figures['lambda_ms']} ms, {figures['ratio']} x"
                f" (CPU time {figures['cpu_ratio']} x)"
            )
        body_bytes = {name: f"{pool.body_bytes:,} bytes ({name})" for name, pool in load.pools.items()}
        example = load.argv("http://127.0.0.1:PORT", args.duration, "issues")

    summary = summarise(rounds, rss, cold, forged)
    config = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "pool_size": args.pool,
        "soak_segments": args.soak_segments,
        "cold_repetitions": args.cold_repetitions,
        "body_bytes": ", ".join(body_bytes.values()),
        "wrk": " ".join(
            [*example[:-7], "POOL", "RECORD_BYTES", "71", "FIRST", "RECORDS", "ID_PREFIX", "issues"]
        ).replace(f"{ROOT}/", ""),
    }
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    section = render(config, info, rounds, summary)
    print()
    print(section)
    if not args.no_write:
        (BENCH / "results.json").write_text(
            json.dumps(
                {"config": config, "machine": info, "summary": summary, "rounds": [asdict(r) for r in rounds]},
                indent=2,
            )
            + "\n"
        )
        plot(rounds, BENCH / "latency.png")
        write_benchmarks_md(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
