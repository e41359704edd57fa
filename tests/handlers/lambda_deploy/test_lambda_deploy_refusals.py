"""Issue 12: lambda_deploy deploys only what its config allows, whoever asks.

A ``/deploy`` of a commit that is not on the rule's branch (a fork's commit, a colliding short sha) is answered and
changes nothing; a ``{stem}`` made from an uploaded key must be a bare function name (an ARN, a path, a name with
dots are refused), ``functions`` globs narrow it further, and hookbot never deploys over the function it runs as.
Real HTTP throughout: the recording fake GitHub (with its compare API) and moto in server mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import Runtime
from bot.s3_events import delivery_from_s3_record
from tests.fake_github import FakeGitHub
from tests.helpers import (
    REPO,
    SHA_A,
    SHA_B,
    Aws,
    code_sha256,
    code_zip,
    comment_payload,
    github_delivery,
    make_settings,
    s3_record,
)

SHA_FORK = "f0f0f0f" + "1" * 33  # a commit GitHub resolves from the repository that never reached master

CONFIG = f"""
[hookbot]
handlers = ["lambda_deploy"]

[[lambda_deploy.push]]
repository = "{REPO}"
branch = "master"
function = "app-fn"
artifact = "s3://artifacts/builds/{{repository_name}}/{{sha}}.zip"
alias = "live"

[[lambda_deploy.s3]]
bucket = "artifacts"
prefix = "drop/"
function = "{{stem}}"

[[lambda_deploy.s3]]
bucket = "artifacts"
prefix = "apps/"
function = "{{stem}}"
functions = ["app-*"]
"""


@pytest.fixture
def aws(moto: str) -> Aws:
    return Aws()


@pytest.fixture
def make_runtime(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> Any:
    def make(config: str = CONFIG, **env: str) -> Runtime:
        values = {"GITHUB_TOKEN": "ghp_test", "GITHUB_API_URL": fake_github[1]} | env
        return Runtime.build(make_settings(tmp_path, config, **values))

    return make


@pytest.fixture
async def runtime(make_runtime: Any) -> Any:
    made: Runtime = make_runtime(CONFIG)
    yield made
    await made.close()


@pytest.fixture
def fake(fake_github: tuple[FakeGitHub, str]) -> FakeGitHub:
    made, _ = fake_github
    made.permissions["Codertocat"] = "write"
    for sha in (SHA_A, SHA_B, SHA_FORK):
        made.commits[f"{REPO}@{sha}"] = {}
    made.branches[f"{REPO}@master"] = [SHA_A, SHA_B]
    return made


def versions(aws: Aws, name: str = "app-fn") -> list[str]:
    return [v["Version"] for v in aws.lam.list_versions_by_function(FunctionName=name)["Versions"]]


async def test_deploy_of_a_commit_not_on_the_branch_is_refused_and_changes_nothing(
    aws: Aws, runtime: Runtime, fake: FakeGitHub
) -> None:
    seed = aws.create_function()
    aws.artifact(SHA_FORK)
    result = await runtime.dispatcher.dispatch(
        github_delivery("issue_comment", comment_payload("/deploy f0f0f0f", "Codertocat"))
    )
    assert result.ok, result.outcomes
    ((_, reply),) = fake.posted_comments()
    assert reply.startswith(f"Did not deploy `{SHA_FORK}`: it is not on `master`")
    assert fake.calls("GET", f"/repos/{REPO}/compare/master...{SHA_FORK}")
    assert fake.deployments == {}
    assert aws.config()["CodeSha256"] == seed and versions(aws) == ["$LATEST"]


async def test_deploy_of_an_older_commit_of_the_branch_names_its_full_sha(
    aws: Aws, runtime: Runtime, fake: FakeGitHub
) -> None:
    aws.create_function()
    body = aws.artifact(SHA_A)
    result = await runtime.dispatcher.dispatch(
        github_delivery("issue_comment", comment_payload("/deploy aaaaaaa", "Codertocat"))
    )
    assert result.ok, result.outcomes
    assert aws.config()["CodeSha256"] == code_sha256(body)
    assert aws.config()["Description"] == f"deployed {SHA_A} from {REPO}@master"
    ((deployment,),) = [list(fake.deployments.values())]
    assert deployment["ref"] == SHA_A
    assert deployment["statuses"][0]["description"] == f"deploying {SHA_A} to app-fn"
    ((_, reply),) = fake.posted_comments()
    assert reply.startswith(f"Deployed `{SHA_A}` to `app-fn`")


async def test_deploy_when_github_cannot_compare_is_refused(aws: Aws, runtime: Runtime, fake: FakeGitHub) -> None:
    aws.create_function()
    del fake.branches[f"{REPO}@master"]  # GitHub answers 404 (a fork's commit, a branch gone)
    command = comment_payload("/deploy bbbbbbb", "Codertocat")
    await runtime.dispatcher.dispatch(github_delivery("issue_comment", command))
    ((_, reply),) = fake.posted_comments()
    assert reply.startswith(f"Did not deploy `{SHA_B}`: it is not on `master`") and "unknown" in reply
    assert fake.deployments == {}


async def upload(aws: Aws, runtime: Runtime, key: str, body: bytes) -> None:
    version = aws.put(key, body)
    record = s3_record("aws/lambda-s3-put.powertools.json", 0, key, version)
    result = await runtime.dispatcher.dispatch(delivery_from_s3_record(record, source="lambda-s3"))
    assert result.ok, result.outcomes  # refused, not failed: a retry could not change the key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("drop/arn:aws:lambda:us-east-1:123456789012:function:payments.zip", "not a Lambda function name"),
        ("drop/team/payments.zip", "not a Lambda function name"),
        ("drop/payments.v2.zip", "not a Lambda function name"),
        ("apps/payments.zip", "not one of the functions this rule may deploy"),
    ],
    ids=["arn", "path", "dots", "outside-functions-glob"],
)
async def test_stem_that_is_not_a_plain_allowed_name_is_skipped(
    aws: Aws, runtime: Runtime, caplog: pytest.LogCaptureFixture, key: str, why: str
) -> None:
    seed = aws.create_function("payments")
    with caplog.at_level(logging.WARNING, logger="hookbot.handlers.lambda_deploy"):
        await upload(aws, runtime, key, code_zip("pwned"))
    assert aws.config("payments")["CodeSha256"] == seed
    assert versions(aws, "payments") == ["$LATEST"]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hookbot.handlers.lambda_deploy"]
    assert line.startswith("not deploying s3://artifacts/") and why in line


async def test_stem_inside_the_functions_glob_deploys(aws: Aws, runtime: Runtime) -> None:
    aws.create_function("app-web")
    body = code_zip("web 2")
    await upload(aws, runtime, "apps/app-web.zip", body)
    assert aws.config("app-web")["CodeSha256"] == code_sha256(body)


async def test_hookbot_never_deploys_over_its_own_function(
    aws: Aws, make_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed = aws.create_function("hookbot-worker")
    runtime: Runtime = make_runtime(CONFIG, AWS_LAMBDA_FUNCTION_NAME="hookbot-worker")
    with caplog.at_level(logging.WARNING, logger="hookbot.handlers.lambda_deploy"):
        await upload(aws, runtime, "drop/hookbot-worker.zip", code_zip("pwned"))
    await runtime.close()
    assert aws.config("hookbot-worker")["CodeSha256"] == seed
    assert any("function hookbot itself runs as" in r.getMessage() for r in caplog.records)
