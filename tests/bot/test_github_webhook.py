"""The pure GitHub delivery checks, including GitHub's own documented test vector."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from bot.delivery import Refusal
from bot.github_webhook import delivery_from_github, parse_payload, sign, verify_signature
from tests.helpers import fixture_bytes

VECTOR = json.loads(fixture_bytes("github/signature-test-vector.json"))


def test_githubs_documented_test_vector() -> None:
    body = VECTOR["payload"].encode()
    verify_signature(body, signature_256=VECTOR["signature"], signature_sha1=None, secrets=[VECTOR["secret"].encode()])
    assert sign(body, VECTOR["secret"].encode()) == VECTOR["signature"]


def test_any_of_several_secrets_is_accepted() -> None:
    body = b"{}"
    verify_signature(body, signature_256=sign(body, b"old"), signature_sha1=None, secrets=[b"new", b"old"])


@pytest.mark.parametrize(
    ("signature_256", "signature_sha1", "allow_sha1", "reason"),
    [
        (None, None, False, "missing"),
        ("sha256=" + "0" * 64, None, False, "does not match"),
        ("sha1=abc", None, False, "does not match"),
        (None, "sha1=abc", False, "allow_sha1"),
        (None, "sha1=abc", True, "does not match"),
    ],
)
def test_refusals_are_401_with_a_reason(
    signature_256: str | None, signature_sha1: str | None, allow_sha1: bool, reason: str
) -> None:
    with pytest.raises(Refusal) as caught:
        verify_signature(
            b"{}", signature_256=signature_256, signature_sha1=signature_sha1, secrets=[b"s"], allow_sha1=allow_sha1
        )
    assert caught.value.status == 401 and reason in caught.value.reason


def test_sha1_is_accepted_when_allowed() -> None:
    body = b'{"zen": "x"}'
    sha1 = "sha1=" + hmac.new(b"s", body, hashlib.sha1).hexdigest()
    verify_signature(body, signature_256=None, signature_sha1=sha1, secrets=[b"s"], allow_sha1=True)


def test_no_secret_refuses_everything() -> None:
    with pytest.raises(Refusal, match="no webhook secret"):
        verify_signature(b"{}", signature_256=sign(b"{}", b""), signature_sha1=None, secrets=[])


def test_uppercase_hex_signature_is_accepted() -> None:
    body = b"{}"
    verify_signature(
        body, signature_256=sign(body, b"s").upper().replace("SHA256=", "sha256="), signature_sha1=None, secrets=[b"s"]
    )


def test_delivery_keeps_the_exact_body_and_reads_the_action() -> None:
    body = fixture_bytes("github/issues.opened.json")
    delivery = delivery_from_github(
        body, event="issues", delivery_id="abc", content_type="application/json; charset=utf-8", source="github-http"
    )
    assert delivery.body is body
    assert (delivery.action, delivery.repository, delivery.describe()) == (
        "opened",
        "Codertocat/Hello-World",
        "issues.opened",
    )


def test_missing_delivery_id_is_derived_from_the_body() -> None:
    first = delivery_from_github(b"{}", event="push", delivery_id=None, content_type=None, source="github-http")
    second = delivery_from_github(b"{}", event="push", delivery_id="", content_type=None, source="github-http")
    assert first.delivery_id == second.delivery_id


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    with pytest.raises(Refusal) as caught:
        parse_payload(b"[" * 100_000 + b"]" * 100_000, "application/json")
    assert caught.value.status == 400
