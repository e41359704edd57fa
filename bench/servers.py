"""The servers `make bench` measures, each a process pinned to one core, and how to read their CPU and memory.

Every server is started fresh for every round with a state directory of its own, so no round inherits another's
journal or de-duplication memory.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_PEERS = BENCH / "node"
PYTHON = Path(sys.executable)
HOOKBOT = PYTHON.parent / "hookbot"
SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - a throwaway secret for a loopback benchmark
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:hookbot-bench"
SERVER_CORE = "0"
CLIENT_CORE = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds so far of process ``pid``'s main thread (the event loop), and of all its other threads together
    (the journal's), from /proc/PID/task/*/stat."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if task.name == str(pid):
            main += seconds
        else:
            others += seconds
    return main, others


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return bytes(response.read())


class Server:
    """One server process pinned to SERVER_CORE; always stopped by the context manager.

    ``workload`` names the deliveries it is driven with (bench/load.py's WORKLOADS): the same server program can
    be measured on several paths, e.g. hookbot on a delivery its plugins handle and on one nobody wants.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        workdir: Path,
        *,
        workload: str = "issues",
        reports_pending: bool = False,
    ) -> None:
        self.name = name
        self.workload = workload
        self.reports_pending = reports_pending  # answers before its work is done; /healthz says what is left
        self.port = free_port()
        self.argv = ["taskset", "-c", SERVER_CORE, *argv, "--port", str(self.port)]
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        env = {**self.env, "HOOKBOT_STATE_DIR": str(self.workdir / f"state-{self.name}-{time.time_ns()}")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, cwd=self.workdir, stdout=log, stderr=log, start_new_session=True
            )
        try:
            self._wait_ready()
            yield self
        finally:
            self._stop()

    def _wait_ready(self, deadline_s: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen within {deadline_s}s:\n{self.log_tail()}")

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_mib(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return round(int(match.group(1)) / 1024, 1) if match else float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server so far (all its threads)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> tuple[float, float]:
        assert self.proc is not None
        return thread_cpu_seconds(self.proc.pid)

    def pending(self) -> int:
        """Accepted deliveries not finished; the other servers have no work left after their answer."""
        if not self.reports_pending:
            return 0
        return int(json.loads(http_get(self.url + "/healthz"))["pending"])

    def drain(self, deadline_s: float = 60.0) -> float:
        """Seconds until nothing is pending (polled every 10 ms); raises when the deadline passes."""
        started = time.monotonic()
        while (pending := self.pending()) > 0:
            if time.monotonic() - started > deadline_s:
                raise RuntimeError(f"{self.name}: {pending} deliveries still pending after {deadline_s}s")
            time.sleep(0.01)
        return time.monotonic() - started


def server_env(workdir: Path) -> dict[str, str]:
    """A clean environment: no GitHub credentials (dry-run: no call leaves the machine).

    PYTHONPATH passes through, so another checkout's ``bot`` can be measured with this harness.
    """
    passed = {key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ}
    return {
        **passed,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "HOOKBOT_DRY_RUN": "1",
        "HOOKBOT_LOG_FORMAT": "json",
        "SNS_TOPIC_ARNS": TOPIC_ARN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def node_peers_installed() -> bool:
    """Node.js and the peers' packages (`make bench` runs `npm ci` in bench/node when Node.js is there)."""
    return shutil.which("node") is not None and (NODE_PEERS / "node_modules").is_dir()


def throwaway_rsa_key() -> str:
    """Probot will not start without a GitHub App key; the benchmark never calls GitHub, so any key does."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def make_servers(workdir: Path) -> list[Server]:
    """Every server of a round, in the order they take turns.

    The bare aiohttp handler is the reference on both workloads; the peers each receive the handled workload
    (``issues.opened``), as their one handler is registered for it; hookbot runs both paths. hookbot comes last,
    so ``make_servers(...)[-1]`` is hookbot on the handled path, for the profiling commands.
    """
    env = server_env(workdir)
    bare = [str(PYTHON), str(BENCH / "bare_server.py")]
    hookbot = [str(HOOKBOT), "serve", "--host", "127.0.0.1"]
    servers = [
        Server("bare", bare, env, workdir),
        Server("bare-uvloop", [*bare, "--uvloop"], env, workdir),
        Server("peer", [str(PYTHON), str(BENCH / "peer_server.py")], env, workdir),
    ]
    if node_peers_installed():
        node = str(shutil.which("node"))
        servers += [
            Server("probot", [node, str(NODE_PEERS / "probot_server.js")], env | {"PRIVATE_KEY": throwaway_rsa_key()},
                   workdir),
            Server("octokit", [node, str(NODE_PEERS / "octokit_server.js")], env, workdir),
        ]  # fmt: skip
    servers += [
        Server("bare-push", bare, env, workdir, workload="push"),
        Server("hookbot-push", hookbot, env, workdir, workload="push", reports_pending=True),
        Server("hookbot", hookbot, env, workdir, reports_pending=True),
    ]
    return servers


def uses_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def command_version(argv: list[str]) -> str:
        if shutil.which(argv[0]) is None:
            return "not installed"
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout + done.stderr).split("\n", 1)[0].strip()

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": version("aiohttp"),
        "gidgethub": version("gidgethub"),
        "orjson": version("orjson"),
        "uvloop": version("uvloop"),
        "node": command_version(["node", "--version"]),
        "wrk": command_version(["wrk", "-v"]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
