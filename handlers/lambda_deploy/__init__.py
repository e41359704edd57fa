"""Deploy AWS Lambda functions: on a push, on an S3 upload, and on a `/deploy` comment.

The "Lambda Auto-Deployer" idea, triggered from GitHub as well as from S3. Every deployment takes the same path:
wait for the function's turn, resolve the artifact (an S3 object, or the pushed commit's own zipball repackaged
and uploaded), update or create the function, stamp its Description with what was deployed, publish a version and
move the alias, so that a rollback is one alias move.

This module holds only the router and its short handlers, which decide *whether* and *what* to deploy from an
event. The rest, one concern per module:

- :mod:`.config`: the ``[lambda_deploy]`` rules, checked at start;
- :mod:`.deployments`: the shared deployment path and how each outcome is reported;
- :mod:`.ordering`: one deployment per function at a time, never older code over newer;
- :mod:`.aws_steps`: the blocking boto3 steps (run in threads);
- :mod:`.github`: GitHub Deployments, comments, permissions and zipballs;
- :mod:`.commands`: the ``/deploy`` comment grammar;
- :mod:`.errors`: the two ways a deployment ends without running.

Importing the plugin loads neither boto3 nor botocore: clients come from ``ctx.aws`` when a deployment runs, and
the deployment path itself (:mod:`.deployments`, :mod:`.aws_steps`) is imported by the first event that deploys,
since every Lambda cold start, and every process with no rule, would otherwise pay for it (~2 ms).
"""

from __future__ import annotations

import asyncio

from gidgethub import sansio
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router

from bot.context import HandlerContext
from handlers.lambda_deploy.commands import USAGE, parse_command, pick_rule
from handlers.lambda_deploy.config import LambdaDeployConfig, configure
from handlers.lambda_deploy.github import MARKER, permission_of, reply
from handlers.lambda_deploy.ordering import order_of

__all__ = ["configure", "router"]

router = Router()

NULL_SHA = "0" * 40


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
    from handlers.lambda_deploy.deployments import deploy_commit

    head = data.get("head_commit") or {}
    order = order_of(data["repository"].get("pushed_at"), order_of(head.get("timestamp"), ctx.delivery.received_at))
    await asyncio.gather(*(deploy_commit(gh, ctx, rule, repository, sha, order) for rule in rules))


@router.register("s3")
async def s3_upload(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    """An upload under a configured prefix deploys it (or, with ``pointer``, what the pointer names)."""
    data = event.data
    if not str(data.get("action", "")).startswith("ObjectCreated:"):
        return
    bucket, key, version = str(data.get("bucket", "")), str(data.get("key", "")), data.get("version_id")
    config: LambdaDeployConfig = ctx.config
    order = order_of(data.get("event_time"), ctx.delivery.received_at)
    from handlers.lambda_deploy.deployments import deploy_upload

    for rule in (rule for rule in config.s3 if rule.matches(bucket, key)):
        await deploy_upload(ctx, rule, bucket, key, version if isinstance(version, str) else None, order)


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
    picked = pick_rule([rule for rule in config.push if rule.matches(repository)], command.function, repository)
    if isinstance(picked, str):
        await reply(gh, repository, number, picked)
        return
    order = order_of(comment.get("created_at"), ctx.delivery.received_at)
    from handlers.lambda_deploy.deployments import deploy_ref, roll_back_alias

    if command.kind == "rollback":
        text = await roll_back_alias(ctx, picked, repository, user, order)
    else:
        assert command.ref is not None
        text = await deploy_ref(gh, ctx, picked, repository, command.ref, order)
    await reply(gh, repository, number, text)
