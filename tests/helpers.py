"""Small helpers shared by the tests: fixture files, signed GitHub requests, settings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.config import Settings, load_settings
from bot.github_webhook import sign

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "test-webhook-secret"


async def wait_idle(client: TestClient, bound: int = 2000) -> None:
    """Poll /healthz until nothing is pending: a bounded loop, not a timing (every delivery finished, or fail)."""
    for _ in range(bound):
        health = await (await client.get("/healthz")).json()
        if health["pending"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("deliveries still pending")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def github_headers(
    body: bytes, event: str, *, secret: str = SECRET, delivery_id: str | None = None, **extra: str
) -> dict[str, str]:
    """Headers as GitHub sends them for a JSON delivery signed with ``secret``."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret.encode()),
        "User-Agent": "GitHub-Hookshot/test",
    }
    headers.update(extra)
    return headers


def make_settings(tmp_path: Path, config: str = "", **env: Any) -> Settings:
    """Settings from a TOML snippet and environment values, isolated under ``tmp_path``."""
    path = tmp_path / "hookbot.toml"
    path.write_text(config)
    environment = {"HOOKBOT_STATE_DIR": str(tmp_path / "state"), "GITHUB_WEBHOOK_SECRET": SECRET}
    environment.update({key: str(value) for key, value in env.items()})
    return load_settings(environment, path)


def installation_token_2026(n: int = 1) -> str:
    """An installation token in the format GitHub moved to in 2026: ``ghs_`` and a signed JWT (three base64url
    parts joined by dots), about 520 characters in all. Deterministic, so a test can look for any part of it."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(b'{"alg":"RS256","typ":"JWT"}')
    claims = part(
        b'{"iss":"github.com","sub":"installation:%d","aud":"api.github.com","iat":1790000000,"exp":1790003600}' % n
    )
    # an RS256 signature is 256 bytes
    signature = part(b"".join(hashlib.sha512(b"%d-%d" % (n, i)).digest() for i in range(4)))
    return f"ghs_{header}.{claims}.{signature}"
