"""Helpers shared by the tests (never one test module importing another): fixture files, signed GitHub requests,
settings, the Lambda deployment tests' payloads and moto state, the relay's SNS-to-SQS chain."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import boto3
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.config import load_settings
from bot.delivery import Delivery
from bot.effects import OnceMark, start_mark
from bot.github_webhook import sign
from bot.settings import Settings

# The repository (README, Makefile, deploy/, examples/), whichever folder of tests/ a test module sits in.
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SECRET = "test-webhook-secret"

# What pytest-aiohttp's ``aiohttp_client`` returns for an application: spelled once, since ``TestClient`` is generic
# in its request and application types and strict mypy wants both.
AppClient: TypeAlias = TestClient[web.Request, web.Application]


async def wait_idle(client: AppClient, bound: int = 2000) -> None:
    """Poll /healthz until nothing is pending: a bounded loop, not a timing (every delivery finished, or fail)."""
    for _ in range(bound):
        health = await (await client.get("/healthz")).json()
        if health["pending"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("deliveries still pending")


@contextlib.contextmanager
def start_mark_recorded(on_mark: Callable[[], None]) -> Iterator[None]:
    """Handlers run inside as an inbox worker runs them, with a start mark (bot/effects.py) that calls ``on_mark``
    when asked for, instead of committing to a journal."""

    def commit() -> asyncio.Future[None]:
        on_mark()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    token = start_mark.set(OnceMark(commit))
    try:
        yield
    finally:
        start_mark.reset(token)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def github_headers(
    body: bytes, event: str, *, secret: str = SECRET, delivery_id: str | None = None, **extra: str
) -> dict[str, str]:
    """Headers as GitHub sends them for a JSON delivery signed with ``secret``."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret.encode()),
        "User-Agent": "GitHub-Hookshot/test",
    }
    headers.update(extra)
    return headers


def make_settings(tmp_path: Path, config: str = "", **env: Any) -> Settings:
    """Settings from a TOML snippet and environment values, isolated under ``tmp_path``."""
    path = tmp_path / "hookbot.toml"
    path.write_text(config)
    environment = {"HOOKBOT_STATE_DIR": str(tmp_path / "state"), "GITHUB_WEBHOOK_SECRET": SECRET}
    environment.update({key: str(value) for key, value in env.items()})
    return load_settings(environment, path)


def installation_token_2026(n: int = 1) -> str:
    """An installation token in the format GitHub moved to in 2026: ``ghs_`` and a signed JWT (three base64url
    parts joined by dots), about 520 characters in all. Deterministic, so a test can look for any part of it."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(b'{"alg":"RS256","typ":"JWT"}')
    claims = part(
        b'{"iss":"github.com","sub":"installation:%d","aud":"api.github.com","iat":1790000000,"exp":1790003600}' % n
    )
    # an RS256 signature is 256 bytes
    signature = part(b"".join(hashlib.sha512(b"%d-%d" % (n, i)).digest() for i in range(4)))
    return f"ghs_{header}.{claims}.{signature}"


# Shared by the Lambda deployment tests (test_lambda_deploy*.py): payloads, artifacts and moto's state.

REPO = "Codertocat/Hello-World"
ROLE_ARN = "arn:aws:iam::123456789012:role/app"
SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40
PUSHED_AT = 1557933657

CONFIG = f"""
[hookbot]
handlers = ["lambda_deploy"]

[[lambda_deploy.push]]
repository = "{REPO}"
branch = "master"
function = "app-fn"
artifact = "s3://artifacts/builds/{{repository_name}}/{{sha}}.zip"
alias = "live"
environment = "production"
create = {{ role = "{ROLE_ARN}", handler = "app.handler", runtime = "python3.12", memory = 256, timeout = 30 }}

[[lambda_deploy.s3]]
bucket = "artifacts"
prefix = "drop/"
function = "drop-fn"

[[lambda_deploy.s3]]
bucket = "artifacts"
prefix = "release/"
function = "{{stem}}"
pointer = "current.json"
alias = "live"
"""


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def code_zip(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("app.py", f"def handler(event, context):\n    return {text!r}\n")
    return out.getvalue()


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def push_payload(sha: str, *, pushed_at: int = PUSHED_AT, ref: str = "refs/heads/master") -> dict[str, Any]:
    payload = load("github/push.json")
    payload.update(ref=ref, after=sha)
    payload["head_commit"]["id"] = sha
    payload["repository"]["pushed_at"] = pushed_at
    return payload


def comment_payload(body: str, login: str) -> dict[str, Any]:
    payload = load("github/issue_comment.created.json")
    payload["comment"]["body"] = body
    payload["comment"]["created_at"] = "2019-05-15T15:30:00Z"  # after the test pushes (PUSHED_AT and later)
    payload["sender"]["login"] = payload["comment"]["user"]["login"] = login
    return payload


def github_delivery(event: str, payload: dict[str, Any]) -> Delivery:
    return Delivery(event, str(uuid.uuid4()), payload, orjson.dumps(payload), "github-http")


class Aws:
    """Synchronous boto3 clients for arranging and checking moto's state."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3")
        self.lam = boto3.client("lambda")
        boto3.client("iam").create_role(
            RoleName="app",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        self.s3.create_bucket(Bucket="artifacts")
        self.s3.put_bucket_versioning(Bucket="artifacts", VersioningConfiguration={"Status": "Enabled"})

    def put(self, key: str, body: bytes) -> str:
        return str(self.s3.put_object(Bucket="artifacts", Key=key, Body=body)["VersionId"])

    def artifact(self, sha: str) -> bytes:
        body = code_zip(f"build {sha[:7]}")
        self.put(f"builds/Hello-World/{sha}.zip", body)
        return body

    def create_function(self, name: str = "app-fn") -> str:
        self.put(f"seed/{name}.zip", code_zip("seed"))
        created = self.lam.create_function(
            FunctionName=name,
            Role=ROLE_ARN,
            Handler="app.handler",
            Runtime="python3.12",
            Code={"S3Bucket": "artifacts", "S3Key": f"seed/{name}.zip"},
        )
        return str(created["CodeSha256"])

    def config(self, name: str = "app-fn") -> dict[str, Any]:
        return dict(self.lam.get_function_configuration(FunctionName=name))

    def alias_version(self, name: str = "app-fn", alias: str = "live") -> str:
        return str(self.lam.get_alias(FunctionName=name, Name=alias)["FunctionVersion"])

    def version_description(self, version: str, name: str = "app-fn") -> str:
        return str(self.lam.get_function_configuration(FunctionName=name, Qualifier=version)["Description"])


def s3_record(fixture: str, index: int, key: str, version: str | None) -> dict[str, Any]:
    """A real S3 notification record, re-aimed at the test bucket (the key as S3 would encode it)."""
    record: dict[str, Any] = copy.deepcopy(load(fixture)["Records"][index])
    record["s3"]["bucket"]["name"] = "artifacts"
    record["s3"]["object"]["key"] = key
    if version:
        record["s3"]["object"]["versionId"] = version
    return record


# Shared by the relay and deploy-template tests: an SNS topic with an SQS queue subscribed, in moto.


class Chain:
    """A topic with an SQS queue subscribed to it, in moto."""

    def __init__(self) -> None:
        self.sns = boto3.client("sns")
        self.sqs = boto3.client("sqs")
        self.topic_arn = self.sns.create_topic(Name="hookbot-deliveries")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName="hookbot-worker")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def received(self) -> list[dict[str, Any]]:
        """The SNS envelopes waiting in the queue (each SQS body is one, since raw delivery is off)."""
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]
