"""Where hookbot's CPU goes: cProfile and py-spy over a load, a breakdown by plugins loaded, and an interleaved
A/B of two checkouts (what one change gave, measured side by side)."""

from __future__ import annotations

import collections
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from load import Load, Round, measure
from servers import BENCH, HOOKBOT, PYTHON, ROOT, SERVER_CORE, Server, make_servers, server_env


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2)


def hookbot_on(workdir: Path, workload: str) -> Server:
    """hookbot serve as `make bench` runs it on ``workload``: ``issues`` (handled) or ``push`` (no plugin wants it)."""
    return next(s for s in make_servers(workdir) if s.name.startswith("hookbot") and s.workload == workload)


def cprofile(workdir: Path, load: Load, duration_s: int, workload: str = "issues") -> None:
    """Run hookbot serve under cProfile (its event-loop thread only) through a load and print the top functions.

    Deterministic counts complement py-spy's samples: cProfile inflates cheap calls but sees every one of them,
    and it does not count the journal thread's fsync waits as time.
    """
    import pstats

    stats_path = workdir / "serve.prof"
    hookbot = hookbot_on(workdir, workload)
    hookbot.argv = ["taskset", "-c", SERVER_CORE, str(PYTHON), "-m", "cProfile", "-o", str(stats_path),
                    str(HOOKBOT), *hookbot.argv[4:]]  # fmt: skip
    with hookbot.running():
        load.run(hookbot.url, duration_s, workload)
        hookbot.drain()
    kept = BENCH / "profile-hookbot.prof"
    kept.write_bytes(stats_path.read_bytes())  # for pstats afterwards: callers, callees
    print(f"cProfile stats kept in {kept.relative_to(ROOT)}")
    stats = pstats.Stats(str(stats_path))
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(60)


BREAKDOWN = {
    "hookbot, no plugins (door, journal, dispatch)": "handlers = []\n",
    "hookbot, greeter only": 'handlers = ["greeter"]\n',
    "hookbot, every built-in plugin (the default)": "",
}


def breakdown(workdir: Path, load: Load, duration_s: int, warmup_s: int) -> None:
    """Where a delivery's CPU goes: the HTTP floor (bare on uvloop), then hookbot with more and more plugins.

    The server's core is saturated in every case, so CPU per request is also the inverse of throughput, and it
    is steadier than requests/s on a shared machine.
    """
    env = server_env(workdir)
    servers = {server.name: server for server in make_servers(workdir)}
    runs = [("bare aiohttp on uvloop (HTTP floor)", servers["bare-uvloop"])]
    for number, (label, toml) in enumerate(BREAKDOWN.items()):
        config = workdir / f"breakdown-{number}.toml"
        config.write_text(toml)
        argv = [str(HOOKBOT), "serve", "--host", "127.0.0.1", "--config", str(config)]
        runs.append((label, Server(f"hookbot-{number}", argv, env, workdir, reports_pending=True)))
    runs.append(("peer: aiohttp + gidgethub, the greeter's work", servers["peer"]))
    print("| server | effective deliveries/s | CPU us/request (event loop + other threads) | p99 ms | RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for label, server in runs:
        with server.running():
            r, loop_us, others_us = measure_split(server, load, duration_s, warmup_s)
        print(
            f"| {label} | {r.effective_per_s:.0f} | {r.cpu_us_per_request:.0f} ({loop_us:.0f} + {others_us:.0f})"
            f" | {r.p99_ms:.1f} | {r.rss_mib:.1f} |"
        )


def measure_split(server: Server, load: Load, duration_s: int, warmup_s: int) -> tuple[Round, float, float]:
    """One round, and its CPU per request split between the event-loop thread and the others (the journal's)."""
    load.run(server.url, warmup_s, server.workload)
    server.drain()
    loop_before, others_before = server.thread_cpu_seconds()
    r = measure(server, load, 1, duration_s, 0)
    loop_after, others_after = server.thread_cpu_seconds()
    per = 1e6 / max(1, r.requests)
    return r, (loop_after - loop_before) * per, (others_after - others_before) * per


def against(
    workdir: Path, load: Load, other: Path, rounds: int, duration_s: int, warmup_s: int, workload: str = "issues"
) -> None:
    """A/B: hookbot from this checkout and from ``other`` (another checkout or worktree), interleaved.

    The other checkout's ``bot`` and ``handlers`` are put first on PYTHONPATH, so both run with this venv's
    libraries and differ only in hookbot's own code: what one change gave, measured side by side.
    """
    env = server_env(workdir)
    argv = [str(HOOKBOT), "serve", "--host", "127.0.0.1"]
    sides = {"this": dict(env), str(other): {**env, "PYTHONPATH": str(other.resolve())}}
    results: dict[str, list[tuple[Round, float, float]]] = {name: [] for name in sides}
    for number in range(1, rounds + 1):
        for name, side_env in sides.items():
            server = Server(
                "hookbot",
                argv,
                side_env,
                workdir,
                workload=workload,
                reports_pending=True,
            )
            with server.running():
                r, loop_us, other_us = measure_split(server, load, duration_s, warmup_s)
            results[name].append((r, loop_us, other_us))
            print(
                f"round {number} {name:30} effective {r.effective_per_s:7.0f}/s"
                f"  CPU {r.cpu_us_per_request:4.0f} us/request (loop {loop_us:.0f}, other threads {other_us:.0f})"
                f"  p99 {r.p99_ms:5.1f} ms  non-2xx {r.non_2xx}",
                flush=True,
            )
    print("\n| hookbot from | effective deliveries/s | CPU us/request (loop + other threads) | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        effective = median([r.effective_per_s for r, _, _ in runs])
        cpu = median([r.cpu_us_per_request for r, _, _ in runs])
        loop_us = median([loop for _, loop, _ in runs])
        others_us = median([others for _, _, others in runs])
        p99 = median([r.p99_ms for r, _, _ in runs])
        print(f"| {name} | {effective:.0f} | {cpu:.0f} ({loop_us:.0f} + {others_us:.0f}) | {p99:.1f} |")


def profile(workdir: Path, load: Load, duration_s: int, rate: int, workload: str = "issues") -> None:
    """Run hookbot under wrk with py-spy attached and print where its core goes (self time, top frames)."""
    py_spy = PYTHON.parent / "py-spy"
    if not py_spy.exists():
        sys.exit("py-spy is missing: .venv/bin/pip install py-spy")
    hookbot = hookbot_on(workdir, workload)
    raw = BENCH / "profile-hookbot.txt"
    with hookbot.running():
        load.run(hookbot.url, 2, workload)
        hookbot.drain()
        spy = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(hookbot.proc.pid if hookbot.proc else 0), "--rate", str(rate),
             "--duration", str(duration_s + 3), "--nonblocking", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            load.run(hookbot.url, duration_s, workload)
            hookbot.drain()
            spy.wait(timeout=duration_s + 60)
        finally:
            if spy.poll() is None:
                spy.terminate()
                spy.wait(timeout=10)
    totals: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        totals[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{samples} samples; collapsed stacks in {raw.relative_to(ROOT)}")
    print("\nself time, top 25:")
    for frame, count in totals.most_common(25):
        print(f"  {100 * count / samples:5.1f}%  {frame}")
    print("\ninclusive time, top 40:")
    for frame, count in inclusive.most_common(40):
        print(f"  {100 * count / samples:5.1f}%  {frame}")
