"""Hostile input: fuzzed bodies, headers and both signature checks (GitHub HMAC, SNS), oversized and malformed
requests, forged floods.

The property everywhere: a refusal is a 4xx with a reason, never a 5xx, never an exception escaping, never a
dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import resource
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.delivery import Refusal
from bot.github_webhook import delivery_from_github, sign, verify_signature
from bot.runtime import Runtime, webhook_secrets
from bot.server import create_app
from bot.sns import SnsVerifier, parse_message
from tests.fake_github import FakeGitHub
from tests.helpers import SECRET, AppClient, fixture_bytes, github_headers, make_settings
from tests.processes import Server, issue_body
from tests.sns_signing import TOPIC, Signer, notification

SECRETS = [SECRET.encode()]
header_text = st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["sha256=", "sha1=", "sha256=" + "0" * 64]))
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_like.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=1, max_value=3000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "application/json; charset=utf-8"]),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(body=bodies, signature_256=header_text, signature_sha1=header_text, allow_sha1=st.booleans())
def test_signature_check_only_ever_accepts_the_right_hmac(
    body: bytes, signature_256: str | None, signature_sha1: str | None, allow_sha1: bool
) -> None:
    try:
        verify_signature(
            body, signature_256=signature_256, signature_sha1=signature_sha1, secrets=SECRETS, allow_sha1=allow_sha1
        )
    except Refusal as exc:
        assert exc.status == 401
    else:  # accepted: only possible with a genuine signature (hypothesis will not forge an HMAC)
        raise AssertionError(f"accepted a forged signature {signature_256!r} / {signature_sha1!r}")
    verify_signature(body, signature_256=sign(body, SECRETS[0]), signature_sha1=None, secrets=SECRETS)


@settings(max_examples=400, deadline=None)
@given(body=bodies, event=header_text, delivery_id=header_text, content_type=content_types)
def test_body_and_header_parsing_refuses_with_4xx_or_builds_a_delivery(
    body: bytes, event: str | None, delivery_id: str | None, content_type: str | None
) -> None:
    try:
        delivery = delivery_from_github(
            body, event=event, delivery_id=delivery_id, content_type=content_type, source="github-http"
        )
    except Refusal as exc:
        assert exc.status == 400
    else:
        assert isinstance(delivery.payload, dict) and delivery.event == event and delivery.delivery_id


SNS_FIELDS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "SigningCertUrl",
    "Subject",
    "SubscribeURL",
    "UnsubscribeURL",
    "Token",
    "MessageAttributes",
]
sns_values = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.integers(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=8), st.dictionaries(st.sampled_from(["Type", "Value"]), st.text(max_size=8))),
)
sns_documents = st.one_of(
    st.dictionaries(st.sampled_from(SNS_FIELDS) | st.text(max_size=10), sns_values, max_size=16),
    json_like,
)
SIGNER = Signer()
SNS_VERIFIER = SnsVerifier.build([TOPIC])


@settings(max_examples=400, deadline=None)
@given(document=sns_documents)
def test_sns_parsing_and_prechecks_refuse_with_sns_errors_only(document: Any) -> None:
    try:
        SNS_VERIFIER.verify(parse_message(document), SIGNER.pem)
    except Refusal as exc:
        assert exc.status in {400, 401, 403}
    else:
        raise AssertionError("an unsigned fuzzed document verified")


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Signature", "Type"]),
    value=st.text(min_size=1, max_size=60),
)
def test_a_signed_sns_message_changed_in_any_field_fails(name: str, value: str) -> None:
    document = SIGNER.sign(notification("a genuine message"))
    SNS_VERIFIER.verify(parse_message(document), SIGNER.pem)
    if document.get(name) == value:
        return
    document[name] = value
    with pytest.raises(Refusal):
        SNS_VERIFIER.verify(parse_message(document), SIGNER.pem)


@pytest.fixture
async def client(tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_client: Callable[..., Any]) -> AppClient:
    _, url = fake_github
    config = make_settings(tmp_path, "[server]\nmax_body_bytes = 100000\n", GITHUB_TOKEN="t", GITHUB_API_URL=url)
    test_client: AppClient = await aiohttp_client(create_app(Runtime.build(config, secrets_=webhook_secrets(config))))
    return test_client


async def settle(client: AppClient) -> dict[str, Any]:
    for _ in range(200):
        health: dict[str, Any] = await (await client.get("/healthz")).json()
        if health["pending"] == 0:
            return health
        await asyncio.sleep(0.02)
    raise AssertionError("still pending")


@pytest.mark.parametrize(
    ("body", "event", "status"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "issues", 413),  # over the limit before anything else
        (b"[" * 20_000 + b"]" * 20_000, "issues", 400),  # nesting deeper than the parser allows
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "issues", 400),
        (b'{"action": "opened", "x": "\xff\xfe"}', "issues", 400),  # invalid UTF-8
        (b"\x00\x01\x02", "issues", 400),
        (b'{"zen": "unknown events are answered and ignored"}', "no_such_event", 200),  # no plugin wants it
        (b'{"action": "opened"}', "issues", 202),  # a signed but odd payload: the handler fails, not the worker
    ],
)
async def test_signed_hostile_bodies_never_5xx(client: AppClient, body: bytes, event: str, status: int) -> None:
    response = await client.post("/webhook", data=body, headers=github_headers(body, event))
    assert response.status == status
    health = await settle(client)
    assert health["status"] == "ok"
    ok = fixture_bytes("github/issues.opened.json")  # the workers are still alive and working
    assert (await client.post("/webhook", data=ok, headers=github_headers(ok, "issues"))).status == 202
    await settle(client)


async def test_oversized_chunked_body_is_413_without_a_content_length(client: AppClient) -> None:
    async def chunks() -> Any:
        for _ in range(200):
            yield b" " * 1000

    headers = github_headers(b"", "issues")
    response = await client.post("/webhook", data=chunks(), headers=headers)
    assert response.status == 413


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Event": "issues" * 3000},  # one header over aiohttp's field limit
        {f"X-Junk-{n}": "x" for n in range(500)},  # too many headers
    ],
)
async def test_header_limits_answer_4xx(client: AppClient, headers: dict[str, str]) -> None:
    body = b"{}"
    response = await client.post("/webhook", data=body, headers={**github_headers(body, "issues"), **headers})
    assert 400 <= response.status < 500


async def test_forged_flood_is_refused_before_reading_and_logged_sparingly(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"{" + b'"x": 1,' * 10_000 + b'"y": 2}'
    with caplog.at_level(logging.WARNING, logger="hookbot.server"):
        for n in range(300):
            headers = github_headers(body, "issues", **{"X-Hub-Signature-256": "sha256=" + f"{n:064x}"[-64:]})
            if n % 2:
                headers["X-Hub-Signature-256"] = "garbage"  # malformed: refused before the body is read
            response = await client.post("/webhook", data=body, headers=headers)
            assert response.status == 401
    lines = [r for r in caplog.records if r.name == "hookbot.server"]
    assert len(lines) <= 10
    assert (await client.get("/healthz")).status == 200


# --- Bounded before authenticated: floods against a real `hookbot serve` process -------------------------------
# Each attack runs against its own server subprocess; the test measures the server's peak RSS (VmHWM) and how much
# it logged during the attack, and checks that a genuine signed delivery is answered 202 while the attack lasts.
# Run with -s to see the numbers (BENCHMARKS-style lines starting with "hostile:").

MIB = 1024 * 1024
RSS_BOUND_KIB = 150 * 1024
LOG_BOUND_BYTES = 1_000_000
FORGED_SIGNATURE = "sha256=" + "0" * 64  # well-formed, so the body is read before the HMAC refuses it
HOSTILE_CONFIG = "[server]\nread_deadline_seconds = 5\n"


@pytest.fixture
async def hostile_server(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> AsyncIterator[Server]:
    _, url = fake_github
    # soft < hard: `serve` raises the soft limit itself; 1024 is the common default that 5,000 connections exceed
    server = Server(tmp_path, url, HOSTILE_CONFIG, open_files=(512, 1024))
    await server.start()
    server.reset_peak_rss()
    yield server
    await server.stop()


async def genuine_delivery_status(server: Server) -> int:
    async with asyncio.timeout(60):  # generous: a server locked up by the attack fails here instead of hanging
        return await server.post(issue_body(4242), f"genuine-{uuid.uuid4()}")


def report_and_check(server: Server, attack: str, log_before: int) -> None:
    peak_kib = server.status_kib("VmHWM")
    logged = server.log_size() - log_before
    print(f"\nhostile: {attack}: peak RSS {peak_kib / 1024:.1f} MiB, {logged} bytes logged")
    assert peak_kib < RSS_BOUND_KIB, f"{attack}: peak RSS {peak_kib / 1024:.0f} MiB"
    assert logged < LOG_BOUND_BYTES, f"{attack}: {logged} bytes of log"


async def test_gzip_bomb_flood_is_never_inflated(hostile_server: Server) -> None:
    server = hostile_server
    log_before = server.log_size()
    bomb = gzip.compress(bytes(24 * MIB), compresslevel=9)  # about 24 KB on the wire, 24 MiB inflated
    assert len(bomb) < 30_000

    async def send_bomb(session: aiohttp.ClientSession, n: int) -> int:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": f"bomb-{n}",
            "X-Hub-Signature-256": FORGED_SIGNATURE,
        }
        async with session.post(f"{server.url}/webhook", data=bomb, headers=headers) as response:
            return response.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        statuses = await asyncio.gather(*(send_bomb(session, n) for n in range(100)))
    assert {status for status in statuses} <= {401, 415}
    assert await genuine_delivery_status(server) == 202
    report_and_check(server, "100 gzip bombs (24 KB -> 24 MiB)", log_before)


async def stall_a_body(port: int, n: int, size: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send headers and all of a ``size`` body but its last chunk, then stop (or stop early if the server refuses)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: issues\r\nX-GitHub-Delivery: stall-{n}\r\n"
            f"X-Hub-Signature-256: {FORGED_SIGNATURE}\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
    )
    chunk = b" " * (256 * 1024)
    for _ in range(size // len(chunk) - 1):
        writer.write(chunk)
        try:
            await asyncio.wait_for(writer.drain(), timeout=5)
        except (TimeoutError, ConnectionError):
            break  # the server stopped reading (budget full) or closed the connection (refused)
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_stalled_bodies_hold_no_more_than_the_budget_and_are_closed(hostile_server: Server) -> None:
    server = hostile_server
    log_before = server.log_size()
    connections = await asyncio.gather(*(stall_a_body(server.port, n, 25 * MIB) for n in range(40)))
    assert await genuine_delivery_status(server) == 202  # stalled bodies give way to it
    # every stalled connection is closed by the server: at once when refused, else at the 5 s read deadline
    closed = await asyncio.gather(*(closed_by_server(reader, timeout=60) for reader, _ in connections))
    assert all(closed)
    for _, writer in connections:
        writer.close()
    report_and_check(server, "40 stalled 25 MiB bodies", log_before)


def raise_own_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def test_idle_connections_cannot_lock_out_a_delivery(hostile_server: Server) -> None:
    server = hostile_server
    raise_own_open_files_limit(5000 + 500)
    log_before = server.log_size()
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(10):  # 10 waves of 500: the server caps connections under its 1,024 open files
            opened = await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", server.port) for _ in range(500)), return_exceptions=True
            )
            writers.extend(pair[1] for pair in opened if isinstance(pair, tuple))
        assert len(writers) == 5000
        assert await genuine_delivery_status(server) == 202
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as response:
            assert response.status == 200
    finally:
        for writer in writers:
            writer.close()
    report_and_check(server, "5,000 idle connections", log_before)
    assert "cannot accept connections" not in (server.tmp_path / "server.log").read_text()


async def send_a_slow_head(port: int) -> asyncio.StreamWriter | None:
    """A request head of about 1 MiB (120 header lines of 8 KB, each under aiohttp's own limits) that never ends."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for n in range(120):
            writer.write(b"X-Pad-%d: %s\r\n" % (n, b"a" * 8000))
        await asyncio.wait_for(writer.drain(), timeout=10)
    except (OSError, TimeoutError):
        return None  # dropped by the server, as it should be
    return writer


async def test_slow_endless_request_heads_are_dropped(hostile_server: Server) -> None:
    server = hostile_server
    log_before = server.log_size()
    writers = await asyncio.gather(*(send_a_slow_head(server.port) for _ in range(400)))
    assert await genuine_delivery_status(server) == 202
    for writer in writers:
        if writer is not None:
            writer.close()
    report_and_check(server, "400 endless 1 MiB request heads", log_before)


async def test_idle_connections_are_closed_after_the_idle_timeout(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    _, url = fake_github
    server = Server(tmp_path, url, "[server]\nidle_timeout_seconds = 1\n")
    await server.start()
    try:
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
        half_reader, half_writer = await asyncio.open_connection("127.0.0.1", server.port)
        half_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never completed
        kept_reader, kept_writer = await asyncio.open_connection("127.0.0.1", server.port)
        kept_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # answered, then kept alive
        assert (await kept_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        # well inside aiohttp's own 75 s default: closed by the 1 s idle timeout (30 s only bounds a failure)
        for reader in (silent_reader, half_reader, kept_reader):
            assert await closed_by_server(reader, timeout=30)
        for writer in (silent_writer, half_writer, kept_writer):
            writer.close()
    finally:
        assert await server.stop() == 0


@pytest.mark.parametrize(("request_line", "status"), [(b"GET /nowhere", b"404"), (b"GET /webhook", b"405")])
async def test_the_head_limit_holds_after_a_request_no_route_takes(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], request_line: bytes, status: bytes
) -> None:
    """The head count restarts with each request, routed or not: a 404 or 405 first must not lift the 32 KiB limit
    for the rest of a kept-alive connection (the routes' tracking wrapper also takes what no route does)."""
    _, url = fake_github
    server = Server(tmp_path, url, "[server]\nidle_timeout_seconds = 120\n")  # only the head limit may close it
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status)
        assert status != b"405" or b"Allow: POST" in head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        with contextlib.suppress(OSError):
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for n in range(120):
                writer.write(b"X-Pad-%d: %s\r\n" % (n, b"a" * 8000))
            await asyncio.wait_for(writer.drain(), timeout=10)
        assert await closed_by_server(reader, timeout=30)
        writer.close()
    finally:
        assert await server.stop() == 0


async def test_a_body_sent_to_no_route_is_dropped_and_its_connection_closed_in_bounded_time(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    """An unauthenticated client posting an endless body to a path no route takes gets its 404 at once; the rest of
    the body is dropped unbuffered for aiohttp's lingering time (10 s), then the connection closes, however long the
    client goes on sending and whatever idle timeout is set."""
    _, url = fake_github
    server = Server(tmp_path, url, "[server]\nidle_timeout_seconds = 120\n")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000000\r\n\r\n" + b"a" * 65536)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 404")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 60:  # keeps sending until the server closes
                writer.write(b"a" * 65536)
                await asyncio.wait_for(writer.drain(), timeout=10)
                await asyncio.sleep(0.05)
        assert time.monotonic() - started < 30
        assert await closed_by_server(reader, timeout=5)
        writer.close()
    finally:
        assert await server.stop() == 0
