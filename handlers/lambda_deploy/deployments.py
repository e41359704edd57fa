"""The deployment path every trigger shares, and what each trigger adds to it.

A push, a ``/deploy <sha>`` comment and an S3 upload all go the same way (:func:`deploy`): wait for the function's
turn, check nothing newer runs, resolve the artifact, update or create the function, stamp its Description,
publish a version and move the alias. What differs is around it: a commit is reported as a GitHub Deployment and
may be packaged from the repository itself; an upload involves no GitHub at all. This module composes the steps
(ordering, AWS, GitHub) and decides how each outcome is reported; the steps themselves live in their own modules.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.plugin import Context, before_effect
from handlers.lambda_deploy.aws_steps import (
    Artifact,
    Deployed,
    Target,
    apply_to_lambda,
    function_tags,
    head_artifact,
    read_pointer,
    roll_back,
    upload_artifact,
)
from handlers.lambda_deploy.config import LambdaDeployConfig, PushRule, S3Rule
from handlers.lambda_deploy.errors import DeployError, Refused, Superseded
from handlers.lambda_deploy.github import (
    ON_BRANCH,
    GitHubDeployment,
    branch_status,
    console_url,
    download_zipball,
    repackage_zipball,
)
from handlers.lambda_deploy.ordering import check_order

FULL_SHA = re.compile(r"[0-9a-f]{40}")


async def deploy(
    ctx: Context[LambdaDeployConfig],
    target: Target,
    resolve: Callable[[], Awaitable[Artifact]],
    plan: str,
    on_start: Callable[[], Awaitable[None]] | None = None,
) -> Deployed | None:
    """Run one deployment in the function's turn; None in dry-run (the plan is recorded instead).

    ``resolve`` is a coroutine function giving the Artifact, called only once the deployment is sure to run.
    """
    config = ctx.config
    async with config.queue.turn(target.function, target.order):
        if on_start is not None:
            await on_start()
        if ctx.dry_run:
            ctx.actions.record(f"lambda {target.function}: {plan}")
            return None
        # AWS writes may be in flight at a crash, as a GitHub one may: the restarted worker waits for them to land
        # (a push deployment's GitHub Deployment has marked it already; an S3 upload writes to AWS alone).
        await before_effect()
        lam = ctx.aws.client("lambda")
        tags = await asyncio.to_thread(function_tags, lam, target.function)
        check_order(tags, target.function, target.order)
        artifact = await resolve()
        deployed = await asyncio.to_thread(apply_to_lambda, lam, target, artifact)
        ctx.actions.record(
            f"lambda {target.function}: deployed {artifact} as version {deployed.version}"
            + (f", alias {deployed.alias}" if deployed.alias else "")
        )
        return deployed


def _plan(artifact: str, target: Target) -> str:
    steps = f"deploy {artifact}, description {target.description!r}, publish a version"
    return steps + (f", move alias {target.alias}" if target.alias else "")


async def deploy_commit(
    gh: GitHubAPI, ctx: Context[LambdaDeployConfig], rule: PushRule, repository: str, sha: str, order: float
) -> str:
    """Deploy one commit by one push rule, reported as a GitHub Deployment; returns a one-line summary.

    Every line names the full sha: a short one is what a colliding commit would share.
    """
    config = ctx.config
    try:
        function = config.check_target(rule.function_name(repository))
    except Refused as exc:
        ctx.log.warning("not deploying %s from %s: %s", sha, repository, exc)
        return f"Did not deploy `{sha}`: {exc}."
    bucket, key = rule.artifact_location(repository, sha)
    target = Target(
        function=function,
        alias=rule.alias,
        create=rule.create,
        description=f"deployed {sha} from {repository}@{rule.branch}",
        source=f"{repository}@{sha}",
        order=order,
    )
    deployment = await GitHubDeployment.create(gh, repository, sha, rule, function)

    async def resolve() -> Artifact:
        s3 = ctx.aws.client("s3")
        if rule.source == "repository":
            packaged = await download_zipball(gh, repository, sha)
            body = await asyncio.to_thread(repackage_zipball, packaged, rule.subdir)
            return await asyncio.to_thread(upload_artifact, s3, bucket, key, body)
        return await asyncio.to_thread(head_artifact, s3, bucket, key, None)

    async def started() -> None:
        await deployment.status("in_progress", f"deploying {sha} to {function}")

    if config.queue.busy(function):
        await deployment.status("queued", f"waiting for another deployment to {function}")
    what = f"the zipball of {sha} ({rule.subdir or 'whole commit'}) uploaded to s3://{bucket}/{key}"
    plan = _plan(what if rule.source == "repository" else f"s3://{bucket}/{key}", target)
    try:
        deployed = await deploy(ctx, target, resolve, plan, on_start=started)
    except Superseded as exc:
        ctx.log.info("not deploying %s to %s: %s", sha, function, exc)
        await deployment.status("inactive", str(exc))
        return f"Did not deploy `{sha}` to `{function}`: {exc}."
    except DeployError as exc:
        ctx.log.warning("deploying %s to %s failed: %s", sha, function, exc)
        await deployment.status("failure", str(exc))
        return f"Could not deploy `{sha}` to `{function}`: {exc}."
    except Exception as exc:  # a bug or an outage: say so on GitHub, then let dispatch log and count it
        await deployment.status("error", f"hookbot failed: {type(exc).__name__}")
        raise
    if deployed is None:
        return f"Would deploy `{sha}` to `{function}` (dry-run)."
    alias_text = f", alias `{deployed.alias}`" if deployed.alias else ""
    await deployment.status(
        "success",
        f"version {deployed.version} of {deployed.function_arn}",
        console_url(deployed.function_arn, deployed.version),
    )
    return f"Deployed `{sha}` to `{function}`: version {deployed.version}{alias_text} ({deployed.function_arn})."


async def deploy_ref(
    gh: GitHubAPI, ctx: Context[LambdaDeployConfig], rule: PushRule, repository: str, ref: str, order: float
) -> str:
    """``/deploy <ref>``: the commit a (possibly short) sha names, deployed as a push of it would be, but only when
    it is on the rule's branch.

    ``/commits/{ref}`` resolves any commit GitHub can reach from the repository, a fork's included, and a short
    sha is easy to collide: so the ref becomes the full sha, and GitHub's compare API must place that sha on the
    branch (the tip, or behind it) before anything is deployed. Reviewed code is what reached the branch.
    """
    try:
        commit = await gh.getitem(f"/repos/{repository}/commits/{ref}")
    except gidgethub.BadRequest:
        return f"`{ref}` is not a commit of {repository}."
    sha = str(commit.get("sha") or "") if isinstance(commit, dict) else ""
    if not FULL_SHA.fullmatch(sha):
        return f"GitHub did not resolve `{ref}` to a commit of {repository}."
    status = await branch_status(gh, repository, rule.branch, sha)
    if status not in ON_BRANCH:
        ctx.log.warning(
            "refused /deploy of %s to %s: not on %s (compare says %s)", sha, repository, rule.branch, status
        )
        return (
            f"Did not deploy `{sha}`: it is not on `{rule.branch}` (GitHub compares it with `{rule.branch}` as "
            f"{status}). Only commits on `{rule.branch}` are deployed; merge it first."
        )
    return await deploy_commit(gh, ctx, rule, repository, sha, order)


async def deploy_upload(
    ctx: Context[LambdaDeployConfig], rule: S3Rule, bucket: str, key: str, version: str | None, order: float
) -> None:
    """Deploy one uploaded object; a failure raises, so the delivery is logged as failed and may be retried."""
    if rule.pointer is not None:
        if ctx.dry_run:
            ctx.actions.record(f"read pointer s3://{bucket}/{key} and deploy what it names")
            return
        pointed = await asyncio.to_thread(read_pointer, ctx.aws.client("s3"), bucket, key, version)
    else:
        pointed = Artifact(bucket, key, version)
    config = ctx.config
    try:
        function = config.check_target(rule.function_name(pointed.key))
    except Refused as exc:  # whoever uploaded chose the name: never deployed, and a retry cannot change that
        ctx.log.warning("not deploying %s: %s", pointed, exc)
        return
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


async def roll_back_alias(
    ctx: Context[LambdaDeployConfig], rule: PushRule, repository: str, user: str, order: float
) -> str:
    """``/deploy rollback``: the alias back to the previous published version, in the function's turn."""
    config = ctx.config
    try:
        function = config.check_target(rule.function_name(repository))
    except Refused as exc:
        ctx.log.warning("not rolling back for %s: %s", repository, exc)
        return f"Did not roll back: {exc}."
    if rule.alias is None:
        return f"`{function}` has no alias configured, so there is nothing to roll back."
    alias = rule.alias
    try:
        async with config.queue.turn(function, order):
            if ctx.dry_run:
                ctx.actions.record(f"lambda {function}: move alias {alias} to the previous published version")
                return f"Would roll back `{function}` (dry-run)."
            await before_effect()
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
