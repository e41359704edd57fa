"""Less on show: what hookbot reveals to whoever can reach its port or read its settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from tests.conftest import free_port
from tests.fake_github import FakeGitHub
from tests.helpers import AppClient, make_settings
from tests.processes import Server

METRICS_TOKEN = "metrics-token-for-the-scraper"


def test_settings_repr_never_shows_secrets(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        '[github]\nprevious_secrets = ["old-secret-still-accepted"]\n',
        GITHUB_TOKEN="ghp_token_value",
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----key-material",
        HOOKBOT_METRICS_TOKEN=METRICS_TOKEN,
    )
    shown = repr(settings)
    assert settings.github.token and settings.server.metrics_token == METRICS_TOKEN
    for secret in ("ghp_token_value", "key-material", "old-secret-still-accepted", METRICS_TOKEN):
        assert secret not in shown
    assert settings.github.webhook_secret and settings.github.webhook_secret not in shown


@pytest.fixture
async def client_with_metrics_token(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]
) -> AppClient:
    _, url = fake_github
    config = make_settings(tmp_path, f'[server]\nmetrics_token = "{METRICS_TOKEN}"\n', GITHUB_API_URL=url)
    test_client: AppClient = await aiohttp_client(create_app(Runtime.build(config, secrets_=webhook_secrets(config))))
    return test_client


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {METRICS_TOKEN}", METRICS_TOKEN])
async def test_metrics_need_the_bearer_token_when_one_is_set(
    client_with_metrics_token: AppClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client_with_metrics_token.get("/metrics", headers=headers)
    assert response.status == 401 and "hookbot_" not in await response.text()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_metrics_with_the_bearer_token(client_with_metrics_token: AppClient) -> None:
    response = await client_with_metrics_token.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status == 200 and "hookbot_deliveries" in await response.text()
    assert (await client_with_metrics_token.get("/healthz")).status == 200  # health stays open for probes


async def test_metrics_port_serves_metrics_apart_from_the_webhook_port(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    _, url = fake_github
    metrics_port = free_port()
    server = Server(tmp_path, url, f"[server]\nmetrics_port = {metrics_port}\n")
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/metrics") as response:
                assert response.status == 404
            async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                assert response.status == 200 and "hookbot_deliveries" in await response.text()
    finally:
        assert await server.stop() == 0
