"""Recovering missed deliveries: which GUIDs to redeliver, and asking a fake GitHub for them (token and App)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.commands.deliveries import redeliver
from bot.config_schema import ConfigError
from bot.redeliver import Hook, to_redeliver
from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import make_settings

HOOK = "/repos/Codertocat/Hello-World/hooks/1"


def attempt(id_: int, guid: str, minutes_ago: float, status_code: int, redelivery: bool = False) -> dict[str, Any]:
    # Relative to now, when the test runs: the windows below (15m, 1h) must not drift with the suite's length.
    stamp = datetime.fromtimestamp(time.time() - minutes_ago * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": id_,
        "guid": guid,
        "delivered_at": stamp,
        "redelivery": redelivery,
        "duration": 0.1,
        "status": "OK" if 200 <= status_code < 300 else "failed",
        "status_code": status_code,
        "event": "issues",
        "action": "opened",
    }


def hook_log() -> list[dict[str, Any]]:
    """A hook's recent deliveries, newest first, as GitHub lists them."""
    return [
        attempt(9, "g-fixed", 5, 202, redelivery=True),  # failed, then redelivered successfully: leave it
        attempt(8, "g-down", 10, 0),  # no answer at all (hookbot was down)
        attempt(7, "g-busy", 20, 503, redelivery=True),  # failed twice: redeliver the latest
        attempt(6, "g-ok", 25, 202),
        attempt(5, "g-fixed", 30, 502),
        attempt(4, "g-busy", 40, 503),
        attempt(3, "g-old", 120, 500),  # outside the window
    ]


def test_to_redeliver_picks_the_latest_failed_attempt_of_each_unrecovered_guid() -> None:
    chosen = to_redeliver(hook_log(), since=time.time() - 3600)
    assert [(a["guid"], a["id"]) for a in chosen] == [("g-busy", 7), ("g-down", 8)]


def test_hook_entries_are_checked() -> None:
    assert Hook.parse("octo/repo:12").path == "/repos/octo/repo/hooks/12"
    for bad in ("octo/repo", "octo:12", "octo/repo:x"):
        with pytest.raises(ConfigError, match="owner/repo:HOOK_ID"):
            Hook.parse(bad)


async def test_redeliver_command_with_a_token_pages_through_the_log(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = fake_github
    fake.hook_deliveries[HOOK] = hook_log()
    settings = make_settings(
        tmp_path, '[github]\nhooks = ["Codertocat/Hello-World:1"]\n', GITHUB_TOKEN="ghp_test", GITHUB_API_URL=url
    )
    assert await redeliver(settings, "1h", dry_run=False) == 0
    assert sorted(fake.redelivered) == [(HOOK, 7), (HOOK, 8)]
    pages = fake.calls("GET", f"{HOOK}/deliveries")
    assert len(pages) == 4  # page size 2 in the fake; stops at the first attempt older than the window
    assert all(r.headers["Authorization"] == "token ghp_test" for r in pages)
    out = capsys.readouterr().out
    assert "redelivered g-busy" in out and "redelivered g-down" in out

    fake.redelivered.clear()
    assert await redeliver(settings, "1h", dry_run=True) == 0
    assert fake.redelivered == []
    assert "would redeliver g-busy" in capsys.readouterr().out


async def test_redeliver_for_the_app_webhook_uses_the_app_jwt(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    fake.hook_deliveries["/app/hook"] = hook_log()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = make_settings(tmp_path, GITHUB_APP_ID="1234", GITHUB_PRIVATE_KEY=pem, GITHUB_API_URL=url)
    assert await redeliver(settings, "15m", dry_run=False) == 0
    assert fake.redelivered == [("/app/hook", 8)]
    assert all(r.headers["Authorization"].lower().startswith("bearer ey") for r in fake.requests)  # a JWT


async def test_serve_sweeps_periodically(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> None:
    fake, url = fake_github
    fake.hook_deliveries[HOOK] = hook_log()
    settings = make_settings(
        tmp_path,
        '[github]\nhooks = ["Codertocat/Hello-World:1"]\nredeliver_every = "1h"\n',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=url,
    )
    await aiohttp_client(create_app(Runtime.build(settings, secrets_=webhook_secrets(settings))))
    for _ in range(200):
        if len(fake.redelivered) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(fake.redelivered) == [(HOOK, 7), (HOOK, 8)]
