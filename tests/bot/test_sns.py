"""SNS verification: AWS's own signed messages, fresh test-signed ones, every forgery (refused before any fetch
where no certificate is needed to know), the certificate cache, SNS -> Delivery, and POST /sns over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.delivery import Refusal
from bot.github_events import event_from_payload
from bot.github_webhook import sign
from bot.runtime import Runtime
from bot.server import create_app
from bot.sns import SnsVerifier, message_time, parse_message, string_to_sign
from bot.sns_delivery import deliveries_from_notification
from bot.sns_fetch import SnsFetcher, verified_message
from tests.fake_github import FakeGitHub
from tests.helpers import SECRET, AppClient, fixture_bytes, make_settings, wait_idle
from tests.sns_signing import (
    CERT_URL,
    TOPIC,
    CountingGet,
    Signer,
    fixture_certificates,
    load_json,
    notification,
    subscription_confirmation,
)

ISSUE_OPENED = fixture_bytes("github/issues.opened.json").decode()

RECORDED = [
    "sns/http-notification.sigv1.subject.json",
    "sns/http-notification.sigv1.no-subject.json",
    "sns/http-notification.sigv1.message-attributes.json",
    "sns/http-notification.sigv2.json",
    "sns/http-notification.sigv2.subject.json",
    "sns/http-notification.s3-event.sigv1.json",
    "sns/http-subscription-confirmation.sigv1.json",
    "sns/http-unsubscribe-confirmation.sigv2.json",
    "sns/lambda-style-sns-object.sigv1.json",
    "aws/lambda-sns-s3-objectcreated.signed.json",
]


def recorded(name: str) -> dict[str, Any]:
    document = load_json(name)
    return dict(document["Records"][0]["Sns"]) if "Records" in document else document


def verifier_for(document: dict[str, Any], **kwargs: Any) -> SnsVerifier:
    """Allows the document's topic, with the clock a minute after its timestamp (the recorded certs expired)."""
    sent = message_time(parse_message(document))
    return SnsVerifier.build([document["TopicArn"]], clock=lambda: sent + 60, **kwargs)


def check(document: Any, verifier: SnsVerifier, get: CountingGet) -> Any:
    return asyncio.run(verified_message(document, verifier, SnsFetcher(get)))


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_aws_messages_verify(name: str) -> None:
    document = recorded(name)
    get = CountingGet(fixture_certificates())
    message = check(document, verifier_for(document), get)
    assert message.message_id == document["MessageId"]
    assert get.fetched == [document.get("SigningCertURL") or document["SigningCertUrl"]]


def test_lambda_spelling_and_null_subject_are_read() -> None:
    document = recorded("aws/lambda-sns-s3-objectcreated.signed.json")
    message = parse_message(document)
    assert message.signing_cert_url.endswith("60eadc530605d63b8e62a523676ef735.pem")
    assert message.unsubscribe_url and "Action=Unsubscribe" in message.unsubscribe_url
    lambda_null = recorded("sns/lambda-style-sns-object.sigv1.json") | {"Subject": None}
    check(lambda_null, verifier_for(lambda_null), CountingGet(fixture_certificates()))


def test_string_to_sign_follows_aws_order() -> None:
    document = notification("hi", subject="s", timestamp="2026-01-01T00:00:00.000Z") | {"MessageId": "m"}
    assert (
        string_to_sign(parse_message(document))
        == (
            f"Message\nhi\nMessageId\nm\nSubject\ns\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\n{TOPIC}\n"
            "Type\nNotification\n"
        ).encode()
    )


def test_recorded_message_tampered_fails() -> None:
    document = recorded("sns/http-notification.sigv2.json") | {"Message": "This message uses signature version 3."}
    with pytest.raises(Refusal) as caught:
        check(document, verifier_for(document), CountingGet(fixture_certificates()))
    assert caught.value.status == 401


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def get(signer: Signer) -> CountingGet:
    return CountingGet({CERT_URL: signer.pem})


VERIFIER = SnsVerifier.build([TOPIC])


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "a subject"])
def test_fresh_messages_verify(signer: Signer, get: CountingGet, version: str, subject: str | None) -> None:
    document = signer.sign(notification("hello", version=version, subject=subject))
    assert check(document, VERIFIER, get).message == "hello"


def test_fresh_confirmations_verify(signer: Signer, get: CountingGet) -> None:
    confirm = signer.sign(subscription_confirmation("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"))
    unsubscribe = signer.sign(confirm | {"Type": "UnsubscribeConfirmation"})
    for document in (confirm, unsubscribe):
        check(document, VERIFIER, get)
    assert get.fetched == [CERT_URL, CERT_URL]  # two fetchers, no shared cache here


@pytest.mark.parametrize(
    "change",
    [
        {"Message": "hello!"},
        {"Subject": "added"},
        {"TopicArn": "arn:aws:sns:us-east-1:123456789012:other-allowed"},
        {"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.us-east-1.amazonaws.com/", "Token": "t"},
        {"MessageId": "another"},
        {"SignatureVersion": "1"},
        {"Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"Signature": "%%% not base64 %%%"},
    ],
)
def test_tampered_fields_fail_the_signature(signer: Signer, get: CountingGet, change: dict[str, str]) -> None:
    document = signer.sign(notification("hello")) | change
    verifier = SnsVerifier.build([TOPIC, "arn:aws:sns:us-east-1:123456789012:other-allowed"])
    with pytest.raises(Refusal) as caught:
        check(document, verifier, get)
    assert caught.value.status == 401


def test_a_tampered_timestamp_inside_the_window_fails(signer: Signer, get: CountingGet) -> None:
    document = signer.sign(notification("hello"))
    document["Timestamp"] = document["Timestamp"][:-5] + ("1Z" if document["Timestamp"][-5:] != ".001Z" else "2Z")
    with pytest.raises(Refusal, match="does not verify"):
        check(document, VERIFIER, get)


def test_wrong_key_fails(signer: Signer, get: CountingGet) -> None:
    forged = Signer().sign(notification("hello"))  # another key, same certificate URL
    with pytest.raises(Refusal) as caught:
        check(forged, VERIFIER, get)
    assert caught.value.status == 401 and get.fetched == [CERT_URL]


def test_certificate_not_valid_at_the_message_time_fails(get: CountingGet) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = Signer(not_before=past - dt.timedelta(days=1), not_after=past)
    get.pages[CERT_URL] = expired.pem
    with pytest.raises(Refusal, match="not valid at the message's timestamp") as caught:
        check(expired.sign(notification("hello")), VERIFIER, get)
    assert caught.value.status == 401


UNTRUSTED_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com./SimpleNotificationService-0123abcd.pem",
    "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.evil.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://s3.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-0123abcd.pem",
    "https://evil.com@sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://user:pw@sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com%2f@evil.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com\t.evil.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem?x=https://evil.com/",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem#frag",
    "https://sns.us-east-1.amazonaws.com/../evil/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123ABCZ.pem",
    "https://sns.us-east-1.amazonaws.com/other.pem",
    "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-0123abcd.pem",
    "https://sns.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "file:///etc/ssl/SimpleNotificationService-0123abcd.pem",
    "ftp://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "//sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "http://127.0.0.1:9911/SimpleNotificationService-0123abcd.pem",  # the emulator's host, another port
    "https://127.0.0.1:9910/SimpleNotificationService-0123abcd.pem",  # the emulator's port, another scheme
    "",
]


@pytest.mark.parametrize("url", UNTRUSTED_CERT_URLS)
def test_untrusted_certificate_urls_are_refused_without_a_fetch(signer: Signer, url: str) -> None:
    get = CountingGet({url: signer.pem})
    document = signer.sign(notification("hello", cert_url=url))
    verifier = SnsVerifier.build([TOPIC], emulator_urls=["http://127.0.0.1:9910"])
    with pytest.raises(Refusal) as caught:
        check(document, verifier, get)
    assert caught.value.status == 403 and get.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123abcd.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "http://127.0.0.1:9910/any/path.pem",
        "http://127.0.0.1:80/x.pem",
    ],
)
def test_trusted_certificate_urls(url: str) -> None:
    verifier = SnsVerifier.build([TOPIC], emulator_urls=["http://127.0.0.1:9910", "http://127.0.0.1/"])
    assert verifier.is_trusted_cert_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com/?Action=ConfirmSubscription",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com@evil.com/?Action=ConfirmSubscription",
        "file:///etc/passwd",
    ],
)
def test_subscribe_url_elsewhere_is_refused_without_a_fetch(signer: Signer, get: CountingGet, url: str) -> None:
    document = signer.sign(subscription_confirmation(url))
    with pytest.raises(Refusal) as caught:
        check(document, VERIFIER, get)
    assert caught.value.status == 403 and get.fetched == []


@pytest.mark.parametrize("allowed", [[], ["arn:aws:sns:us-east-1:123456789012:another"]])
def test_foreign_topic_is_refused_without_a_fetch(signer: Signer, get: CountingGet, allowed: list[str]) -> None:
    with pytest.raises(Refusal) as caught:
        check(signer.sign(notification("hello")), SnsVerifier.build(allowed), get)
    assert caught.value.status == 403 and get.fetched == []


@pytest.mark.parametrize("offset", [-3601, -86400 * 400, 3600])
def test_stale_or_future_timestamp_is_refused_without_a_fetch(signer: Signer, get: CountingGet, offset: int) -> None:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    document = signer.sign(notification("hello", timestamp=moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    with pytest.raises(Refusal) as caught:
        check(document, VERIFIER, get)
    assert caught.value.status == 401 and get.fetched == []


def test_max_age_is_configurable(signer: Signer, get: CountingGet) -> None:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    document = signer.sign(notification("hello", timestamp=moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    with pytest.raises(Refusal, match="max_age_seconds=60"):
        check(document, SnsVerifier.build([TOPIC], max_age_seconds=60), get)


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ([1, 2], 400),
        ({"Type": "Notice"}, 400),
        (notification("x") | {"Type": None}, 400),
        ({k: v for k, v in notification("x").items() if k != "Message"}, 400),
        (notification("x") | {"Message": {"not": "a string"}}, 400),
        (notification("x") | {"Timestamp": "yesterday"}, 400),
        (notification("x") | {"Timestamp": "2026-01-01T00:00:00"}, 400),
        (
            {
                k: v
                for k, v in subscription_confirmation("https://sns.us-east-1.amazonaws.com/").items()
                if k != "Token"
            },
            400,
        ),
        (notification("x") | {"SignatureVersion": "3"}, 401),
        (notification("x") | {"MessageAttributes": ["x"]}, 400),
    ],
)
def test_malformed_messages_are_refused_without_a_fetch(get: CountingGet, document: Any, status: int) -> None:
    with pytest.raises(Refusal) as caught:
        check(document, VERIFIER, get)
    assert caught.value.status == status and get.fetched == []


def test_docs_examples_with_placeholder_signatures_are_refused() -> None:
    for kind in ("notification", "subscription-confirmation", "unsubscribe-confirmation"):
        text = fixture_bytes(f"sns/docs-http-post.{kind}.txt").decode()
        document = orjson.loads(text[text.index("{") :])
        with pytest.raises(Refusal) as caught:
            check(document, SnsVerifier.build([document["TopicArn"]]), CountingGet())
        assert caught.value.status in (401, 403)


async def test_a_burst_fetches_each_certificate_once(signer: Signer, get: CountingGet) -> None:
    fetcher = SnsFetcher(get)
    documents = [signer.sign(notification(f"message {i}")) for i in range(20)]
    await asyncio.gather(*(verified_message(document, VERIFIER, fetcher) for document in documents))
    assert get.fetched == [CERT_URL]


async def test_cache_is_bounded_and_expires(signer: Signer) -> None:
    now = [0.0]
    urls = [f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{i:04x}.pem" for i in range(3)]
    get = CountingGet(dict.fromkeys(urls, signer.pem))
    fetcher = SnsFetcher(get, max_entries=2, lifetime=100, clock=lambda: now[0])
    for url in urls:
        await fetcher.certificate(url)
    await fetcher.certificate(urls[2])
    assert len(get.fetched) == 3
    await fetcher.certificate(urls[0])  # evicted as the oldest
    assert len(get.fetched) == 4
    now[0] = 101.0
    await fetcher.certificate(urls[0])  # expired
    assert len(get.fetched) == 5


async def test_failed_fetch_is_503_and_remembered_for_a_minute(signer: Signer) -> None:
    now = [0.0]
    get = CountingGet()
    fetcher = SnsFetcher(get, clock=lambda: now[0])
    with pytest.raises(Refusal) as caught:
        await fetcher.certificate(CERT_URL)
    assert caught.value.status == 503 and caught.value.retry_after == 60
    get.pages[CERT_URL] = signer.pem
    with pytest.raises(Refusal):
        await fetcher.certificate(CERT_URL)  # answered from memory: no second fetch
    assert get.fetched == [CERT_URL]
    now[0] = 61.0
    assert await fetcher.certificate(CERT_URL) == signer.pem


# --- SNS Notification -> Delivery ------------------------------------------------------------------------------


def github_message(body: str, event: str = "issues", **attributes: str) -> Any:
    values = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": sign(body.encode(), b"s")}
    values.update(attributes)
    return parse_message(notification(body, attributes={k: v for k, v in values.items() if v}))


def to_deliveries(message: Any, require: bool = False) -> Any:
    return deliveries_from_notification(message, secrets=[b"s"], require_github_signature=require, source="sns-http")


def test_github_delivery_keeps_the_exact_body_and_headers() -> None:
    (delivery,) = to_deliveries(github_message(ISSUE_OPENED))
    assert (delivery.event, delivery.delivery_id, delivery.body) == ("issues", "d-1", ISSUE_OPENED.encode())
    assert delivery.action == "opened"


@pytest.mark.parametrize(
    ("attributes", "require", "status"),
    [
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, False, 401),
        ({"X-Hub-Signature-256": ""}, True, 401),
        ({"X-GitHub-Event": ""}, False, 400),
    ],
)
def test_github_delivery_refusals(attributes: dict[str, str], require: bool, status: int) -> None:
    with pytest.raises(Refusal) as caught:
        to_deliveries(github_message(ISSUE_OPENED, **attributes), require)
    assert caught.value.status == status


def test_unsigned_github_attributes_accepted_unless_required() -> None:
    assert to_deliveries(github_message(ISSUE_OPENED, **{"X-Hub-Signature-256": ""}))[0].event == "issues"


@pytest.mark.parametrize(
    ("fixture", "event"),
    [
        ("push.json", "push"),
        ("push.deleted-tag.json", "push"),
        ("issue_comment.created.json", "issue_comment"),
        ("issues.opened.json", "issues"),
        ("pull_request.opened.json", "pull_request"),
        ("create.tag.json", "create"),
        ("ping.json", "ping"),
        ("installation.created.json", "installation"),
    ],
)
def test_legacy_messages_are_told_by_shape(fixture: str, event: str) -> None:
    body = fixture_bytes(f"github/{fixture}").decode()
    assert event_from_payload(orjson.loads(body)) == event
    (delivery,) = to_deliveries(parse_message(notification(body)))
    assert delivery.event == event and delivery.delivery_id.startswith("sns-")
    with pytest.raises(Refusal) as caught:
        to_deliveries(parse_message(notification(body)), require=True)
    assert caught.value.status == 401


def test_s3_notification_inside_sns() -> None:
    message = parse_message(recorded("sns/http-notification.s3-event.sigv1.json"))
    (delivery,) = to_deliveries(message)
    assert (delivery.event, delivery.action, delivery.payload["key"]) == (
        "s3",
        "ObjectCreated:Put",
        "firehose-s3-template.json",
    )
    assert to_deliveries(parse_message(notification('{"Service":"Amazon S3","Event":"s3:TestEvent"}'))) == []


@pytest.mark.parametrize("body", ["plain text", "[1]", '{"unknown": "shape"}'])
def test_unknown_messages_are_400(body: str) -> None:
    with pytest.raises(Refusal) as caught:
        to_deliveries(parse_message(notification(body)))
    assert caught.value.status == 400


# --- POST /sns over real HTTP ----------------------------------------------------------------------------------


@dataclass
class SnsBot:
    client: AppClient
    fake: FakeGitHub
    visits: list[str]
    origin: str


@pytest.fixture
async def sns_bot(
    tmp_path: Path,
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
    signer: Signer,
) -> SnsBot:
    """hookbot whose emulator origin (AWS_ENDPOINT_URL_SNS) is a local server serving the test certificate and
    answering ConfirmSubscription: certificate fetch and SubscribeURL visit both go over real HTTP."""
    visits: list[str] = []

    async def emulator(request: web.Request) -> web.Response:
        visits.append(request.path_qs)
        if request.path == "/cert.pem":
            return web.Response(body=signer.pem)
        if request.path == "/big.pem":
            return web.Response(body=b"-" * 100_000)
        if request.path == "/moved.pem":
            raise web.HTTPFound("https://evil.example/cert.pem")
        return web.Response(text="<ConfirmSubscriptionResponse/>")

    app = web.Application()
    app.router.add_get("/{tail:.*}", emulator)
    server: TestServer = await aiohttp_server(app)
    fake, url = fake_github
    settings = make_settings(
        tmp_path,
        f'[sns]\ntopic_arns = ["{TOPIC}"]\n',
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=url,
        AWS_ENDPOINT_URL_SNS=str(server.make_url("/")),
    )
    client: AppClient = await aiohttp_client(create_app(Runtime.build(settings)))
    return SnsBot(client, fake, visits, str(server.make_url("")).rstrip("/"))


async def test_post_sns_github_delivery_becomes_a_comment(sns_bot: SnsBot, signer: Signer) -> None:
    client, fake, visits, origin = sns_bot.client, sns_bot.fake, sns_bot.visits, sns_bot.origin
    attributes = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "sns-http-1",
        "X-Hub-Signature-256": sign(ISSUE_OPENED.encode(), SECRET.encode()),
    }
    document = signer.sign(notification(ISSUE_OPENED, cert_url=f"{origin}/cert.pem", attributes=attributes))
    response = await client.post("/sns", data=orjson.dumps(document), headers={"Content-Type": "text/plain"})
    assert response.status == 202
    await wait_idle(client)
    assert fake.posted_comments()[0][0] == "/repos/Codertocat/Hello-World/issues/1/comments"
    again = await client.post("/sns", data=orjson.dumps(document))
    assert again.status == 200 and (await again.json())["status"] == "already handled"
    assert visits == ["/cert.pem"]  # cached for the second message


async def test_post_sns_subscription_is_confirmed_only_after_the_signature(sns_bot: SnsBot, signer: Signer) -> None:
    client, visits, origin = sns_bot.client, sns_bot.visits, sns_bot.origin
    confirm = subscription_confirmation(f"{origin}/?Action=ConfirmSubscription&Token=t", cert_url=f"{origin}/cert.pem")
    forged = Signer().sign(dict(confirm))
    assert (await client.post("/sns", data=orjson.dumps(forged))).status == 401
    assert visits == ["/cert.pem"]
    response = await client.post("/sns", data=orjson.dumps(signer.sign(confirm)))
    assert response.status == 200 and (await response.json())["status"] == "subscribed"
    assert visits == ["/cert.pem", "/?Action=ConfirmSubscription&Token=t"]
    unsubscribe = signer.sign(dict(confirm) | {"Type": "UnsubscribeConfirmation"})
    assert (await (await client.post("/sns", data=orjson.dumps(unsubscribe))).json())["status"] == "noted"
    assert len(visits) == 2  # an UnsubscribeConfirmation is logged, never acted on


async def test_post_sns_does_not_follow_a_certificate_redirect(sns_bot: SnsBot, signer: Signer) -> None:
    client, visits, origin = sns_bot.client, sns_bot.visits, sns_bot.origin
    document = signer.sign(notification(ISSUE_OPENED, cert_url=f"{origin}/moved.pem"))
    assert (await client.post("/sns", data=orjson.dumps(document))).status == 503
    assert visits == ["/moved.pem"]


async def test_post_sns_refuses_an_oversized_certificate(sns_bot: SnsBot, signer: Signer) -> None:
    document = signer.sign(notification(ISSUE_OPENED, cert_url=f"{sns_bot.origin}/big.pem"))
    assert (await sns_bot.client.post("/sns", data=orjson.dumps(document))).status == 403


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda s, o: b"not json", 400),
        (lambda s, o: orjson.dumps(s.sign(notification("x", topic="arn:aws:sns:us-east-1:1:other")) | {}), 403),
        (lambda s, o: orjson.dumps(s.sign(notification(ISSUE_OPENED, cert_url="https://evil.example/c.pem"))), 403),
        (lambda s, o: orjson.dumps(Signer().sign(notification(ISSUE_OPENED, cert_url=f"{o}/cert.pem"))), 401),
        (lambda s, o: orjson.dumps(s.sign(notification("not a delivery", cert_url=f"{o}/cert.pem"))), 400),
    ],
)
async def test_post_sns_refusals_log_one_line(
    sns_bot: SnsBot,
    signer: Signer,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Signer, str], bytes],
    status: int,
) -> None:
    client, fake = sns_bot.client, sns_bot.fake
    with caplog.at_level(logging.WARNING, logger="hookbot.server"):
        response = await client.post("/sns", data=make(signer, sns_bot.origin))
    assert response.status == status
    assert len([r for r in caplog.records if r.name == "hookbot.server"]) == 1
    assert fake.requests == []


def test_recorded_messages_are_stale_by_todays_clock() -> None:
    document = recorded("sns/http-notification.sigv2.json")
    get = CountingGet(fixture_certificates())
    with pytest.raises(Refusal, match="older than") as caught:
        check(document, SnsVerifier.build([document["TopicArn"]]), get)
    assert caught.value.status == 401 and get.fetched == []
