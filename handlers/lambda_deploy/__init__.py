"""Deploy AWS Lambda functions: on a push, on an S3 upload, and on a `/deploy` comment.

The "Lambda Auto-Deployer" idea, triggered from GitHub as well as from S3. Every deployment takes the same path:
wait for the function's turn, resolve the artifact (an S3 object, or the pushed commit's own zipball repackaged
and uploaded), update or create the function, stamp its Description with what was deployed, publish a version and
move the alias, so that a rollback is one alias move.

Ordering: deployments to one function run one at a time (an ``asyncio.Lock`` per function), and each carries an
*order* (when the push happened, when the S3 object was written, when the comment was made). A deployment that is
older than one already requested or done for the same function is skipped. The newest order done is kept in the
function's own tags (``hookbot:order``, ``hookbot:source``) rather than in local state, because tags travel with
the function: a second replica, a restarted container or a Lambda cold start all read the same truth, and a late
redelivery of an old push cannot put old code back. Tags rather than the Description because the Description is
for humans (and published versions keep it), while a tag can be read back exactly.

boto3 is blocking, so every AWS call runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import string
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import gidgethub
import orjson
from gidgethub import sansio
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router

from bot.context import HandlerContext

router = Router()

MARKER = "<!-- hookbot:lambda_deploy -->"
PUSH_PLACEHOLDERS = frozenset({"repository", "repository_name", "owner", "sha", "short_sha", "branch"})
S3_PLACEHOLDERS = frozenset({"stem"})
TAG_ORDER = "hookbot:order"
TAG_SOURCE = "hookbot:source"
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
CONFLICT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds between retries while another update runs
NULL_SHA = "0" * 40
ALIAS_NAME = re.compile(r"(?!^[0-9]+$)^[A-Za-z0-9_-]{1,128}$")
COMMAND = re.compile(r"^/deploy(?:\s+(?P<args>.*?))?\s*$", re.MULTILINE)
SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")


# --- config ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """What CreateFunction needs when the function does not exist yet."""

    role: str
    handler: str
    runtime: str
    memory: int = 128
    timeout: int = 3


@dataclass(frozen=True, slots=True)
class PushRule:
    repository: str
    branch: str
    function: str
    artifact: str  # s3://bucket/key template; with source = "repository", where the packaged commit is uploaded
    source: Literal["s3", "repository"] = "s3"
    subdir: str = ""
    alias: str | None = None
    environment: str = "production"
    create: CreateSpec | None = None

    def matches(self, repository: str, branch: str | None = None) -> bool:
        return self.repository.lower() == repository.lower() and (branch is None or branch == self.branch)


@dataclass(frozen=True, slots=True)
class S3Rule:
    bucket: str
    function: str
    prefix: str = ""
    pointer: str | None = None
    suffix: str = ".zip"
    alias: str | None = None
    create: CreateSpec | None = None

    def matches(self, bucket: str, key: str) -> bool:
        if bucket != self.bucket or not key.startswith(self.prefix):
            return False
        if self.pointer is not None:
            return key == self.prefix + self.pointer
        return key.endswith(self.suffix)


@dataclass(frozen=True, slots=True)
class LambdaDeployConfig:
    push: tuple[PushRule, ...] = ()
    s3: tuple[S3Rule, ...] = ()
    queue: DeployQueue = field(default_factory=lambda: DeployQueue(), compare=False, repr=False)


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(template: str, allowed: frozenset[str], where: str) -> None:
    unknown = _placeholders(template) - allowed
    if unknown:
        raise ValueError(f"{where} uses unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _check_alias(alias: Any, where: str) -> str | None:
    if alias is None:
        return None
    if not isinstance(alias, str) or not ALIAS_NAME.match(alias):
        raise ValueError(f"{where} alias {alias!r} is not a valid Lambda alias name (letters, digits, - and _)")
    return alias


def _create_spec(value: Any, where: str) -> CreateSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} create must be a table with role, handler and runtime")
    try:
        return CreateSpec(**dict(value))
    except TypeError as exc:
        raise ValueError(f"{where} create: {exc} (keys: role, handler, runtime, memory, timeout)") from None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key)."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    return bucket, key


def _push_rule(raw: Mapping[str, Any], index: int) -> PushRule:
    where = f"[[lambda_deploy.push]] #{index + 1}"
    data = dict(raw)
    for required in ("repository", "branch", "function", "artifact"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ValueError(f"{where} needs {required} = \"...\"")
    source = data.get("source", "s3")
    if source not in ("s3", "repository"):
        raise ValueError(f"{where} source must be \"s3\" or \"repository\", not {source!r}")
    parse_s3_url(data["artifact"])
    _check_template(data["artifact"], PUSH_PLACEHOLDERS, f"{where} artifact")
    # No {sha} in a function name: a rollback or a /deploy must find the same function for every commit.
    _check_template(data["function"], PUSH_PLACEHOLDERS - {"sha", "short_sha"}, f"{where} function")
    if source == "repository" and not _placeholders(data["artifact"]) & {"sha", "short_sha"}:
        raise ValueError(f"{where} with source = \"repository\" needs {{sha}} in artifact, so each commit has its key")
    data["alias"] = _check_alias(data.get("alias"), where)
    data["create"] = _create_spec(data.get("create"), where)
    try:
        return PushRule(**data)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _s3_rule(raw: Mapping[str, Any], index: int) -> S3Rule:
    where = f"[[lambda_deploy.s3]] #{index + 1}"
    data = dict(raw)
    for required in ("bucket", "function"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ValueError(f"{where} needs {required} = \"...\"")
    _check_template(data["function"], S3_PLACEHOLDERS, f"{where} function")
    data["alias"] = _check_alias(data.get("alias"), where)
    data["create"] = _create_spec(data.get("create"), where)
    try:
        return S3Rule(**data)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def configure(section: Mapping[str, Any]) -> LambdaDeployConfig:
    """Check every rule at start, so a typo in a placeholder fails now rather than on the first push."""
    unknown = set(section) - {"push", "s3"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; use [[lambda_deploy.push]] and [[lambda_deploy.s3]]")
    push = tuple(_push_rule(raw, i) for i, raw in enumerate(section.get("push", [])))
    s3 = tuple(_s3_rule(raw, i) for i, raw in enumerate(section.get("s3", [])))
    return LambdaDeployConfig(push=push, s3=s3)


# --- ordering --------------------------------------------------------------------------------------------------


class Superseded(Exception):
    """A newer deployment to the same function is waiting or already done; this one must not run."""


class DeployError(Exception):
    """A deployment failed for one reason a person can act on (the message is that reason)."""


class DeployQueue:
    """One deployment per function at a time, newest first: see the module docstring.

    Locks belong to an event loop, so they are remade when the loop changes (a warm Lambda runs each invocation
    in a new loop).
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._newest: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _lock(self, function: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._locks, self._loop = {}, loop
        return self._locks.setdefault(function, asyncio.Lock())

    def busy(self, function: str) -> bool:
        return self._lock(function).locked()

    @contextlib.asynccontextmanager
    async def turn(self, function: str, order: float) -> AsyncIterator[None]:
        """Wait for ``function``'s turn; raise Superseded when something newer was asked for meanwhile."""
        self._newest[function] = max(order, self._newest.get(function, order))
        async with self._lock(function):
            if self._newest[function] > order:
                raise Superseded(f"superseded by a newer deployment to {function}")
            yield


def order_of(timestamp: Any, fallback: float) -> float:
    """Epoch seconds from GitHub's or S3's timestamps (ISO 8601 text or epoch numbers)."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return float(timestamp)
    if isinstance(timestamp, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(timestamp).timestamp()
    return fallback


# --- AWS (blocking; always called through asyncio.to_thread) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Artifact:
    bucket: str
    key: str
    version: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (f" (version {self.version})" if self.version else "")


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to deploy, and what to write down about it."""

    function: str
    alias: str | None
    create: CreateSpec | None
    description: str  # "deployed <short sha> from <repository>@<branch>" and the like
    source: str  # what was deployed, kept in the function's tags
    order: float


@dataclass(frozen=True, slots=True)
class Deployed:
    function_arn: str
    version: str
    code_sha256: str
    alias: str | None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def head_artifact(s3: Any, bucket: str, key: str, version: str | None) -> Artifact:
    """Check that the artifact exists (and learn its version) before touching the function."""
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version} if version else {})
    try:
        head = s3.head_object(**params)
    except Exception as exc:
        code = _error_code(exc)
        where = Artifact(bucket, key, version)
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
            raise DeployError(f"artifact {where} not found") from None
        if code in ("403", "AccessDenied"):
            raise DeployError(f"access denied to artifact {where}") from None
        raise DeployError(f"cannot read artifact {where}: {_reason(exc)}") from None
    return Artifact(bucket, key, version or head.get("VersionId"))


def upload_artifact(s3: Any, bucket: str, key: str, body: bytes) -> Artifact:
    try:
        put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/zip")
    except Exception as exc:
        raise DeployError(f"cannot upload the packaged commit to s3://{bucket}/{key}: {_reason(exc)}") from None
    return Artifact(bucket, key, put.get("VersionId"))


def read_pointer(s3: Any, bucket: str, key: str, version: str | None) -> Artifact:
    """The pointer object's ``{"key": ..., "version": ...}``: the artifact to deploy, in the same bucket."""
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version} if version else {})
    try:
        body = s3.get_object(**params)["Body"].read()
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DeployError(f"pointer s3://{bucket}/{key} is not JSON like {{\"key\": ..., \"version\": ...}}") from None
    except Exception as exc:
        raise DeployError(f"cannot read pointer s3://{bucket}/{key}: {_reason(exc)}") from None
    target = document.get("key") if isinstance(document, dict) else None
    if not isinstance(target, str) or not target:
        raise DeployError(f"pointer s3://{bucket}/{key} has no \"key\"")
    target_version = document.get("version")
    return Artifact(bucket, target, str(target_version) if target_version else None)


def function_tags(lam: Any, function: str) -> dict[str, str] | None:
    """The function's tags, or None when it does not exist."""
    try:
        found = lam.get_function(FunctionName=function)
    except Exception as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return None
        raise DeployError(f"cannot read function {function}: {_reason(exc)}") from None
    return dict(found.get("Tags") or {})


def check_order(tags: Mapping[str, str] | None, target: Target) -> None:
    """Refuse to deploy over something newer, as recorded in the function's tags by any process."""
    if not tags:
        return
    with contextlib.suppress(ValueError):
        if float(tags.get(TAG_ORDER, "")) > target.order:
            raise Superseded(f"{target.function} already runs newer code ({tags.get(TAG_SOURCE, 'unknown')})")


def retry_conflicts(call: Callable[..., Any], *, delays: Sequence[float] = CONFLICT_DELAYS, **params: Any) -> Any:
    """Run ``call``, backing off while another update of the function is still in progress."""
    for delay in (*delays, None):
        try:
            return call(**params)
        except Exception as exc:
            if _error_code(exc) != "ResourceConflictException" or delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def _wait(lam: Any, waiter: str, function: str) -> None:
    try:
        lam.get_waiter(waiter).wait(FunctionName=function)
    except Exception:
        config = lam.get_function_configuration(FunctionName=function)
        reason = config.get("LastUpdateStatusReason") or config.get("StateReason") or "unknown reason"
        raise DeployError(f"update of {function} failed: {reason}") from None


def _tag_value(text: str) -> str:
    """Lambda tag values allow letters, digits, spaces and ``_.:/=+-@``, at most 256 characters."""
    return re.sub(r"[^\w .:/=+\-@]", "_", text)[:256]


def apply_to_lambda(lam: Any, target: Target, artifact: Artifact, exists: bool) -> Deployed:
    """Create or update the code, stamp the Description, publish a version, move the alias, record the order."""
    code: dict[str, Any] = {"S3Bucket": artifact.bucket, "S3Key": artifact.key} | (
        {"S3ObjectVersion": artifact.version} if artifact.version else {}
    )
    description = target.description[:256]
    tags = {TAG_ORDER: repr(target.order), TAG_SOURCE: _tag_value(target.source)}
    try:
        if not exists:
            if target.create is None:
                raise DeployError(f"function {target.function} does not exist and no `create` is configured")
            spec = target.create
            retry_conflicts(
                lam.create_function,
                FunctionName=target.function,
                Role=spec.role,
                Handler=spec.handler,
                Runtime=spec.runtime,
                MemorySize=spec.memory,
                Timeout=spec.timeout,
                Code=code,
                Description=description,
                Tags=tags,
            )
            _wait(lam, "function_active_v2", target.function)
        else:
            retry_conflicts(lam.update_function_code, FunctionName=target.function, **code)
            _wait(lam, "function_updated_v2", target.function)
            retry_conflicts(lam.update_function_configuration, FunctionName=target.function, Description=description)
            _wait(lam, "function_updated_v2", target.function)
        latest = lam.get_function_configuration(FunctionName=target.function)
        published = retry_conflicts(
            lam.publish_version,
            FunctionName=target.function,
            CodeSha256=latest["CodeSha256"],
            Description=description,
        )
        version = str(published["Version"])
        function_arn = str(latest["FunctionArn"])
        if target.alias:
            point_alias(lam, target.function, target.alias, version)
        lam.tag_resource(Resource=function_arn, Tags=tags)
    except DeployError:
        raise
    except Exception as exc:
        if _error_code(exc) in ("AccessDeniedException", "AccessDenied"):
            raise DeployError(f"access denied while deploying {target.function}: {_reason(exc)}") from None
        raise DeployError(f"update of {target.function} failed: {_reason(exc)}") from None
    return Deployed(function_arn, version, str(latest["CodeSha256"]), target.alias)


def point_alias(lam: Any, function: str, alias: str, version: str) -> None:
    try:
        lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=version)
    except Exception as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        lam.create_alias(FunctionName=function, Name=alias, FunctionVersion=version)


@dataclass(frozen=True, slots=True)
class RolledBack:
    function_arn: str
    alias: str
    from_version: str
    to_version: str
    description: str


def roll_back(lam: Any, function: str, alias: str, order: float, source: str) -> RolledBack:
    """Move ``alias`` to the newest published version older than the one it points at now."""
    try:
        current = str(lam.get_alias(FunctionName=function, Name=alias)["FunctionVersion"])
        versions = [
            item
            for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function)
            for item in page["Versions"]
            if item["Version"].isdigit()
        ]
        older = [item for item in versions if current.isdigit() and int(item["Version"]) < int(current)]
        if not older:
            raise DeployError(f"{function}:{alias} is at version {current}; there is no earlier version to go back to")
        previous = max(older, key=lambda item: int(item["Version"]))
        lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=previous["Version"])
        function_arn = str(previous["FunctionArn"]).rsplit(":", 1)[0]
        lam.tag_resource(Resource=function_arn, Tags={TAG_ORDER: repr(order), TAG_SOURCE: _tag_value(source)})
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"rollback of {function} failed: {_reason(exc)}") from None
    return RolledBack(function_arn, alias, current, str(previous["Version"]), str(previous.get("Description", "")))


# --- the commit's own code -----------------------------------------------------------------------------------------


def repackage_zipball(data: bytes, subdir: str = "") -> bytes:
    """GitHub's zipball without its ``owner-repo-sha/`` top folder (and, with ``subdir``, only that folder).

    Lambda expects the handler at the zip's root, which a zipball never has.
    """
    inner_prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""
    out = io.BytesIO()
    count = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                _, _, path = info.filename.partition("/")
                if info.is_dir() or not path.startswith(inner_prefix) or not path[len(inner_prefix) :]:
                    continue
                entry = zipfile.ZipInfo(path[len(inner_prefix) :], date_time=info.date_time)
                entry.external_attr = info.external_attr
                entry.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(entry, src.read(info))
                count += 1
    except zipfile.BadZipFile:
        raise DeployError("GitHub's zipball of the commit is not a valid zip") from None
    if not count:
        raise DeployError(f"the commit has no files under {subdir or 'its root'}")
    return out.getvalue()


async def download_zipball(gh: GitHubAPI, repository: str, sha: str) -> bytes:
    """The commit's zipball, as raw bytes.

    gidgethub decodes every body as text, so this goes through the client's ``_request``, the one I/O method
    gidgethub asks a client to provide: it still goes to the pinned API origin with the bot's credentials, and
    the redirect to GitHub's codeload host is followed by aiohttp.
    """
    url = sansio.format_url(f"/repos/{repository}/zipball/{sha}", {}, base_url=gh.base_url)
    headers = sansio.create_headers(gh.requester, oauth_token=gh.oauth_token)
    status, _, body = await gh._request("GET", url, headers)
    if status != 200:
        raise DeployError(f"cannot download the zipball of {sha[:7]} from {repository}: HTTP {status}")
    return body


# --- the deployment path every trigger shares ----------------------------------------------------------------------


async def deploy(
    ctx: HandlerContext,
    target: Target,
    resolve: Callable[[], Awaitable[Artifact]],
    plan: str,
    on_start: Callable[[], Awaitable[None]] | None = None,
) -> Deployed | None:
    """Run one deployment in the function's turn; None in dry-run (the plan is recorded instead).

    ``resolve`` is a coroutine function giving the Artifact, called only once the deployment is sure to run.
    """
    config: LambdaDeployConfig = ctx.config
    async with config.queue.turn(target.function, target.order):
        if on_start is not None:
            await on_start()
        if ctx.dry_run:
            ctx.actions.record(f"lambda {target.function}: {plan}")
            return None
        lam = ctx.aws.client("lambda")
        tags = await asyncio.to_thread(function_tags, lam, target.function)
        check_order(tags, target)
        artifact = await resolve()
        deployed = await asyncio.to_thread(apply_to_lambda, lam, target, artifact, tags is not None)
        ctx.actions.record(
            f"lambda {target.function}: deployed {artifact} as version {deployed.version}"
            + (f", alias {deployed.alias}" if deployed.alias else "")
        )
        return deployed


def _plan(artifact: str, target: Target) -> str:
    steps = f"deploy {artifact}, description {target.description!r}, publish a version"
    return steps + (f", move alias {target.alias}" if target.alias else "")


class GitHubDeployment:
    """A GitHub Deployment and its statuses, so the repository shows what runs where."""

    def __init__(self, gh: GitHubAPI, repository: str, deployment_id: int | None) -> None:
        self.gh = gh
        self.repository = repository
        self.id = deployment_id

    @classmethod
    async def create(cls, gh: GitHubAPI, repository: str, sha: str, rule: PushRule, function: str) -> GitHubDeployment:
        created = await gh.post(
            f"/repos/{repository}/deployments",
            data={
                "ref": sha,
                "environment": rule.environment,
                "auto_merge": False,
                "required_contexts": [],
                "task": "deploy:lambda",
                "description": f"AWS Lambda {function}",
                "payload": {"function": function, "alias": rule.alias},
            },
        )
        deployment_id = created.get("id") if isinstance(created, dict) else None
        return cls(gh, repository, deployment_id if isinstance(deployment_id, int) else None)

    async def status(self, state: str, description: str, environment_url: str | None = None) -> None:
        if self.id is None:  # dry-run: the creation was only recorded, there is no deployment to update
            return
        data: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            data["environment_url"] = environment_url
        await self.gh.post(f"/repos/{self.repository}/deployments/{self.id}/statuses", data=data)


def console_url(function_arn: str, version: str) -> str:
    """The AWS console page of the published version (the region is in the ARN)."""
    parts = function_arn.split(":")
    region, function = (parts[3], parts[6]) if len(parts) >= 7 else ("us-east-1", function_arn)
    return f"https://{region}.console.aws.amazon.com/lambda/home?region={region}#/functions/{function}/versions/{version}"


def _values(repository: str, sha: str, branch: str) -> dict[str, str]:
    owner, _, name = repository.partition("/")
    return {
        "repository": repository,
        "repository_name": name,
        "owner": owner,
        "sha": sha,
        "short_sha": sha[:7],
        "branch": branch,
    }


async def deploy_commit(
    gh: GitHubAPI, ctx: HandlerContext, rule: PushRule, repository: str, sha: str, order: float
) -> str:
    """Deploy one commit by one push rule, reported as a GitHub Deployment; returns a one-line summary."""
    values = _values(repository, sha, rule.branch)
    function = rule.function.format(**values)
    bucket, key = parse_s3_url(rule.artifact.format(**values))
    target = Target(
        function=function,
        alias=rule.alias,
        create=rule.create,
        description=f"deployed {sha[:7]} from {repository}@{rule.branch}",
        source=f"{repository}@{sha}",
        order=order,
    )
    deployment = await GitHubDeployment.create(gh, repository, sha, rule, function)
    s3 = None if ctx.dry_run else ctx.aws.client("s3")

    async def resolve() -> Artifact:
        if rule.source == "repository":
            packaged = await download_zipball(gh, repository, sha)
            body = await asyncio.to_thread(repackage_zipball, packaged, rule.subdir)
            return await asyncio.to_thread(upload_artifact, s3, bucket, key, body)
        return await asyncio.to_thread(head_artifact, s3, bucket, key, None)

    async def started() -> None:
        await deployment.status("in_progress", f"deploying {sha[:7]} to {function}")

    if config_queue(ctx).busy(function):
        await deployment.status("queued", f"waiting for another deployment to {function}")
    what = f"the zipball of {sha[:7]} ({rule.subdir or 'whole commit'}) uploaded to s3://{bucket}/{key}"
    plan = _plan(what if rule.source == "repository" else f"s3://{bucket}/{key}", target)
    try:
        deployed = await deploy(ctx, target, resolve, plan, on_start=started)
    except Superseded as exc:
        ctx.log.info("not deploying %s to %s: %s", sha[:7], function, exc)
        await deployment.status("inactive", str(exc))
        return f"Did not deploy `{sha[:7]}` to `{function}`: {exc}."
    except DeployError as exc:
        ctx.log.warning("deploying %s to %s failed: %s", sha[:7], function, exc)
        await deployment.status("failure", str(exc))
        return f"Could not deploy `{sha[:7]}` to `{function}`: {exc}."
    except Exception as exc:  # a bug or an outage: say so on GitHub, then let dispatch log and count it
        await deployment.status("error", f"hookbot failed: {type(exc).__name__}")
        raise
    if deployed is None:
        return f"Would deploy `{sha[:7]}` to `{function}` (dry-run)."
    alias_text = f", alias `{deployed.alias}`" if deployed.alias else ""
    await deployment.status(
        "success",
        f"version {deployed.version} of {deployed.function_arn}",
        console_url(deployed.function_arn, deployed.version),
    )
    return f"Deployed `{sha[:7]}` to `{function}`: version {deployed.version}{alias_text} ({deployed.function_arn})."


def config_queue(ctx: HandlerContext) -> DeployQueue:
    queue: DeployQueue = ctx.config.queue
    return queue


# --- push ----------------------------------------------------------------------------------------------------------


@router.register("push")
async def push(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    """A push to a configured branch deploys its head; tags, deletions and other branches are ignored."""
    data = event.data
    ref = str(data.get("ref", ""))
    sha = str(data.get("after") or "")
    if not ref.startswith("refs/heads/") or data.get("deleted") or sha in ("", NULL_SHA):
        return
    branch = ref.removeprefix("refs/heads/")
    repository = str(data["repository"]["full_name"])
    config: LambdaDeployConfig = ctx.config
    rules = [rule for rule in config.push if rule.matches(repository, branch)]
    if not rules:
        return
    head = data.get("head_commit") or {}
    order = order_of(data["repository"].get("pushed_at"), order_of(head.get("timestamp"), ctx.delivery.received_at))
    await asyncio.gather(*(deploy_commit(gh, ctx, rule, repository, sha, order) for rule in rules))


# --- S3 uploads ----------------------------------------------------------------------------------------------------


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


@router.register("s3")
async def s3_upload(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    """An upload under a configured prefix deploys it (or, with ``pointer``, what the pointer names)."""
    data = event.data
    if not str(data.get("action", "")).startswith("ObjectCreated:"):
        return
    bucket, key, version = str(data.get("bucket", "")), str(data.get("key", "")), data.get("version_id")
    config: LambdaDeployConfig = ctx.config
    order = order_of(data.get("event_time"), ctx.delivery.received_at)
    for rule in (rule for rule in config.s3 if rule.matches(bucket, key)):
        await deploy_upload(ctx, rule, bucket, key, version if isinstance(version, str) else None, order)


async def deploy_upload(
    ctx: HandlerContext, rule: S3Rule, bucket: str, key: str, version: str | None, order: float
) -> None:
    """Deploy one uploaded object; a failure raises, so the delivery is logged as failed and may be retried."""
    if rule.pointer is not None:
        if ctx.dry_run:
            ctx.actions.record(f"read pointer s3://{bucket}/{key} and deploy what it names")
            return
        pointed = await asyncio.to_thread(read_pointer, ctx.aws.client("s3"), bucket, key, version)
    else:
        pointed = Artifact(bucket, key, version)
    function = rule.function.format(stem=_stem(pointed.key))
    target = Target(
        function=function,
        alias=rule.alias,
        create=rule.create,
        description=f"deployed {pointed}",
        source=f"s3://{pointed.bucket}/{pointed.key}",
        order=order,
    )

    async def resolve() -> Artifact:
        return await asyncio.to_thread(
            head_artifact, ctx.aws.client("s3"), pointed.bucket, pointed.key, pointed.version
        )

    try:
        await deploy(ctx, target, resolve, _plan(str(pointed), target))
    except Superseded as exc:
        ctx.log.info("not deploying %s to %s: %s", pointed, function, exc)


# --- /deploy comments ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    kind: Literal["rollback", "deploy", "usage"]
    ref: str | None = None
    function: str | None = None


USAGE = "Usage: `/deploy <sha> [function]` or `/deploy rollback [function]`."


def parse_command(body: str) -> Command | None:
    """The first ``/deploy`` line of a comment; None for an ordinary comment."""
    found = COMMAND.search(body)
    if found is None:
        return None
    args = (found.group("args") or "").split()
    if args and args[0] == "rollback" and len(args) <= 2:
        return Command("rollback", function=args[1] if len(args) == 2 else None)
    if args and SHA.match(args[0]) and len(args) <= 2:
        return Command("deploy", ref=args[0].lower(), function=args[1] if len(args) == 2 else None)
    return Command("usage")


async def permission_of(gh: GitHubAPI, repository: str, user: str) -> tuple[bool, str]:
    """Whether the commenter may deploy, and their role, asked from GitHub rather than trusted from the payload.

    ``role_name`` tells maintain from write; ``permission`` (admin/write/read/none) also covers custom roles.
    """
    try:
        found = await gh.getitem(f"/repos/{repository}/collaborators/{user}/permission")
    except gidgethub.BadRequest:
        return False, "none"
    if not isinstance(found, dict):
        return False, "unknown"
    role, permission = str(found.get("role_name") or ""), str(found.get("permission") or "none")
    return role in WRITE_PERMISSIONS or permission in WRITE_PERMISSIONS, role or permission


async def reply(gh: GitHubAPI, repository: str, number: int, text: str) -> None:
    await gh.post(f"/repos/{repository}/issues/{number}/comments", data={"body": f"{text}\n\n{MARKER}"})


def _pick_rules(rules: list[PushRule], function: str | None, repository: str) -> list[PushRule] | str:
    """The one rule a command is about, or the reason there is not exactly one."""
    def name(rule: PushRule) -> str:
        return rule.function.format(**_values(repository, "", rule.branch))

    if function is not None:
        rules = [rule for rule in rules if name(rule) == function]
        if not rules:
            return f"`{function}` is not deployed from {repository}."
    functions = sorted({name(rule) for rule in rules})
    if not functions:
        return f"No Lambda function is deployed from {repository}."
    if len(functions) > 1:
        return f"Several functions are deployed from {repository}; name one: " + ", ".join(
            f"`{name}`" for name in functions
        )
    return rules[:1]


@router.register("issue_comment", action="created")
async def deploy_command(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    """``/deploy <sha>`` and ``/deploy rollback`` from people who may write to the repository."""
    data = event.data
    comment = data["comment"]
    body = str(comment.get("body") or "")
    sender = data.get("sender") or comment.get("user") or {}
    if MARKER in body or sender.get("type") == "Bot" or (ctx.bot_login and sender.get("login") == ctx.bot_login):
        return
    command = parse_command(body)
    if command is None:
        return
    repository = str(data["repository"]["full_name"])
    number = int(data["issue"]["number"])
    user = str(sender.get("login", ""))
    allowed, role = await permission_of(gh, repository, user)
    if not allowed:
        ctx.log.info("refused /deploy from %s on %s: their role is %s", user, repository, role)
        await reply(gh, repository, number, f"Sorry @{user}, `/deploy` needs write, maintain or admin permission.")
        return
    if command.kind == "usage":
        await reply(gh, repository, number, USAGE)
        return
    config: LambdaDeployConfig = ctx.config
    picked = _pick_rules([rule for rule in config.push if rule.matches(repository)], command.function, repository)
    if isinstance(picked, str):
        await reply(gh, repository, number, picked)
        return
    rule = picked[0]
    order = order_of(comment.get("created_at"), ctx.delivery.received_at)
    if command.kind == "rollback":
        text = await rollback_command(ctx, rule, repository, user, order)
    else:
        assert command.ref is not None
        text = await deploy_sha_command(gh, ctx, rule, repository, command.ref, order)
    await reply(gh, repository, number, text)


async def deploy_sha_command(
    gh: GitHubAPI, ctx: HandlerContext, rule: PushRule, repository: str, ref: str, order: float
) -> str:
    try:
        commit = await gh.getitem(f"/repos/{repository}/commits/{ref}")
    except gidgethub.BadRequest:
        return f"`{ref}` is not a commit of {repository}."
    sha = str(commit["sha"]) if isinstance(commit, dict) and "sha" in commit else ref
    return await deploy_commit(gh, ctx, rule, repository, sha, order)


async def rollback_command(ctx: HandlerContext, rule: PushRule, repository: str, user: str, order: float) -> str:
    values = _values(repository, "", rule.branch)
    function = rule.function.format(**values)
    if rule.alias is None:
        return f"`{function}` has no alias configured, so there is nothing to roll back."
    alias = rule.alias
    try:
        async with config_queue(ctx).turn(function, order):
            if ctx.dry_run:
                ctx.actions.record(f"lambda {function}: move alias {alias} to the previous published version")
                return f"Would roll back `{function}` (dry-run)."
            done = await asyncio.to_thread(
                roll_back, ctx.aws.client("lambda"), function, alias, order, f"rollback by {user}"
            )
    except (Superseded, DeployError) as exc:
        return f"Could not roll back `{function}`: {exc}."
    ctx.actions.record(f"lambda {function}: alias {alias} moved from version {done.from_version} to {done.to_version}")
    was = f" ({done.description})" if done.description else ""
    return (
        f"Rolled back `{function}`: alias `{alias}` moved from version {done.from_version} "
        f"to version {done.to_version}{was}."
    )
