"""Lambda deployments against moto in server mode (S3 with versioning, Lambda, IAM) and the fake GitHub API.

Deliveries go through the real Dispatcher, built from the real fixtures; every AWS and GitHub call is real HTTP.
moto ignores S3ObjectVersion, so each artifact gets its own key here (the version is still sent).
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

import handlers.lambda_deploy as lambda_deploy
from bot.config_schema import ConfigError
from bot.delivery import Delivery
from bot.dispatch import DispatchResult
from bot.runtime import Runtime
from bot.s3_events import delivery_from_s3_record
from bot.testing import FakeGitHub as InProcessGitHub
from bot.testing import run_plugin
from handlers.lambda_deploy.aws_steps import retry_conflicts
from handlers.lambda_deploy.commands import parse_command
from handlers.lambda_deploy.github import MARKER, repackage_zipball
from tests.fake_github import FakeGitHub
from tests.helpers import (
    CONFIG,
    PUSHED_AT,
    REPO,
    SHA_A,
    SHA_B,
    SHA_C,
    Aws,
    code_sha256,
    code_zip,
    comment_payload,
    github_delivery,
    load,
    make_settings,
    push_payload,
    s3_record,
    start_mark_recorded,
)


@pytest.fixture
def aws(moto: str) -> Aws:
    return Aws()


@pytest.fixture
def make_runtime(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> Any:
    """A new Runtime (as a new process would be) over the same config, GitHub and moto."""
    _, url = fake_github

    def make(config: str = CONFIG, **env: str) -> Runtime:
        values = {"GITHUB_TOKEN": "ghp_test", "GITHUB_API_URL": url} | env
        return Runtime.build(make_settings(tmp_path, config, **values))

    return make


@pytest.fixture
async def runtime(make_runtime: Any) -> Any:
    made: Runtime = make_runtime()
    yield made
    await made.close()


@pytest.fixture
def fake(fake_github: tuple[FakeGitHub, str]) -> FakeGitHub:
    return fake_github[0]


async def dispatch(runtime: Runtime, delivery: Delivery) -> DispatchResult:
    result = await runtime.dispatcher.dispatch(delivery)
    assert result.outcomes, "no handler ran"
    return result


def asked(fake: FakeGitHub) -> list[str]:
    """What the bot asked GitHub, besides who it is and the repository's .github/hookbot.yml (the dispatcher asks
    those, the latter at most once a minute per repository)."""
    return [
        f"{r.method} {r.path}"
        for r in fake.requests
        if r.path != "/user" and not r.path.endswith("/.github/hookbot.yml")
    ]


def states(fake: FakeGitHub) -> list[list[str]]:
    return [[status["state"] for status in d["statuses"]] for d in fake.deployments.values()]


async def test_push_deploys_code_description_version_alias_and_deployment(
    aws: Aws, runtime: Runtime, fake: FakeGitHub
) -> None:
    aws.create_function()
    body = aws.artifact(SHA_A)
    result = await dispatch(runtime, github_delivery("push", push_payload(SHA_A)))
    assert result.ok
    config = aws.config()
    assert config["CodeSha256"] == code_sha256(body)
    assert config["Description"] == f"deployed {SHA_A} from {REPO}@master"
    assert aws.alias_version() == "1"
    assert aws.version_description("1") == f"deployed {SHA_A} from {REPO}@master"
    (deployment,) = fake.deployments.values()
    assert deployment["ref"] == SHA_A
    assert deployment["environment"] == "production"
    assert deployment["auto_merge"] is False and deployment["required_contexts"] == []
    assert [s["state"] for s in deployment["statuses"]] == ["in_progress", "success"]
    success = deployment["statuses"][-1]
    assert "version 1" in success["description"] and config["FunctionArn"] in success["description"]
    assert "#/functions/app-fn/versions/1" in success["environment_url"]


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("push", push_payload(SHA_A, ref="refs/heads/dev")),
        ("push", load("github/push.deleted-tag.json")),
        ("push", push_payload(SHA_A, ref="refs/tags/v1.0")),
        ("push", {**push_payload("0" * 40), "deleted": True}),
        ("push", {**push_payload(SHA_A), "repository": {**load("github/push.json")["repository"], "full_name": "o/x"}}),
        ("create", load("github/create.tag.json")),
    ],
    ids=["other-branch", "deleted-tag", "tag", "deleted-branch", "other-repository", "create-tag"],
)
async def test_pushes_that_deploy_nothing(
    aws: Aws, runtime: Runtime, fake: FakeGitHub, event: str, payload: dict[str, Any]
) -> None:
    aws.artifact(SHA_A)
    result = await runtime.dispatcher.dispatch(github_delivery(event, payload))
    assert result.ok and result.actions == []
    assert asked(fake) == []
    assert aws.lam.list_functions()["Functions"] == []


async def test_missing_artifact_fails_the_deployment_and_changes_nothing(
    aws: Aws, runtime: Runtime, fake: FakeGitHub
) -> None:
    seed = aws.create_function()
    await dispatch(runtime, github_delivery("push", push_payload(SHA_A)))
    assert states(fake) == [["in_progress", "failure"]]
    failure = next(iter(fake.deployments.values()))["statuses"][-1]["description"]
    assert failure == "artifact s3://artifacts/builds/Hello-World/" + SHA_A + ".zip not found"
    assert aws.config()["CodeSha256"] == seed
    assert [v["Version"] for v in aws.lam.list_versions_by_function(FunctionName="app-fn")["Versions"]] == ["$LATEST"]


async def test_function_is_created_when_missing(aws: Aws, runtime: Runtime, fake: FakeGitHub) -> None:
    body = aws.artifact(SHA_A)
    await dispatch(runtime, github_delivery("push", push_payload(SHA_A)))
    config = aws.config()
    assert config["CodeSha256"] == code_sha256(body)
    assert (config["Handler"], config["Runtime"], config["MemorySize"], config["Timeout"]) == (
        "app.handler",
        "python3.12",
        256,
        30,
    )
    assert aws.alias_version() == "1"
    assert states(fake) == [["in_progress", "success"]]


async def test_source_repository_packages_the_commit_without_the_top_folder(
    aws: Aws, make_runtime: Any, fake: FakeGitHub
) -> None:
    config = CONFIG.replace('alias = "live"\n', 'alias = "live"\nsource = "repository"\nsubdir = "lambda/"\n', 1)
    runtime = make_runtime(config)
    fake.commits[f"{REPO}@{SHA_A}"] = {"README.md": b"docs", "lambda/app.py": b"def handler(e, c): return 1\n"}
    aws.create_function()
    await dispatch(runtime, github_delivery("push", push_payload(SHA_A)))
    await runtime.close()
    uploaded = aws.s3.get_object(Bucket="artifacts", Key=f"builds/Hello-World/{SHA_A}.zip")["Body"].read()
    assert zipfile.ZipFile(io.BytesIO(uploaded)).namelist() == ["app.py"]
    assert aws.config()["CodeSha256"] == code_sha256(uploaded)
    assert states(fake) == [["in_progress", "success"]]
    assert fake.calls("GET", f"/repos/{REPO}/zipball/{SHA_A}")


def test_repackage_keeps_the_whole_commit_without_subdir() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("o-r-abc1234/", b"")
        archive.writestr("o-r-abc1234/app.py", b"x")
        archive.writestr("o-r-abc1234/pkg/mod.py", b"y")
    names = zipfile.ZipFile(io.BytesIO(repackage_zipball(out.getvalue()))).namelist()
    assert names == ["app.py", "pkg/mod.py"]


async def test_s3_upload_with_plus_encoded_key_deploys_that_object(aws: Aws, runtime: Runtime) -> None:
    aws.create_function("drop-fn")
    body = code_zip("dropped")
    version = aws.put("drop/New Build.zip", body)
    record = s3_record("aws/lambda-s3-put.plus-key.dotnet.json", 1, "drop/New+Build.zip", version)
    result = await dispatch(runtime, delivery_from_s3_record(record, source="lambda-s3"))
    assert result.ok, result.outcomes
    config = aws.config("drop-fn")
    assert config["CodeSha256"] == code_sha256(body)
    assert config["Description"] == f"deployed s3://artifacts/drop/New Build.zip (version {version})"


async def test_an_upload_deployment_is_marked_running_before_it_writes_to_aws(aws: Aws, make_runtime: Any) -> None:
    """An S3 upload deploys without any GitHub write: the AWS writes ask for the start mark themselves (and a
    dry-run, which writes nothing, does not)."""
    aws.create_function("drop-fn")
    body = code_zip("marked")
    version = aws.put("drop/Marked.zip", body)
    record = s3_record("aws/lambda-s3-put.plus-key.dotnet.json", 1, "drop/Marked.zip", version)
    deployed_at_mark: list[bool] = []

    def marked() -> None:
        deployed_at_mark.append(aws.config("drop-fn")["CodeSha256"] == code_sha256(body))

    for dry_run, expected in (("1", []), ("0", [False])):
        runtime = make_runtime(HOOKBOT_DRY_RUN=dry_run)
        with start_mark_recorded(marked):
            result = await dispatch(runtime, delivery_from_s3_record(record, source="lambda-s3"))
        await runtime.close()
        assert result.ok, result.outcomes
        assert deployed_at_mark == expected
    assert aws.config("drop-fn")["CodeSha256"] == code_sha256(body)


async def test_pointer_file_decides_what_is_deployed(aws: Aws, runtime: Runtime) -> None:
    aws.create_function("worker")
    body = code_zip("release 2")
    version = aws.put("release/worker.zip", body)
    upload = s3_record("aws/lambda-s3-put.powertools.json", 0, "release/worker.zip", version)
    await runtime.dispatcher.dispatch(delivery_from_s3_record(upload, source="lambda-s3"))
    assert aws.config("worker")["CodeSha256"] != code_sha256(body), "only the pointer may trigger"

    pointer_version = aws.put("release/current.json", orjson.dumps({"key": "release/worker.zip", "version": version}))
    pointer = s3_record("aws/lambda-s3-put.powertools.json", 0, "release/current.json", pointer_version)
    result = await dispatch(runtime, delivery_from_s3_record(pointer, source="lambda-s3"))
    assert result.ok, result.outcomes
    assert aws.config("worker")["CodeSha256"] == code_sha256(body)
    assert aws.alias_version("worker") == "1"


async def push_twice(aws: Aws, runtime: Runtime) -> None:
    for offset, sha in enumerate((SHA_A, SHA_B)):
        aws.artifact(sha)
        await dispatch(runtime, github_delivery("push", push_payload(sha, pushed_at=PUSHED_AT + offset)))


async def test_rollback_by_a_writer_moves_the_alias_back(aws: Aws, runtime: Runtime, fake: FakeGitHub) -> None:
    aws.create_function()
    await push_twice(aws, runtime)
    assert aws.alias_version() == "2"
    fake.permissions["Codertocat"] = "maintain"
    await dispatch(runtime, github_delivery("issue_comment", comment_payload("/deploy rollback", "Codertocat")))
    assert aws.alias_version() == "1"
    ((path, body),) = fake.posted_comments()
    assert path == f"/repos/{REPO}/issues/1/comments"
    assert "from version 2 to version 1" in body and f"deployed {SHA_A}" in body and MARKER in body


async def test_rollback_by_a_reader_is_refused(aws: Aws, runtime: Runtime, fake: FakeGitHub) -> None:
    aws.create_function()
    await push_twice(aws, runtime)
    fake.permissions["reader"] = "triage"
    await dispatch(runtime, github_delivery("issue_comment", comment_payload("/deploy rollback app-fn", "reader")))
    assert aws.alias_version() == "2"
    ((_, body),) = fake.posted_comments()
    assert body.startswith("Sorry @reader") and MARKER in body
    assert fake.calls("GET", f"/repos/{REPO}/collaborators/reader/permission")


def test_a_deploy_command_from_a_reader_is_answered_without_deploying() -> None:
    """The handler alone, through bot.testing: GitHub is asked for the role, never trusted from the payload."""
    github = InProcessGitHub()
    github.answer(
        "GET", f"/repos/{REPO}/collaborators/reader/permission", {"permission": "read", "role_name": "triage"}
    )
    rule = {"repository": REPO, "branch": "master", "function": "app-fn", "artifact": "s3://artifacts/{sha}.zip"}
    payload = comment_payload("/deploy rollback app-fn", "reader")
    done = run_plugin(lambda_deploy, payload, event="issue_comment", config={"push": [rule]}, github=github)
    [(method, path, data)] = done.writes
    assert (method, path) == ("POST", f"/repos/{REPO}/issues/1/comments")
    assert data["body"].startswith("Sorry @reader, `/deploy` needs write") and MARKER in data["body"]


async def test_deploy_sha_command_and_ordinary_comments(aws: Aws, runtime: Runtime, fake: FakeGitHub) -> None:
    aws.create_function()
    body = aws.artifact(SHA_A)
    fake.commits[f"{REPO}@{SHA_A}"] = {}
    fake.branches[f"{REPO}@master"] = [SHA_A]
    fake.permissions["Codertocat"] = "write"
    await runtime.dispatcher.dispatch(github_delivery("issue_comment", comment_payload("Looks good!", "Codertocat")))
    await runtime.dispatcher.dispatch(
        github_delivery("issue_comment", comment_payload(f"/deploy aaaaaaa\n\n{MARKER}", "Codertocat"))
    )
    assert asked(fake) == []
    await dispatch(runtime, github_delivery("issue_comment", comment_payload("/deploy aaaaaaa", "Codertocat")))
    assert aws.config()["CodeSha256"] == code_sha256(body)
    ((_, reply),) = fake.posted_comments()
    assert reply.startswith(f"Deployed `{SHA_A}` to `app-fn`: version 1, alias `live`")
    assert states(fake) == [["in_progress", "success"]]


async def test_quick_pushes_the_newest_wins_and_a_late_old_push_is_skipped(
    aws: Aws, runtime: Runtime, make_runtime: Any, fake: FakeGitHub
) -> None:
    aws.create_function()
    shas = (SHA_A, SHA_B, SHA_C)
    bodies = {sha: aws.artifact(sha) for sha in shas}
    pushes = [github_delivery("push", push_payload(sha, pushed_at=PUSHED_AT + i)) for i, sha in enumerate(shas)]
    await asyncio.gather(*(dispatch(runtime, push) for push in pushes))
    assert aws.config()["CodeSha256"] == code_sha256(bodies[SHA_C])
    assert aws.version_description(aws.alias_version()).startswith(f"deployed {SHA_C}")
    by_sha = {d["ref"]: [s["state"] for s in d["statuses"]] for d in fake.deployments.values()}
    assert by_sha[SHA_C][-1] == "success"
    assert any(states[-1] == "inactive" for states in by_sha.values()), by_sha

    # The oldest push delivered again, late, to another process: the function's tags stop it.
    other = make_runtime()
    await dispatch(other, github_delivery("push", push_payload(SHA_A, pushed_at=PUSHED_AT)))
    await other.close()
    assert aws.config()["CodeSha256"] == code_sha256(bodies[SHA_C])
    late = list(fake.deployments.values())[-1]
    assert [s["state"] for s in late["statuses"]] == ["in_progress", "inactive"]
    assert late["statuses"][-1]["description"] == f"app-fn already runs newer code ({REPO}@{SHA_C})"


async def test_dry_run_records_the_plan_and_touches_no_aws(aws: Aws, make_runtime: Any) -> None:
    runtime = make_runtime(HOOKBOT_DRY_RUN="1")
    result = await dispatch(runtime, github_delivery("push", push_payload(SHA_A)))
    await runtime.close()
    assert any("lambda app-fn: deploy s3://artifacts/builds/Hello-World/" in line for line in result.actions)
    assert aws.lam.list_functions()["Functions"] == []


PUSH_RULE = '[[lambda_deploy.push]]\nrepository="o/r"\nbranch="main"\nfunction="f"\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (PUSH_RULE + 'artifact="s3://b/{shaa}.zip"\n', "shaa"),
        (PUSH_RULE + 'artifact="b/k.zip"\n', "s3://"),
        (PUSH_RULE + 'artifact="s3://b/k.zip"\nsource="repository"\n', "{sha}"),
        (PUSH_RULE + 'artifact="s3://b/{sha}.zip"\nalias="1"\n', "alias"),
        ('[[lambda_deploy.s3]]\nbucket="b"\nfunction="{sha}"\n', "sha"),
    ],
)
def test_bad_config_fails_at_start(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match="lambda_deploy") as failure:
        Runtime.build(make_settings(tmp_path, '[hookbot]\nhandlers = ["lambda_deploy"]\n' + toml))
    assert message in str(failure.value)


def test_parse_command() -> None:
    assert parse_command("nice work") is None
    assert parse_command("/deploy rollback").kind == "rollback"  # type: ignore[union-attr]
    assert parse_command("ok\n/deploy 1a2b3c4 app-fn") == parse_command("/deploy 1A2B3C4 app-fn")
    assert parse_command("/deploy please").kind == "usage"  # type: ignore[union-attr]


def test_conflicting_updates_are_retried_then_given_up() -> None:
    conflict = ClientError({"Error": {"Code": "ResourceConflictException", "Message": "update in progress"}}, "Update")
    answers: list[Any] = [conflict, conflict, {"Version": "3"}]

    def update(**params: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer | params

    assert retry_conflicts(update, delays=(0, 0), FunctionName="f") == {"Version": "3", "FunctionName": "f"}
    answers[:] = [conflict] * 3
    with pytest.raises(ClientError):
        retry_conflicts(update, delays=(0, 0), FunctionName="f")
