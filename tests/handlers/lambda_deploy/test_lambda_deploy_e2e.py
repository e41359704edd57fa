"""Issue 4's "an S3 upload does the same without GitHub", end to end through each ingress.

A real upload to moto (a versioned bucket) gives the object's version, size and ETag; the S3 event is built from
AWS's recorded shapes re-aimed at that object, because moto's own notifications leave out ``versionId`` and
``sequencer``, the two fields this path depends on (S3ObjectVersion, and the delivery id that de-duplicates).
The event then goes in as AWS would send it: a plain S3 event to the Lambda entry, S3-in-SNS to the Lambda entry,
and S3-in-SNS signed with a test certificate to ``POST /sns`` of ``hookbot serve``'s app. Each ends with the
function's code, Description, a published version and the alias moved on moto, no request to GitHub, and the same
event delivered again skipped as a duplicate.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.aws_lambda import LambdaEntry
from bot.runtime import Runtime
from bot.s3_events import delivery_from_s3_record
from bot.server import create_app
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, AppClient, Aws, code_sha256, code_zip, make_settings, wait_idle
from tests.sns_signing import TOPIC, Signer, load_json, notification

KEY = "drop/build 7.zip"  # a space, so the '+' S3 writes in notifications is decoded on the way
FIXTURE_SNS = "aws/lambda-sns-s3-objectcreated.signed.json"
FIXTURE_TOPIC = load_json(FIXTURE_SNS)["Records"][0]["Sns"]["TopicArn"]

# No GitHub credentials at all: an S3-only auto-deployer acts once HOOKBOT_DRY_RUN=0 says so, and GitHub is
# never asked anything (the fake GitHub stays reachable only to prove that no request reaches it).
CONFIG = f"""
[hookbot]
handlers = ["lambda_deploy"]

[sns]
topic_arns = ["{TOPIC}", "{FIXTURE_TOPIC}"]

[[lambda_deploy.s3]]
bucket = "artifacts"
prefix = "drop/"
function = "drop-fn"
alias = "live"
"""


class Upload:
    """One object uploaded to moto, and the S3 event record AWS would write for it."""

    def __init__(self, aws: Aws, key: str, body: bytes) -> None:
        put = aws.s3.put_object(Bucket="artifacts", Key=key, Body=body)
        head = aws.s3.head_object(Bucket="artifacts", Key=key, VersionId=put["VersionId"])
        self.key, self.body, self.version = key, body, str(put["VersionId"])
        self.etag = str(put["ETag"]).strip('"')
        self.size = int(head["ContentLength"])
        self.event_time = head["LastModified"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.sequencer = secrets.token_hex(9).upper()  # S3's own ordering value for the key, one per event

    def aim(self, record: dict[str, Any]) -> dict[str, Any]:
        """A recorded S3 event record, re-aimed at this upload (the key encoded as S3 encodes it)."""
        aimed = copy.deepcopy(record)
        aimed["eventTime"] = self.event_time
        aimed["s3"]["bucket"].update(name="artifacts", arn="arn:aws:s3:::artifacts")
        aimed["s3"]["object"].update(
            key=quote_plus(self.key, safe="/"),
            versionId=self.version,
            eTag=self.etag,
            size=self.size,
            sequencer=self.sequencer,
        )
        return aimed

    def s3_event(self) -> dict[str, Any]:
        """A plain S3 event as Lambda receives it."""
        recorded = load_json("aws/lambda-s3-put.versionid.go.json")["Records"][0]
        return {"Records": [self.aim(recorded)]}

    def s3_message(self) -> str:
        """The SNS Message S3 publishes for this upload (recorded S3->SNS shape)."""
        recorded = json.loads(load_json(FIXTURE_SNS)["Records"][0]["Sns"]["Message"])
        return json.dumps({"Records": [self.aim(recorded["Records"][0])]}, separators=(",", ":"))

    def sns_event(self) -> dict[str, Any]:
        """The recorded S3->SNS->Lambda event carrying this upload (its signature no longer matches)."""
        event = load_json(FIXTURE_SNS)
        event["Records"][0]["Sns"]["Message"] = self.s3_message()
        return event

    def delivery_id(self) -> str:
        return delivery_from_s3_record(self.s3_event()["Records"][0], source="lambda-s3").delivery_id


@pytest.fixture
def aws(moto: str) -> Aws:
    made = Aws()
    made.create_function("drop-fn")
    return made


@pytest.fixture
def upload(aws: Aws) -> Upload:
    return Upload(aws, KEY, code_zip("dropped build 7"))


@pytest.fixture
def make_runtime(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> Callable[..., Runtime]:
    def make(**env: str) -> Runtime:
        settings = make_settings(tmp_path, CONFIG, HOOKBOT_DRY_RUN="0", GITHUB_API_URL=fake_github[1], **env)
        return Runtime.build(settings)

    return make


def assert_deployed(aws: Aws, upload: Upload) -> None:
    """New code, the Description saying what was deployed, version 1 published with it, the alias on it."""
    config = aws.config("drop-fn")
    description = f"deployed s3://artifacts/{KEY} (version {upload.version})"
    assert config["CodeSha256"] == code_sha256(upload.body)
    assert config["Description"] == description
    assert published(aws) == ["1"]
    assert aws.version_description("1", "drop-fn") == description
    assert aws.alias_version("drop-fn") == "1"


def published(aws: Aws) -> list[str]:
    versions = aws.lam.list_versions_by_function(FunctionName="drop-fn")["Versions"]
    return [v["Version"] for v in versions if v["Version"] != "$LATEST"]


async def invoke(entry: LambdaEntry, event: Any) -> Any:
    """One invocation as Lambda makes it: its own thread and its own ``asyncio.run`` loop."""
    return await asyncio.to_thread(entry, event, None)


@pytest.mark.parametrize("shape", ["s3", "sns"])
async def test_lambda_entry_deploys_an_upload_once(
    aws: Aws, upload: Upload, make_runtime: Callable[..., Runtime], fake_github: tuple[FakeGitHub, str], shape: str
) -> None:
    entry = LambdaEntry(make_runtime())
    event = upload.s3_event() if shape == "s3" else upload.sns_event()
    first = await invoke(entry, event)
    assert first["deliveries"] == [{"delivery": upload.delivery_id(), "event": "s3.ObjectCreated:Put", "status": "ok"}]
    assert_deployed(aws, upload)

    again = await invoke(entry, event)  # S3 or SNS delivering the same event again (a warm invocation)
    assert again["deliveries"][0]["status"] == "duplicate"
    assert published(aws) == ["1"]
    assert fake_github[0].requests == []


@pytest.fixture
async def cert_origin(aiohttp_server: Callable[..., Any], signer: Signer) -> str:
    """Stands in for SNS's certificate host (hookbot trusts it as AWS_ENDPOINT_URL_SNS, the emulator origin)."""

    async def certificate(request: web.Request) -> web.Response:
        return web.Response(body=signer.pem)

    app = web.Application()
    app.router.add_get("/cert.pem", certificate)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def signer() -> Signer:
    return Signer()


async def test_post_sns_deploys_an_upload_once(
    aws: Aws,
    upload: Upload,
    make_runtime: Callable[..., Runtime],
    fake_github: tuple[FakeGitHub, str],
    aiohttp_client: Callable[..., Any],
    signer: Signer,
    cert_origin: str,
) -> None:
    runtime = make_runtime(AWS_ENDPOINT_URL_SNS=cert_origin)
    client: AppClient = await aiohttp_client(create_app(runtime))
    document = signer.sign(
        notification(
            upload.s3_message(), subject="Amazon S3 Notification", version="1", cert_url=f"{cert_origin}/cert.pem"
        )
    )
    response = await client.post("/sns", data=orjson.dumps(document), headers={"Content-Type": "text/plain"})
    assert response.status == 202, await response.text()
    assert (await response.json())["delivery"] == upload.delivery_id()
    await wait_idle(client)  # the inbox works in the background
    assert_deployed(aws, upload)

    again = await client.post("/sns", data=orjson.dumps(document))  # SNS retrying the same message
    assert again.status == 200 and (await again.json())["status"] == "already handled"
    assert published(aws) == ["1"]
    assert fake_github[0].requests == []


def test_importing_the_plugin_loads_no_aws_sdk() -> None:
    """boto3 is paid for when a deployment runs, not when hookbot (or a Lambda cold start) loads its plugins."""
    code = "import sys, handlers.lambda_deploy; print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]"
