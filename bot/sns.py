"""Amazon SNS message verification as pure functions: no I/O, no clock of its own, nothing fetched.

AWS publishes no Python verifier, and the common third-party ones handle only SignatureVersion 1 or trust any
certificate URL that merely ends in ``amazonaws.com``. This module does every check, in an order that never lets
an untrusted message cause a fetch:

1. ``Type`` is one SNS sends (Notification, SubscriptionConfirmation, UnsubscribeConfirmation);
2. ``TopicArn`` is on the allow-list (an empty list refuses everything: a bot that trusts every topic in every
   account trusts anyone with an AWS account);
3. ``SigningCertURL`` is exactly ``https://sns.<region>.<partition domain>/SimpleNotificationService-<hex>.pem``
   (``amazonaws.com``, ``amazonaws.com.cn``, ``amazonaws.eu``),
   or lies at the configured emulator origin (moto, LocalStack), compared as scheme + host + port, parsed with one
   URL parser (:func:`urllib.parse.urlsplit`) so the check and the fetch cannot read the URL differently;
   a SubscribeURL must pass the same origin test before anybody visits it;
4. ``Timestamp`` is inside the age window (checked before the certificate is fetched, since it needs none);
5. only then may the caller fetch the certificate (see :mod:`bot.sns_fetch`) and call :meth:`SnsVerifier.verify`:
   the certificate was valid at the message's timestamp, and the RSA PKCS#1 v1.5 signature over AWS's
   string-to-sign verifies with SHA1 (SignatureVersion 1) or SHA256 (SignatureVersion 2).

Messages arrive in two spellings: the HTTP(S) endpoint body (``SigningCertURL``, ``UnsubscribeURL``) and the
``Sns`` object of a Lambda record (``SigningCertUrl``, ``UnsubscribeUrl``, and ``Subject: null`` when there is no
subject). :func:`parse_message` reads both, so one check serves both.

Copying this module: it needs only the standard library and, for :meth:`SnsVerifier.verify`, ``cryptography``
(imported there, lazily, so that importing this module stays cheap on a Lambda cold start).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from bot.delivery import Refusal
from bot.records import frozen, record

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
MESSAGE_TYPES = frozenset({NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION})

DEFAULT_MAX_AGE_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300  # how far in the future a timestamp may be before the clocks are not trusted to agree

# SNS endpoints of every AWS partition that has SNS, each with its own domain: aws (us-east-1, eu-central-2,
# us-gov-west-1, ap-southeast-5 ... at amazonaws.com), aws-cn (cn-north-1 at amazonaws.com.cn) and aws-eusc, the
# European Sovereign Cloud (eusc-de-east-1 at amazonaws.eu). Region names as AWS forms them.
_SNS_HOST = re.compile(
    r"sns\.(?:"
    r"(?!cn-|eusc-)[a-z]{2}(?:-[a-z]+)+-[0-9]+\.amazonaws\.com"
    r"|cn-[a-z]+-[0-9]+\.amazonaws\.com\.cn"
    r"|eusc-[a-z]{2}(?:-[a-z]+)+-[0-9]+\.amazonaws\.eu"
    r")"
)
_CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]+\.pem")
# A URL that is plain printable ASCII without backslashes: no whitespace for a parser to strip or split on,
# no backslash that some parsers read as a slash. Anything else is refused before it is parsed at all.
_PLAIN_URL = re.compile(r"[!#-\[\]-~]+")

# The fields AWS signs, in the order it signs them (sorted by name), for each message type.
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}

Origin = tuple[str, str, int]


@frozen
class SnsMessage:
    """One SNS message, whichever spelling it came in; ``attributes`` keeps String and Number attribute values
    (the Extended Client's ``ExtendedPayloadSize`` is a Number)."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    signature_version: str
    signature: str
    signing_cert_url: str
    subject: str | None = None
    subscribe_url: str | None = None
    unsubscribe_url: str | None = None
    token: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def signed_value(self, name: str) -> str | None:
        return {
            "Message": self.message,
            "MessageId": self.message_id,
            "Subject": self.subject,
            "SubscribeURL": self.subscribe_url,
            "Timestamp": self.timestamp,
            "Token": self.token,
            "TopicArn": self.topic_arn,
            "Type": self.type,
        }[name]


def _text(document: Mapping[str, Any], *names: str, required: bool = True) -> str | None:
    """The first of ``names`` present (HTTP and Lambda spell some keys differently); null counts as absent."""
    for name in names:
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise Refusal(400, f"SNS field {name} is not a string")
        return value
    if required:
        raise Refusal(400, f"SNS message has no {names[0]}")
    return None


def _attributes(document: Mapping[str, Any]) -> dict[str, str]:
    raw = document.get("MessageAttributes") or {}
    if not isinstance(raw, Mapping):
        raise Refusal(400, "SNS MessageAttributes is not an object")
    found: dict[str, str] = {}
    for name, attribute in raw.items():
        if isinstance(attribute, Mapping) and attribute.get("Type") in ("String", "Number"):
            value = attribute.get("Value")
            if isinstance(value, str):
                found[str(name)] = value
    return found


def parse_message(document: Any) -> SnsMessage:
    """Read an SNS message (HTTP endpoint body or Lambda ``Sns`` object) into an :class:`SnsMessage`.

    Only the shape is checked here (400 when it is not an SNS message); trust is :class:`SnsVerifier`'s job.
    """
    if not isinstance(document, Mapping):
        raise Refusal(400, "SNS message is not a JSON object")
    kind = _text(document, "Type")
    if kind not in MESSAGE_TYPES:
        raise Refusal(400, f"SNS message Type {kind!r} is not one SNS sends")
    confirmation = kind != NOTIFICATION
    return SnsMessage(
        type=kind,
        message_id=_text(document, "MessageId") or "",
        topic_arn=_text(document, "TopicArn") or "",
        message=_text(document, "Message") or "",
        timestamp=_text(document, "Timestamp") or "",
        signature_version=_text(document, "SignatureVersion") or "",
        signature=_text(document, "Signature") or "",
        signing_cert_url=_text(document, "SigningCertURL", "SigningCertUrl") or "",
        subject=_text(document, "Subject", required=False),
        subscribe_url=_text(document, "SubscribeURL", "SubscribeUrl", required=confirmation),
        unsubscribe_url=_text(document, "UnsubscribeURL", "UnsubscribeUrl", required=False),
        token=_text(document, "Token", required=confirmation),
        attributes=_attributes(document),
    )


def string_to_sign(message: SnsMessage) -> bytes:
    """AWS's string-to-sign: ``"Name\\nvalue\\n"`` for each signed field present, in AWS's fixed order.

    A Notification without a subject leaves ``Subject`` out entirely (a Lambda record's ``Subject: null`` is
    the same thing). MessageAttributes are not signed, which is why a receiver must never trust them for more
    than what the signed Message itself proves (GitHub's HMAC over the Message does that for deliveries).
    """
    parts: list[str] = []
    for name in _SIGNED_FIELDS[message.type]:
        value = message.signed_value(name)
        if value is not None:
            parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


def origin_of(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL with the default port filled in; None when it has no clear
    origin (another scheme, user info, a bad port, characters a parser could read two ways)."""
    if not _PLAIN_URL.fullmatch(url):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _is_aws_sns_url(parts: SplitResult) -> bool:
    """https, a bare ``sns.<region>.<partition domain>`` host: no port, no user info, no trailing dot."""
    return parts.scheme == "https" and parts.netloc == parts.hostname and bool(_SNS_HOST.fullmatch(parts.netloc))


@record
class SnsVerifier:
    """The SNS checks with their settings. Build one per configuration and share it: it holds no state.

    ``emulator_urls`` are ``AWS_ENDPOINT_URL_SNS`` / ``AWS_ENDPOINT_URL``: their origins are trusted for
    certificates and SubscribeURLs besides AWS's own hosts, which is how tests and LocalStack sign messages.
    ``clock`` returns epoch seconds; tests set it to a recorded message's time.
    """

    topic_arns: frozenset[str]
    emulator_origins: frozenset[Origin] = frozenset()
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    clock: Callable[[], float] = time.time

    @classmethod
    def build(
        cls,
        topic_arns: Iterable[str],
        *,
        emulator_urls: Iterable[str | None] = (),
        max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> SnsVerifier:
        origins = frozenset(filter(None, (origin_of(url) for url in emulator_urls if url)))
        return cls(frozenset(topic_arns), origins, max_age_seconds, clock)

    def is_trusted_cert_url(self, url: str) -> bool:
        if not _PLAIN_URL.fullmatch(url):
            return False
        parts = urlsplit(url)
        if _is_aws_sns_url(parts):
            return bool(_CERT_PATH.fullmatch(parts.path)) and not parts.query and not parts.fragment
        return origin_of(url) in self.emulator_origins

    def is_trusted_subscribe_url(self, url: str) -> bool:
        """SubscribeURL must be an SNS endpoint (any path and query: it is an API call), never anywhere else."""
        if not _PLAIN_URL.fullmatch(url):
            return False
        parts = urlsplit(url)
        return (_is_aws_sns_url(parts) and not parts.fragment) or origin_of(url) in self.emulator_origins

    def check_topic(self, message: SnsMessage) -> None:
        if message.topic_arn not in self.topic_arns:
            if not self.topic_arns:
                raise Refusal(403, f"topic {message.topic_arn} refused: SNS_TOPIC_ARNS is empty")
            raise Refusal(403, f"topic {message.topic_arn} is not in SNS_TOPIC_ARNS")

    def precheck(self, message: SnsMessage, *, check_age: bool = True) -> None:
        """Every check that needs no certificate, so a message failing any of them causes no fetch.

        ``check_age=False`` drops the ``max_age_seconds`` window, for records Lambda hands over: the invoke
        is authenticated, and SNS and Lambda retry them long after the (never changing) timestamp.
        """
        self.check_topic(message)
        if not self.is_trusted_cert_url(message.signing_cert_url):
            raise Refusal(403, f"SigningCertURL {message.signing_cert_url!r} is not an SNS certificate URL")
        if message.subscribe_url is not None and not self.is_trusted_subscribe_url(message.subscribe_url):
            raise Refusal(403, f"SubscribeURL {message.subscribe_url!r} is not at an SNS endpoint")
        if message.signature_version not in ("1", "2"):
            raise Refusal(401, f"SignatureVersion {message.signature_version!r} is not 1 or 2")
        sent = message_time(message)
        now = self.clock()
        if check_age and sent < now - self.max_age_seconds:
            raise Refusal(
                401, f"message timestamp {message.timestamp} is older than [sns] max_age_seconds={self.max_age_seconds}"
            )
        if sent > now + CLOCK_SKEW_SECONDS:
            raise Refusal(401, f"message timestamp {message.timestamp} is in the future")

    def verify(self, message: SnsMessage, certificate_pem: bytes, *, check_age: bool = True) -> None:
        """Raise :class:`Refusal` unless ``certificate_pem`` (fetched from the prechecked URL) signed ``message``.

        Call :meth:`precheck` first; this re-runs it so that a caller cannot skip it by mistake.
        """
        self.precheck(message, check_age=check_age)
        # Lazy: cryptography costs tens of milliseconds to import and only this path needs it.
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            raise Refusal(403, f"{message.signing_cert_url} is not a PEM certificate") from None
        sent = datetime.fromtimestamp(message_time(message), UTC)
        if not certificate.not_valid_before_utc <= sent <= certificate.not_valid_after_utc:
            raise Refusal(
                401,
                f"certificate {message.signing_cert_url} was not valid at the message's timestamp {message.timestamp}",
            )
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refusal(403, f"certificate {message.signing_cert_url} does not hold an RSA key")
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII string (found by the fuzz test)
            raise Refusal(401, "SNS Signature is not base64") from None
        digest: hashes.HashAlgorithm = hashes.SHA1() if message.signature_version == "1" else hashes.SHA256()  # noqa: S303 - SNS SignatureVersion 1 is SHA1 by definition
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), digest)
        except InvalidSignature:
            raise Refusal(401, f"SNS signature (version {message.signature_version}) does not verify") from None


def message_time(message: SnsMessage) -> float:
    """The message's ``Timestamp`` (ISO 8601, UTC) as epoch seconds."""
    try:
        moment = datetime.fromisoformat(message.timestamp)
    except ValueError:
        raise Refusal(400, f"SNS Timestamp {message.timestamp!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Refusal(400, f"SNS Timestamp {message.timestamp!r} has no time zone")
    return moment.timestamp()
