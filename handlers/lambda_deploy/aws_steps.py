"""The AWS side of a deployment, one blocking function per step over boto3 clients passed in.

boto3 is blocking, so these run in a worker thread (``asyncio.to_thread``) and never touch the event loop; they
take clients as arguments, so nothing here imports boto3 (that is left to ``ctx.aws``, when a deployment really
runs). Each step turns AWS's errors into a :class:`DeployError` whose message says what a person can fix
(a missing artifact, a denied permission, a failed update), and lets the rest propagate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from handlers.lambda_deploy.config import CreateSpec
from handlers.lambda_deploy.errors import DeployError, Superseded
from handlers.lambda_deploy.ordering import check_order, order_tags

CONFLICT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds between retries while another update runs


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
    alias: str | None


@dataclass(frozen=True, slots=True)
class RolledBack:
    from_version: str
    to_version: str
    description: str  # of the version the alias points at now


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _object(bucket: str, key: str, version: str | None) -> dict[str, str]:
    return {"Bucket": bucket, "Key": key} | ({"VersionId": version} if version else {})


def head_artifact(s3: Any, bucket: str, key: str, version: str | None) -> Artifact:
    """Check that the artifact exists (and learn its version) before touching the function."""
    try:
        head = s3.head_object(**_object(bucket, key, version))
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
    try:
        body = s3.get_object(**_object(bucket, key, version))["Body"].read()
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DeployError(f'pointer s3://{bucket}/{key} is not JSON like {{"key": ..., "version": ...}}') from None
    except Exception as exc:
        raise DeployError(f"cannot read pointer s3://{bucket}/{key}: {_reason(exc)}") from None
    target = document.get("key") if isinstance(document, dict) else None
    if not isinstance(target, str) or not target:
        raise DeployError(f'pointer s3://{bucket}/{key} has no "key"')
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


class RevisionMoved(Exception):
    """The function (or its alias) changed since this deployment read it: another deployment, perhaps in another
    replica, is at work on it. The deployment re-reads the function and re-checks the order before going on."""


MAX_CLAIMS = 5  # re-reads after the revision moved, before giving up (each means another deployment got in)


def _revision(revision: str | None) -> dict[str, str]:
    """Lambda's optimistic concurrency: a call with ``RevisionId`` fails (PreconditionFailedException) when the
    function or alias has changed since that revision was read. Omitted when the read gave none."""
    return {"RevisionId": revision} if revision else {}


def _guarded(call: Callable[..., Any], **params: Any) -> Any:
    """``call`` with conflicts waited out, and a moved revision reported as RevisionMoved."""
    try:
        return retry_conflicts(call, **params)
    except Exception as exc:
        if _error_code(exc) == "PreconditionFailedException":
            raise RevisionMoved(str(exc)) from None
        raise


def _claim(lam: Any, target: Target) -> tuple[str | None, bool]:
    """Read the function, refuse when it already runs (or is getting) newer code, and record this deployment's
    order in its tags before changing anything: (the revision read, whether the function exists).

    The order goes into the tags first so that a deployment running at the same time in another replica sees it
    when its own revision check fails and it re-reads the function: the older of the two then stops.
    """
    try:
        found = lam.get_function(FunctionName=target.function)
    except Exception as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return None, False
        raise
    check_order(found.get("Tags"), target.function, target.order)
    configuration = found["Configuration"]
    lam.tag_resource(Resource=configuration["FunctionArn"], Tags=order_tags(target.order, target.source))
    revision = configuration.get("RevisionId")
    return (str(revision) if revision else None), True


def _settled(lam: Any, function: str, code_sha256: str) -> tuple[str | None, str]:
    """Wait for an update to finish, then (revision, function ARN); RevisionMoved when the code is no longer ours
    (another deployment replaced it in between)."""
    _wait(lam, "function_updated_v2", function)
    configuration = lam.get_function_configuration(FunctionName=function)
    if configuration["CodeSha256"] != code_sha256:
        raise RevisionMoved(f"the code of {function} was replaced while deploying")
    revision = configuration.get("RevisionId")
    return (str(revision) if revision else None), str(configuration["FunctionArn"])


def _create(lam: Any, target: Target, code: Mapping[str, Any], description: str) -> str:
    """Create the function with this deployment's order in its tags; its CodeSha256."""
    if target.create is None:
        raise DeployError(f"function {target.function} does not exist and no `create` is configured")
    spec = target.create
    try:
        created = lam.create_function(
            FunctionName=target.function,
            Role=spec.role,
            Handler=spec.handler,
            Runtime=spec.runtime,
            MemorySize=spec.memory,
            Timeout=spec.timeout,
            Code=dict(code),
            Description=description,
            Tags=order_tags(target.order, target.source),
        )
    except Exception as exc:
        if _error_code(exc) == "ResourceConflictException":  # created meanwhile by another deployment
            raise RevisionMoved(f"{target.function} was created meanwhile") from None
        raise
    _wait(lam, "function_active_v2", target.function)
    return str(created["CodeSha256"])


def _update(lam: Any, target: Target, code: Mapping[str, Any], description: str, revision: str | None) -> str:
    """Update the code, then the Description, each only if nothing changed the function since it was read; the
    new CodeSha256."""
    updated = _guarded(lam.update_function_code, FunctionName=target.function, **code, **_revision(revision))
    code_sha256 = str(updated["CodeSha256"])
    revision, _ = _settled(lam, target.function, code_sha256)
    _guarded(
        lam.update_function_configuration,
        FunctionName=target.function,
        Description=description,
        **_revision(revision),
    )
    return code_sha256


def _move_alias(lam: Any, target: Target, alias: str, version: str) -> None:
    """Point the alias at ``version``, only if nothing newer was recorded meanwhile and the alias has not moved
    since it was read (its own RevisionId)."""
    try:
        current = lam.get_alias(FunctionName=target.function, Name=alias)
    except Exception as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        current = None
    check_order(function_tags(lam, target.function), target.function, target.order)
    if current is None:
        try:
            lam.create_alias(FunctionName=target.function, Name=alias, FunctionVersion=version)
        except Exception as exc:
            if _error_code(exc) == "ResourceConflictException":  # created meanwhile by another deployment
                raise RevisionMoved(f"alias {alias} of {target.function} was created meanwhile") from None
            raise
        return
    _guarded(
        lam.update_alias,
        FunctionName=target.function,
        Name=alias,
        FunctionVersion=version,
        **_revision(current.get("RevisionId")),
    )


def _deploy_once(lam: Any, target: Target, code: Mapping[str, Any], description: str) -> Deployed:
    revision, exists = _claim(lam, target)
    if exists:
        code_sha256 = _update(lam, target, code, description, revision)
    else:
        code_sha256 = _create(lam, target, code, description)
    revision, function_arn = _settled(lam, target.function, code_sha256)
    published = _guarded(
        lam.publish_version,
        FunctionName=target.function,
        CodeSha256=code_sha256,
        Description=description,
        **_revision(revision),
    )
    version = str(published["Version"])
    if target.alias:
        _move_alias(lam, target, target.alias, version)
    return Deployed(function_arn, version, target.alias)


def apply_to_lambda(lam: Any, target: Target, artifact: Artifact) -> Deployed:
    """Create or update the code, stamp the Description, publish a version, move the alias.

    Several replicas may deploy one function at the same moment. Each step that changes it (UpdateFunctionCode,
    UpdateFunctionConfiguration, PublishVersion, UpdateAlias) passes the RevisionId it last read, so it fails
    when another deployment changed the function in between; the deployment then re-reads the function and
    re-checks the order tags (the other one recorded its order there before changing anything): the older
    deployment stops (Superseded), the newer goes through again from the start. So the newest push wins.
    """
    code: dict[str, Any] = {"S3Bucket": artifact.bucket, "S3Key": artifact.key} | (
        {"S3ObjectVersion": artifact.version} if artifact.version else {}
    )
    description = target.description[:256]
    try:
        for _ in range(MAX_CLAIMS):
            try:
                return _deploy_once(lam, target, code, description)
            except RevisionMoved:
                continue
    except (DeployError, Superseded):
        raise
    except Exception as exc:
        if _error_code(exc) in ("AccessDeniedException", "AccessDenied"):
            raise DeployError(f"access denied while deploying {target.function}: {_reason(exc)}") from None
        raise DeployError(f"update of {target.function} failed: {_reason(exc)}") from None
    raise DeployError(f"{target.function} kept changing under other deployments; gave up after {MAX_CLAIMS} tries")


def point_alias(lam: Any, function: str, alias: str, version: str) -> None:
    try:
        lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=version)
    except Exception as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        lam.create_alias(FunctionName=function, Name=alias, FunctionVersion=version)


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
        lam.tag_resource(Resource=function_arn, Tags=order_tags(order, source))
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"rollback of {function} failed: {_reason(exc)}") from None
    return RolledBack(current, str(previous["Version"]), str(previous.get("Description", "")))
