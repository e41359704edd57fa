"""GitHub delivery checks as pure functions over bytes and header values (no I/O), in gidgethub's sansio spirit.

The aiohttp server, the Lambda Function URL entry and the SNS path all call these, so a delivery is judged the
same way whichever door it came through.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson

from bot.delivery import Delivery, Refusal, Source

# GitHub's event names: lower-case words joined by underscores (``projects_v2_item``). Anything else in
# X-GitHub-Event (which no signature covers) is refused, so an event name is never free text in a log,
# a journal row or a metric label.
EVENT_NAME = re.compile(r"[a-z0-9_]{1,64}")
# ``re`` classes without the ASCII flag still match only these ASCII digits and letters: a signature value
# with any other character never reaches hmac.compare_digest, which raises TypeError on non-ASCII text.
_HEX_DIGEST = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha1": re.compile(r"[0-9a-f]{40}")}

def _matches(body: bytes, signature: str, prefix: str, digest: str, secrets: Sequence[bytes]) -> bool:
    if not signature.startswith(prefix):
        return False
    given = signature[len(prefix) :].strip().lower()
    if not _HEX_DIGEST[digest].fullmatch(given):
        return False
    # Every secret is tried even after a match so the time taken does not reveal which one matched.
    found = False
    for secret in secrets:
        mac = keyed_hmac(secret, digest).copy()
        mac.update(body)
        found |= hmac.compare_digest(mac.hexdigest(), given)
    return found


@functools.lru_cache(maxsize=8)
def keyed_hmac(secret: bytes, digest: str) -> hmac.HMAC:
    """An HMAC already keyed with ``secret``, to be copied for each body: keying one anew (OpenSSL looks the digest up
    and hashes the padded key) is a sixth of verifying a 7 KB delivery. A few secrets are in use at once (rotation)."""
    return hmac.new(secret, digestmod=digest)


def verify_signature(
    body: bytes,
    *,
    signature_256: str | None,
    signature_sha1: str | None,
    secrets: Sequence[bytes],
    allow_sha1: bool = False,
) -> None:
    """Raise :class:`Refusal` (401) unless the body carries a valid HMAC for one of ``secrets``.

    Several secrets are accepted at once so that a secret can be rotated without dropping deliveries.
    SHA-1 signatures are only good enough for old GitHub Enterprise servers, so they need an explicit opt-in.
    """
    if not secrets:
        raise Refusal(401, "no webhook secret is configured; refusing every delivery")
    if signature_256:
        if _matches(body, signature_256, "sha256=", "sha256", secrets):
            return
        raise Refusal(401, "X-Hub-Signature-256 does not match the body for any configured secret")
    if signature_sha1:
        if not allow_sha1:
            raise Refusal(401, "only a sha1 X-Hub-Signature was sent; set [github] allow_sha1 = true to accept it")
        if _matches(body, signature_sha1, "sha1=", "sha1", secrets):
            return
        raise Refusal(401, "X-Hub-Signature (sha1) does not match the body for any configured secret")
    raise Refusal(401, "X-Hub-Signature-256 header is missing")


def well_formed(signature: str, digest: str) -> bool:
    """True when ``signature`` is ``sha256=<64 hex digits>`` (or ``sha1=<40>``): worth reading a body for."""
    prefix = digest + "="
    given = signature[len(prefix) :].strip().lower()
    return signature.startswith(prefix) and bool(_HEX_DIGEST[digest].fullmatch(given))


def check_event_name(event: str | None) -> str:
    """The X-GitHub-Event value when it is one GitHub could send; a 400 :class:`Refusal` otherwise."""
    if not event:
        raise Refusal(400, "X-GitHub-Event header is missing")
    if not EVENT_NAME.fullmatch(event):
        raise Refusal(400, "X-GitHub-Event is not an event name (1 to 64 of a-z, 0-9 and _)")
    return event


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send; used by the relay's tests and by tools."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def stored_body_type(body: bytes) -> str:
    """The content type of a GitHub body kept without its headers (an SNS Message, a journal row).

    GitHub sends JSON or a ``payload=`` form, and a JSON body never starts with ``payload=``, so the body says which.
    """
    return "application/x-www-form-urlencoded" if body.startswith(b"payload=") else "application/json"


def parse_payload(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a GitHub body, JSON or form-encoded (``payload=``), into the payload object."""
    mime = (content_type or "application/json").split(";", 1)[0].strip().lower()
    raw: bytes | str = body
    if mime == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=4)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refusal(400, f"form body is not valid: {exc}") from None
        values = form.get("payload")
        if not values:
            raise Refusal(400, "form body has no payload= field")
        raw = values[0]
    elif mime != "application/json":
        raise Refusal(400, f"content type {mime!r} is not application/json or form-encoded")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Said in hookbot's own words: the parser's wording is its own and changes between versions.
        raise Refusal(400, f"body is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "body is JSON but not an object")
    return payload


def delivery_from_github(
    body: bytes,
    *,
    event: str | None,
    delivery_id: str | None,
    content_type: str | None,
    source: Source,
) -> Delivery:
    """Build a Delivery from a body whose signature has already been checked."""
    event = check_event_name(event)
    payload = parse_payload(body, content_type)
    delivery_id = delivery_id_or_digest(delivery_id, body)
    return Delivery(event=event, delivery_id=delivery_id, payload=payload, body=body, source=source)


def delivery_id_or_digest(delivery_id: str | None, body: bytes) -> str:
    """X-GitHub-Delivery; GitHub always sends one, and a hand-made request without it gets one from its content."""
    return delivery_id or "sha256-" + hashlib.sha256(body).hexdigest()[:32]
