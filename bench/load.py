"""The load: wrk pinned to the client core, sending distinct, genuinely signed deliveries from a pre-signed pool.

hookbot treats a body it has seen before as a duplicate whatever its delivery id, so a load that repeated one
body would measure the duplicate path. Every request therefore carries a body of its own (one field differs: the
issue's id, or the push's ``after`` sha) with its own HMAC and delivery id. The pool is a file of fixed-size
records (signature, then body) that bench/webhook.lua reads one record per request; bodies keep the fixture's
length, so every request costs the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import BENCH, CLIENT_CORE, ROOT, SECRET, Server

SIGNATURE_BYTES = len("sha256=") + 64


class Workload:
    """A kind of delivery: its event, the real payload it is made from, and the one field that makes each new.

    ``marked`` sets that field to a marker value that occurs once in the compact body; ``unique(i)`` is the
    i-th body's text for it, of the same length, so every body of a pool has the fixture's size.
    """

    event: str
    fixture: Path
    marker: bytes

    def marked(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def unique(self, number: int) -> bytes:
        raise NotImplementedError

    def template(self) -> bytes:
        """The fixture as GitHub sends it (compact JSON), with the varying field set to the marker."""
        payload = json.loads(self.fixture.read_bytes())
        self.marked(payload)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if body.count(self.marker) != 1:
            raise RuntimeError(f"{self.fixture.name}: the varying field is not unique in the body")
        return body


class IssueOpened(Workload):
    """Handled by the default plugins: the greeter composes its comment (dry-run)."""

    event = "issues"
    fixture = ROOT / "tests/fixtures/github/issues.opened.json"
    marker = b'"id":100000000000'

    def marked(self, payload: dict[str, Any]) -> None:
        payload["issue"]["id"] = 10**11

    def unique(self, number: int) -> bytes:
        return b'"id":%d' % (10**11 + number)


class Push(Workload):
    """Wanted by no default plugin (lambda_deploy is not loaded without rules)."""

    event = "push"
    fixture = ROOT / "tests/fixtures/github/push.json"
    marker = b'"after":"' + b"f" * 40 + b'"'

    def marked(self, payload: dict[str, Any]) -> None:
        payload["after"] = "f" * 40

    def unique(self, number: int) -> bytes:
        return b'"after":"%040x"' % number


WORKLOADS: dict[str, Workload] = {"issues": IssueOpened(), "push": Push()}


@dataclass
class Pool:
    """``size`` distinct signed bodies of one workload, in a file of fixed-size records."""

    workload: Workload
    path: Path
    size: int
    record_bytes: int = 0
    body_bytes: int = 0

    @classmethod
    def write(cls, workdir: Path, name: str, size: int, *, forged: bool = False) -> Pool:
        workload = WORKLOADS[name]
        template = workload.template()
        before, after = template.split(workload.marker)
        key = (SECRET + ("-forged" if forged else "")).encode()  # a forged flood: right shape, wrong key
        path = workdir / f"pool-{name}{'-forged' if forged else ''}.bin"
        with path.open("wb") as out:
            for number in range(size):
                body = before + workload.unique(number) + after
                signature = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
                out.write(signature + body)
        return cls(workload, path, size, SIGNATURE_BYTES + len(template), len(template))


@dataclass
class Load:
    """wrk runs over pre-signed pools; each run starts where the previous one stopped, so no body is sent twice
    within a run that sends fewer requests than the pool holds (a fast bare handler's run may not)."""

    workdir: Path
    connections: int
    pool_size: int
    pools: dict[str, Pool] = field(default_factory=dict)
    next_record: dict[str, int] = field(default_factory=dict)
    runs: int = 0

    def pool(self, name: str) -> Pool:
        if name not in self.pools:
            forged = name.endswith("-forged")
            self.pools[name] = Pool.write(self.workdir, name.removesuffix("-forged"), self.pool_size, forged=forged)
            self.next_record[name] = 0
        return self.pools[name]

    @staticmethod
    def one_signed() -> tuple[bytes, str]:
        """One signed body of the handled workload, for the cold-start event."""
        body = WORKLOADS["issues"].template()
        return body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    def argv(self, url: str, duration_s: int, pool_name: str) -> list[str]:
        self.runs += 1
        pool = self.pool(pool_name)
        prefix = f"bench-{os.getpid()}-{time.time_ns()}-{self.runs}"
        return [
            "taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{self.connections}", f"-d{duration_s}s",
            "--timeout", "5s", "-s", str(BENCH / "webhook.lua"), url + "/webhook",
            "--", str(pool.path), str(pool.record_bytes), str(SIGNATURE_BYTES), str(self.next_record[pool_name]),
            str(pool.size), prefix, pool.workload.event,
        ]  # fmt: skip

    def run(self, url: str, duration_s: int, pool_name: str = "issues") -> dict[str, Any]:
        done = subprocess.run(
            self.argv(url, duration_s, pool_name), capture_output=True, text=True, timeout=duration_s + 60, check=True
        )
        for line in done.stdout.splitlines():
            if line.startswith("WRK_JSON "):
                stats = dict(json.loads(line.removeprefix("WRK_JSON ")))
                # Every server starts with an empty state dir, so what must not repeat is a body within one run.
                stats["pool_wrapped"] = int(stats["requests"]) > self.pool_size
                self.next_record[pool_name] = (self.next_record[pool_name] + int(stats["requests"])) % self.pool_size
                return stats
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")


@dataclass
class Round:
    server: str
    round: int
    requests: int
    duration_s: float
    requests_per_s: float
    non_2xx: int
    socket_errors: int
    accepted: int
    drain_s: float
    effective_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mib: float
    cpu_busy: float  # share of its core the server used from the start of the load until nothing was pending
    cpu_us_per_request: float
    pool_wrapped: bool = False
    percentiles_ms: dict[str, float] = field(default_factory=dict)


def measure(server: Server, load: Load, number: int, duration_s: int, warmup_s: int) -> Round:
    if warmup_s:
        load.run(server.url, warmup_s, server.workload)
        server.drain()
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    stats = load.run(server.url, duration_s, server.workload)
    drain_s = server.drain()
    cpu = server.cpu_seconds() - cpu_before
    wall = time.monotonic() - wall_before
    duration = stats["duration_us"] / 1e6
    socket_errors = sum(stats[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    # Every request is a new delivery, so every answer below 400 is an acceptance (hookbot's 202, the others' 200).
    accepted = stats["requests"] - stats["status_errors"]
    percentiles = {p: round(us / 1000, 3) for p, us in stats["percentiles_us"].items()}
    return Round(
        server=server.name,
        round=number,
        requests=stats["requests"],
        duration_s=round(duration, 3),
        requests_per_s=round(stats["requests"] / duration, 1),
        non_2xx=stats["status_errors"],
        socket_errors=socket_errors,
        accepted=accepted,
        drain_s=round(drain_s, 3),
        effective_per_s=round(accepted / (duration + drain_s), 1),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        max_ms=round(stats["latency_max_us"] / 1000, 3),
        rss_mib=server.rss_mib(),
        cpu_busy=round(cpu / wall, 2),
        cpu_us_per_request=round(cpu / max(1, stats["requests"]) * 1e6, 1),
        pool_wrapped=bool(stats.get("pool_wrapped")),
        percentiles_ms=percentiles,
    )
