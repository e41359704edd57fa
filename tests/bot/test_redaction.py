"""Issue 12: credentials and addresses are hidden wherever hookbot writes them, 2026's installation tokens included.

GitHub's installation tokens became ``ghs_`` and a JWT of about 520 characters in 2026 (dots included): log lines
must hide all of it, not the part before the first dot; the audit record scans every string value for credentials
and e-mail addresses whatever ``redact`` says, and its key patterns match whatever the case; the App token cache
hands the long token on whole.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.config_schema import ConfigError
from bot.context import ActionLog
from bot.delivery import Delivery
from bot.github import GitHubClients
from bot.logs import JsonFormatter
from bot.plugin import Event
from bot.runtime import Runtime
from bot.settings import GitHubSettings
from handlers.audit.records import REDACTED, build_record, configure
from tests.fake_github import FakeGitHub
from tests.helpers import fixture_bytes, installation_token_2026, make_settings

TOKEN_2026 = installation_token_2026()
CLASSIC = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
FINE_GRAINED = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----"


def render(message: str) -> str:
    record = logging.LogRecord("hookbot.test", logging.INFO, __file__, 1, message, (), None)
    return JsonFormatter().format(record)


def test_the_2026_token_is_about_520_characters_with_dots() -> None:
    assert 500 <= len(TOKEN_2026) <= 540 and TOKEN_2026.startswith("ghs_") and TOKEN_2026.count(".") == 2


@pytest.mark.parametrize("secret", [TOKEN_2026, CLASSIC, FINE_GRAINED, AWS_KEY_ID, PRIVATE_KEY])
def test_log_lines_hide_every_part_of_a_credential(secret: str) -> None:
    line = json.loads(render(f"GitHub said no to {secret}. Retrying"))
    assert line["message"] == "GitHub said no to [redacted]. Retrying"


def push_with_secrets() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes("github/push.json"))
    payload["head_commit"]["message"] = (
        f"Rotate credentials\n\nold token {TOKEN_2026} and {CLASSIC}, ask alice.smith+ops@example.co.uk\n"
        f"aws {AWS_KEY_ID} pat {FINE_GRAINED}\n{PRIVATE_KEY}\n"
    )
    payload["pusher"]["Email"] = "Codertocat@octocat.org"
    return payload


def record_of(payload: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    config = configure({"destination": "file:///unused/", **section})
    delivery = Delivery("push", "d-1", payload, orjson.dumps(payload), "github-http")
    assert config is not None
    record: dict[str, Any] = build_record(Event(delivery), config)
    return record


def test_audit_hides_credentials_and_addresses_in_any_value_and_keys_whatever_their_case() -> None:
    payload = push_with_secrets()
    record = record_of(payload, {"redact": ["**.email"]})["payload"]
    assert record["head_commit"]["message"] == (
        "Rotate credentials\n\nold token [redacted] and [redacted], ask [redacted]\naws [redacted] pat [redacted]\n"
        "[redacted]\n"
    )
    assert record["pusher"]["Email"] == REDACTED and record["pusher"]["name"] == payload["pusher"]["name"]
    assert record["repository"]["ssh_url"] == payload["repository"]["ssh_url"]  # git@github.com:... is no address
    text = json.dumps(record)
    for secret in (TOKEN_2026.split(".")[-1], CLASSIC, AWS_KEY_ID, FINE_GRAINED, "alice.smith", "Codertocat@"):
        assert secret not in text


def test_audit_scans_values_even_with_no_redact_list_and_redact_values_false_keeps_addresses() -> None:
    payload = push_with_secrets()
    scanned = record_of(payload, {})["payload"]
    assert "alice.smith" not in scanned["head_commit"]["message"] and TOKEN_2026 not in json.dumps(scanned)

    kept = record_of(payload, {"redact_values": False})["payload"]
    message = kept["head_commit"]["message"]
    assert "alice.smith+ops@example.co.uk" in message and "old token [redacted] and [redacted]" in message
    assert kept["pusher"]["Email"] == "Codertocat@octocat.org"


def test_redact_values_is_a_setting_of_the_audit_section(tmp_path: Path) -> None:
    """Through hookbot's own config loading, which checks every key of a section against the plugin's SETTINGS."""
    section = '[hookbot]\nhandlers = ["audit"]\n[audit]\ndestination = "file:///unused/"\n'
    runtime = Runtime.build(make_settings(tmp_path, section + "redact_values = false\n"))
    (plugin,) = runtime.dispatcher.plugins
    assert plugin.config.redact_values is False
    with pytest.raises(ConfigError, match="redact_values"):
        Runtime.build(make_settings(tmp_path, section + 'redact_values = "no"\n'))


async def test_the_app_token_cache_hands_on_a_2026_token_whole(fake_github: tuple[FakeGitHub, str]) -> None:
    fake, url = fake_github
    fake.installation_token = installation_token_2026
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    clients = GitHubClients(GitHubSettings(app_id="4242", private_key=pem, api_url=url), dry_run=False)
    try:
        for _ in range(2):
            gh = await clients.for_installation(77, ActionLog())
            await gh.post("/repos/o/r/issues/1/comments", data={"body": "hi"})
    finally:
        await clients.close()
    assert len(fake.calls("POST", "/app/installations/")) == 1
    assert [r.headers["Authorization"] for r in fake.calls("POST", "/repos/")] == [f"token {TOKEN_2026}"] * 2
    assert json.loads(render(f"authorization: token {TOKEN_2026}"))["message"] == "authorization: [redacted]"
