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
from handlers.lambda_deploy.errors import DeployError
from handlers.lambda_deploy.ordering import order_tags

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


def _create(lam: Any, target: Target, code: Mapping[str, Any], description: str, tags: Mapping[str, str]) -> None:
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
        Code=dict(code),
        Description=description,
        Tags=dict(tags),
    )
    _wait(lam, "function_active_v2", target.function)


def _update(lam: Any, target: Target, code: Mapping[str, Any], description: str) -> None:
    retry_conflicts(lam.update_function_code, FunctionName=target.function, **code)
    _wait(lam, "function_updated_v2", target.function)
    retry_conflicts(lam.update_function_configuration, FunctionName=target.function, Description=description)
    _wait(lam, "function_updated_v2", target.function)


def apply_to_lambda(lam: Any, target: Target, artifact: Artifact, exists: bool) -> Deployed:
    """Create or update the code, stamp the Description, publish a version, move the alias, record the order."""
    code: dict[str, Any] = {"S3Bucket": artifact.bucket, "S3Key": artifact.key} | (
        {"S3ObjectVersion": artifact.version} if artifact.version else {}
    )
    description = target.description[:256]
    tags = order_tags(target.order, target.source)
    try:
        if exists:
            _update(lam, target, code, description)
        else:
            _create(lam, target, code, description, tags)
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
    return Deployed(function_arn, version, target.alias)


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
