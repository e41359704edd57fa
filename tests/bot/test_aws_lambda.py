"""The Lambda entry: run by the real awslambdaric against a local fake of the Lambda Runtime API, and called
directly (each call in its own thread and ``asyncio.run`` loop, as warm invocations are) for the many shapes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.aws_lambda import LambdaEntry, RecordsFailed
from bot.github_webhook import sign
from bot.runtime import Runtime
from bot.sns import SnsVerifier, message_time, parse_message
from bot.sns_fetch import SnsFetcher
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, SECRET, fixture_bytes, github_headers, make_settings
from tests.lambda_events import api_gateway_v1_event, function_url_event, sns_event
from tests.sns_signing import CERT_URL, TOPIC, CountingGet, Signer, fixture_certificates, load_json, notification

ISSUE_OPENED = fixture_bytes("github/issues.opened.json")
COMMENTS = "/repos/Codertocat/Hello-World/issues/1/comments"


def github_sns(body: bytes = ISSUE_OPENED, *, secret: str = SECRET, delivery: str = "gh-1", **kwargs: Any) -> Any:
    attributes = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, secret.encode()),
    }
    return notification(body.decode(), attributes=attributes, **kwargs)


# --- awslambdaric against a fake Runtime API ---------------------------------------------------------------------


class FakeRuntimeAPI:
    """The three Runtime API routes a function uses: hand out queued events, collect responses and errors."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.results: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self._ids = itertools.count(1)

    def invoke(self, event: Any) -> asyncio.Future[tuple[str, Any]]:
        request_id = f"req-{next(self._ids)}"
        self.results[request_id] = asyncio.get_running_loop().create_future()
        self.events.put_nowait((request_id, event))
        return self.results[request_id]

    async def next(self, request: web.Request) -> web.Response:
        request_id, event = await self.events.get()
        return web.Response(
            body=json.dumps(event).encode(),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": "9999999999999",
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:hookbot",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
            },
        )

    async def outcome(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.results[request.match_info["id"]].set_result((kind, json.loads(await request.read())))
        return web.json_response({"status": "OK"}, status=202)

    async def init_error(self, request: web.Request) -> web.Response:
        for future in self.results.values():
            if not future.done():
                future.set_result(("init-error", json.loads(await request.read())))
        return web.json_response({"status": "OK"}, status=202)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2018-06-01/runtime/invocation/next", self.next)
        app.router.add_post("/2018-06-01/runtime/invocation/{id}/{kind:response|error}", self.outcome)
        app.router.add_post("/2018-06-01/runtime/init/error", self.init_error)
        return app


async def test_awslambdaric_runs_the_handler_warm_across_invocations(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str], aiohttp_server: Callable[..., Any]
) -> None:
    fake, github_url = fake_github
    runtime_api = FakeRuntimeAPI()
    server: TestServer = await aiohttp_server(runtime_api.app())
    config = tmp_path / "hookbot.toml"
    config.write_text(f'[sns]\ntopic_arns = ["{TOPIC}"]\n')
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "GITHUB_", "HOOKBOT_", "SNS_"))
    }
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.port}",
        LAMBDA_TASK_ROOT=str(ROOT),
        HOOKBOT_CONFIG=str(config),
        HOOKBOT_STATE_DIR=str(tmp_path / "state"),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_TOKEN="ghp_lambda",
        GITHUB_API_URL=github_url,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "awslambdaric", "bot.aws_lambda.handler",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first = await asyncio.wait_for(runtime_api.invoke(sns_event(github_sns())), 60)
        assert first[0] == "response", first
        assert first[1]["deliveries"] == [{"delivery": "gh-1", "event": "issues.opened", "status": "ok"}]
        # A warm invocation: a new event loop, the same Runtime; SNS delivering the same message again is skipped.
        again = await asyncio.wait_for(runtime_api.invoke(sns_event(github_sns())), 30)
        assert again[1]["deliveries"][0]["status"] == "duplicate"
        url_event = function_url_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues"), encode=True)
        answered = await asyncio.wait_for(runtime_api.invoke(url_event), 30)
        assert answered[0] == "response" and answered[1]["statusCode"] == 200
        forged = await asyncio.wait_for(runtime_api.invoke(sns_event(github_sns(secret="wrong", delivery="gh-2"))), 30)
        assert forged[0] == "error" and forged[1]["errorType"] == "RecordsFailed"
        assert "does not match" in forged[1]["errorMessage"]
    finally:
        process.kill()
        _, stderr = await process.communicate()
    assert len(fake.posted_comments()) == 1, stderr.decode()[-2000:]
    assert fake.calls("POST", COMMENTS)[0].headers["Authorization"] == "token ghp_lambda"


# --- direct calls --------------------------------------------------------------------------------------------------


@pytest.fixture
def entry(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> LambdaEntry:
    _, url = fake_github
    settings = make_settings(
        tmp_path,
        f'[sns]\ntopic_arns = ["{TOPIC}", "arn:aws:sns:us-east-1:683517028648:s3-sns-unwrap-Topic-7Xaj1echf9dg"]\n'
        "[server]\nmax_body_bytes = 100000\n",
        GITHUB_TOKEN="ghp_test",
        GITHUB_API_URL=url,
    )
    return LambdaEntry(Runtime.build(settings))


async def invoke(entry: LambdaEntry, event: Any) -> Any:
    """One invocation as Lambda makes it: its own thread and its own ``asyncio.run`` loop."""
    return await asyncio.to_thread(entry, event, None)


@pytest.mark.parametrize(
    "make_event",
    [
        lambda body, headers: function_url_event(body, headers),
        lambda body, headers: function_url_event(body, headers, encode=True),
        lambda body, headers: api_gateway_v1_event(body, headers),
        lambda body, headers: api_gateway_v1_event(body, {k.upper(): v for k, v in headers.items()}),
    ],
)
async def test_http_events_become_a_comment_once(
    entry: LambdaEntry, fake_github: tuple[FakeGitHub, str], make_event: Callable[[bytes, dict[str, str]], Any]
) -> None:
    fake, _ = fake_github
    event = make_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues"))
    first = await invoke(entry, event)
    assert first["statusCode"] == 200 and json.loads(first["body"])["status"] == "handled"
    second = await invoke(entry, event)
    assert second["statusCode"] == 200 and json.loads(second["body"])["status"] == "already handled"
    assert [path for path, _ in fake.posted_comments()] == [COMMENTS]


@pytest.mark.parametrize(
    ("make_event", "status"),
    [
        (lambda h: function_url_event(ISSUE_OPENED, h | {"X-Hub-Signature-256": sign(ISSUE_OPENED, b"no")}), 401),
        (lambda h: function_url_event(ISSUE_OPENED, {k: v for k, v in h.items() if "Signature" not in k}), 401),
        (lambda h: function_url_event(ISSUE_OPENED, {k: v for k, v in h.items() if k != "X-GitHub-Event"}), 400),
        (lambda h: function_url_event(ISSUE_OPENED, h, method="GET"), 405),
        (lambda h: function_url_event(ISSUE_OPENED, h) | {"body": "%%%", "isBase64Encoded": True}, 400),
        (lambda h: function_url_event(ISSUE_OPENED, h) | {"body": "\u00e9t\u00e9", "isBase64Encoded": True}, 400),
        (lambda h: function_url_event(ISSUE_OPENED, h) | {"body": "\ud800"}, 400),
        (lambda h: function_url_event(b"{" + b" " * 100_001 + b"}", h), 413),
    ],
)
async def test_http_refusals(
    entry: LambdaEntry,
    fake_github: tuple[FakeGitHub, str],
    caplog: pytest.LogCaptureFixture,
    make_event: Callable[[dict[str, str]], Any],
    status: int,
) -> None:
    fake, _ = fake_github
    answer = await invoke(entry, make_event(github_headers(ISSUE_OPENED, "issues")))
    assert answer["statusCode"] == status and "error" in json.loads(answer["body"])
    assert len([r for r in caplog.records if r.name == "hookbot.lambda"]) == 1
    assert fake.requests == []


async def test_ping_over_a_function_url(entry: LambdaEntry) -> None:
    body = fixture_bytes("github/ping.json")
    answer = await invoke(entry, function_url_event(body, github_headers(body, "ping")))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["ok"] is True


async def test_sns_record_with_a_github_delivery(entry: LambdaEntry, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, _ = fake_github
    result = await invoke(entry, sns_event(github_sns()))
    assert result == {"deliveries": [{"delivery": "gh-1", "event": "issues.opened", "status": "ok"}]}
    assert len(fake.posted_comments()) == 1


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (github_sns(secret="wrong"), "does not match"),
        (github_sns(topic="arn:aws:sns:us-east-1:999999999999:elsewhere"), "not in SNS_TOPIC_ARNS"),
        (notification('{"hello": 1}'), "require_github_signature is true"),
        ({"Type": "Notification"}, "no MessageId"),
    ],
)
async def test_refused_sns_records_raise(
    entry: LambdaEntry, fake_github: tuple[FakeGitHub, str], document: Any, reason: str
) -> None:
    fake, _ = fake_github
    with pytest.raises(RecordsFailed, match=reason):
        await invoke(entry, sns_event(github_sns(delivery="ok-1"), document))
    assert fake.requests == []  # a bad record stops the whole event before anything is done


async def test_a_failing_handler_raises_and_the_retry_runs_it_again(
    entry: LambdaEntry, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.responses[("POST", COMMENTS)] = (502, {"message": "Server Error"})
    with pytest.raises(RecordsFailed, match="handlers failed for gh-1"):
        await invoke(entry, sns_event(github_sns()))
    del fake.responses[("POST", COMMENTS)]
    assert (await invoke(entry, sns_event(github_sns())))["deliveries"][0]["status"] == "ok"
    assert len(fake.comments[COMMENTS]) == 1  # the first attempt's POST was answered 502 and stored nothing


async def test_s3_records_decode_keys(entry: LambdaEntry) -> None:
    result = await invoke(entry, json.loads(fixture_bytes("aws/lambda-s3-put.plus-key.dotnet.json")))
    ids = [item["delivery"] for item in result["deliveries"]]
    assert len(ids) == 2 and "/New File.jpg@" in ids[1]
    versioned = await invoke(entry, json.loads(fixture_bytes("aws/lambda-s3-put.versionid.go.json")))
    assert "Happy Face.jpg@version" in versioned["deliveries"][0]["delivery"]


async def test_s3_inside_sns_with_the_full_signature_check(entry: LambdaEntry) -> None:
    """verify_in_lambda: AWS's own signed S3->SNS->Lambda record passes with the clock at its time; a tampered
    copy does not."""
    event = load_json("aws/lambda-sns-s3-objectcreated.signed.json")
    sns = event["Records"][0]["Sns"]
    sent = message_time(parse_message(sns))
    runtime = entry.runtime
    runtime.settings = make_settings_with(runtime, verify_in_lambda=True)
    runtime.sns_verifier = SnsVerifier.build([sns["TopicArn"]], clock=lambda: sent + 5)
    get = CountingGet(fixture_certificates())
    runtime.sns_fetcher = SnsFetcher(get)
    result = await invoke(entry, event)
    assert result["deliveries"][0]["event"] == "s3.ObjectCreated:Put"
    assert "/samconfig.toml@" in result["deliveries"][0]["delivery"]
    sns["Message"] = sns["Message"].replace("samconfig.toml", "evil.toml")
    with pytest.raises(RecordsFailed, match="does not verify"):
        await invoke(entry, event)
    assert get.fetched == [sns["SigningCertUrl"]]  # one fetch, cached across the two invocations' loops


async def test_verify_in_lambda_refuses_a_record_signed_with_another_key(entry: LambdaEntry) -> None:
    entry.runtime.settings = make_settings_with(entry.runtime, verify_in_lambda=True)
    entry.runtime.sns_fetcher = SnsFetcher(get := CountingGet({CERT_URL: Signer().pem}))
    with pytest.raises(RecordsFailed, match="refused \\(401\\)"):
        await invoke(entry, sns_event(Signer().sign(github_sns())))
    assert len(get.fetched) == 1


def make_settings_with(runtime: Runtime, **sns: Any) -> Any:
    import dataclasses

    return dataclasses.replace(runtime.settings, sns=dataclasses.replace(runtime.settings.sns, **sns))


def test_importing_the_entry_loads_no_heavy_dependency() -> None:
    """A cold start pays for these only when a code path needs them (measured: see README)."""
    heavy = ("boto3", "botocore", "cryptography", "aiohttp", "gidgethub")
    code = f"import sys, bot.aws_lambda; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]"
