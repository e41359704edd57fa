"""Log lines are JSON objects carrying the delivery id and never a secret; refusal floods are summarised."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import orjson
import pytest

from bot.logs import (
    _SECRET_HINT,
    _SECRET_PATTERN,
    REDACTED,
    JsonFormatter,
    RefusalLog,
    current_delivery,
    may_hold_secret,
    redact,
    register_secret,
)
from bot.runtime import Runtime
from tests.helpers import make_settings


def test_a_line_is_one_json_object_with_the_delivery_id() -> None:
    token = current_delivery.set("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    try:
        line = render("handler finished", handler="greeter", outcome="ok", ms=1.5)
    finally:
        current_delivery.reset(token)
    assert line["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert (line["message"], line["handler"], line["outcome"], line["ms"]) == ("handler finished", "greeter", "ok", 1.5)
    assert line["level"] == "info" and str(line["time"]).endswith("Z")


def test_secret_fields_are_redacted() -> None:
    line = render("x", token="ghp_abc", secret="s3cret", Authorization="Bearer x")
    assert line["token"] == line["secret"] == line["Authorization"] == "[redacted]"


def render(message: str, *args: object, exc: BaseException | None = None, **fields: object) -> dict[str, object]:
    record = logging.LogRecord("hookbot.test", logging.INFO, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, None)
    record.fields = fields
    return dict(orjson.loads(JsonFormatter().format(record)))


def test_tokens_and_configured_secrets_are_redacted(tmp_path: Path) -> None:
    Runtime.build(make_settings(tmp_path, GITHUB_TOKEN="plain-looking-configured-token"), secrets_=[b"hook-secret-x1"])
    line = render(
        "calling with %s and Authorization: Bearer abcdefghijklmnopqrstuvwx",
        "ghp_0123456789abcdefghijABCDEFGHIJ",
        exc=RuntimeError("secret was hook-secret-x1, token plain-looking-configured-token"),
        url="https://x/?jwt=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0In0.c2lnbmF0dXJl",
        token="anything",
    )
    text = orjson.dumps(line).decode()
    for leaked in ("ghp_0123", "abcdefghijklmnop", "hook-secret-x1", "plain-looking", "eyJhbGci", "anything"):
        assert leaked not in text
    assert text.count("[redacted]") >= 6


def test_delivery_id_comes_from_the_context() -> None:
    token = current_delivery.set("abc-123")
    try:
        assert render("handled")["delivery"] == "abc-123"
    finally:
        current_delivery.reset(token)


def test_register_secret_ignores_short_values() -> None:
    register_secret("abc")  # would redact every "abc" in every line
    assert render("abc")["message"] == "abc"


def test_a_secret_registered_later_is_redacted_from_values_seen_before() -> None:
    assert render("x", repository="owner/late-registered-secret")["repository"] == "owner/late-registered-secret"
    register_secret("late-registered-secret")
    assert render("x", repository="owner/late-registered-secret")["repository"] == "owner/[redacted]"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refusal_flood_logs_a_burst_then_one_summary_with_bounded_sources(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(logging.getLogger("hookbot.server"), burst=3, window=60, max_sources=2, clock=clock)
    with caplog.at_level(logging.WARNING, logger="hookbot.server"):
        for n in range(10_000):
            refusals.refused(401, "X-Hub-Signature-256 does not match", f"10.0.0.{n % 7}", {"status": 401})
        assert len(caplog.records) == 3
        clock.now = 61
        refusals.refused(401, "bad", "10.0.0.1", {})  # the next window: summary of the last, then a fresh burst
    summary = caplog.records[3]
    assert summary.getMessage() == "refused 9997 more deliveries without logging each (flood)"
    fields = summary.fields  # type: ignore[attr-defined]
    assert fields["statuses"] == {"401": 9997}
    assert len(fields["sources"]) == 3 and "(other)" in fields["sources"]  # two named, the rest lumped
    assert len(caplog.records) == 5


@pytest.mark.parametrize(
    "text",
    [
        "calling with ghs_0123456789abcdefghijKLMN",
        "pat github_pat_11ABCDEFG0123456789_abcdef here",
        "aws AKIAIOSFODNN7EXAMPLE and ASIAIOSFODNN7EXAMPLE",
        "-----BEGIN PRIVATE KEY-----\nMIIE",
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0In0.c2lnbmF0dXJl",
        "Authorization: Bearer abcdefghijklmnopqrstuvwx",
        "TOKEN abcdefghijklmnopqrstuvwx",
        "to\u212aen abcdefghijklmnopqrstuvwx",  # KELVIN SIGN: the pattern's (?i) takes it for a k
    ],
)
def test_the_scan_before_the_secret_pattern_lets_every_credential_through_to_it(text: str) -> None:
    assert may_hold_secret(text)
    assert REDACTED in redact(text + " " * 101)  # longer than the cache takes: the pattern itself runs


def test_the_scan_before_the_secret_pattern_spares_plain_text() -> None:
    assert not may_hold_secret("comment on octo/hello-world#1: Thanks for opening this issue, @octocat!")


def test_every_character_the_case_insensitive_words_match_lowers_to_their_letters() -> None:
    """The scan looks for "token" and "bearer" in ``text.lower()``: it relies on every character that the secret
    pattern's case-insensitive branch takes for one of their letters lowering to that letter (true of this
    Python's Unicode tables; this checks them all)."""
    matched = set(re.findall("(?i:[tokenbar])", "".join(map(chr, range(sys.maxunicode + 1)))))
    assert "\u212a" in matched  # KELVIN SIGN, as a k
    assert {char.lower() for char in matched} == set("tokenbar")


def test_the_scan_before_the_secret_pattern_knows_each_of_its_branches() -> None:
    """may_hold_secret looks for the literal start of each branch of the pattern below; a branch added to the
    pattern (or to CREDENTIAL_PATTERN) needs its start in bot.logs._SECRET_HINT too, or lines holding it would skip
    the pattern. This pins the pattern so that such a change comes here."""
    assert _SECRET_PATTERN.pattern == (
        r"gh[pousr]_[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]+)*|github_pat_[A-Za-z0-9_]{16,}"
        r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
        r"|-----BEGIN[A-Z ]* PRIVATE KEY-----(?:.*?-----END[A-Z ]* PRIVATE KEY-----|.*)"
        r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"
        r"|(?i:\b(?:token|bearer)\s+)[A-Za-z0-9_.=-]{16,}"
    )
    assert _SECRET_HINT.pattern == r"gh[pousr]_|github_pat_|AKIA|ASIA|-----BEGIN|eyJ"
