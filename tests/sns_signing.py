"""Test-made SNS signing: a throwaway certificate and messages signed exactly as SNS signs them.

The recorded AWS messages prove compatibility with AWS; these prove the checks themselves (any time, any
field, both signature versions), without which a test could only replay what AWS once sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bot.sns import parse_message, string_to_sign
from tests.helpers import FIXTURES

TOPIC = "arn:aws:sns:us-east-1:123456789012:hookbot-test"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"


@dataclass
class Signer:
    """An RSA key and a self-signed certificate valid from ``not_before`` to ``not_after``."""

    not_before: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    not_after: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    @functools.cached_property
    def pem(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """Fill in ``Signature`` for ``document`` as SNS would (its SignatureVersion picks SHA1 or SHA256)."""
        digest = hashes.SHA1() if document["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(string_to_sign(parse_message(document)), padding.PKCS1v15(), digest)
        document["Signature"] = base64.b64encode(signature).decode()
        return document


def sns_timestamp(moment: dt.datetime | None = None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def notification(
    message: str,
    *,
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    version: str = "2",
    subject: str | None = None,
    attributes: dict[str, str] | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An unsigned Notification in the HTTP endpoint spelling."""
    document: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": message,
        "Timestamp": timestamp or sns_timestamp(),
        "SignatureVersion": version,
        "Signature": "",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:1",
    }
    if subject is not None:
        document["Subject"] = subject
    if attributes:
        document["MessageAttributes"] = {k: {"Type": "String", "Value": v} for k, v in attributes.items()}
    return document


def subscription_confirmation(subscribe_url: str, *, topic: str = TOPIC, cert_url: str = CERT_URL) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425929f52e8e3531",
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": subscribe_url,
        "Timestamp": sns_timestamp(),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": cert_url,
    }


class CountingGet:
    """The fetcher's ``get``: serves certificates (and SubscribeURLs) by URL and counts every fetch."""

    def __init__(self, pages: dict[str, bytes] | None = None) -> None:
        self.pages = dict(pages or {})
        self.fetched: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.pages:
            raise OSError(f"no page at {url}")
        return self.pages[url]


def fixture_certificates() -> dict[str, bytes]:
    """The recorded AWS certificates at the URLs the recorded messages name (any region serves the same file)."""
    pages = {}
    for path in (FIXTURES / "sns").glob("SimpleNotificationService-*.pem"):
        for region in ("us-east-1", "us-east-2", "us-west-2"):
            pages[f"https://sns.{region}.amazonaws.com/{path.name}"] = path.read_bytes()
    return pages


def load_json(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return document
