"""A real `hookbot serve` subprocess for the tests that need a real process: crashes, signals, replicas."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import free_port
from tests.helpers import SECRET, fixture_bytes, github_headers

ISSUE_OPENED = orjson.loads(fixture_bytes("github/issues.opened.json"))


def issue_body(number: int) -> bytes:
    payload = dict(ISSUE_OPENED, issue=dict(ISSUE_OPENED["issue"], number=number))
    return orjson.dumps(payload)


class Server:
    """One `python -m bot serve` subprocess on a free port, logging to a file in the test's directory."""

    def __init__(
        self,
        tmp_path: Path,
        api_url: str,
        config: str,
        extra_env: dict[str, str] | None = None,
        *,
        open_files: tuple[int, int] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.open_files = open_files  # (soft, hard) RLIMIT_NOFILE for the server process
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp_path / "hookbot.toml").write_text(config)
        self.env = {
            **os.environ,
            "GITHUB_TOKEN": "ghp_crashtest",
            "GITHUB_API_URL": api_url,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKBOT_STATE_DIR": str(tmp_path / "state"),
            "HOOKBOT_CONFIG": str(tmp_path / "hookbot.toml"),
            **(extra_env or {}),
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.tmp_path / "server.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                "--port",
                str(self.port),
                env=self.env,
                stderr=log,
                preexec_fn=self._limit_open_files if self.open_files else None,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("server did not start: " + (self.tmp_path / "server.log").read_text()[-2000:])

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def status_kib(self, field: str) -> int:
        """A field of /proc/PID/status in KiB: VmRSS (now) or VmHWM (peak since start or `reset_peak_rss`)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def reset_peak_rss(self) -> None:
        """Start VmHWM afresh (Linux: writing 5 to clear_refs), so that each phase of a test has its own peak."""
        assert self.process is not None
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def log_size(self) -> int:
        return (self.tmp_path / "server.log").stat().st_size

    async def post(self, body: bytes, delivery_id: str, event: str = "issues") -> int:
        headers = github_headers(body, event, delivery_id=delivery_id)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/webhook", data=body, headers=headers) as response,
        ):
            return response.status

    async def pending(self) -> int:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/healthz") as response:
            return int((await response.json())["pending"])

    async def wait_idle(self, timeout: float = 30.0) -> None:
        for _ in range(int(timeout / 0.1)):
            if await self.pending() == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("deliveries still pending")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return await self.exit_code()

    async def exit_code(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout=20)
