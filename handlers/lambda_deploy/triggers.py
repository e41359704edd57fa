"""What each trigger deploys: a push to a configured branch, an upload to S3, a ``/deploy`` comment.

The plugin's handlers (handlers/lambda_deploy/__init__.py) call these once the config has a rule; each decides
*whether* and *what* to deploy from its event and hands the rest to :mod:`.deployments`.
"""

from __future__ import annotations

import asyncio

from bot.plugin import Context, Event, GitHubAPI
from handlers.lambda_deploy.commands import USAGE, parse_command, pick_rule
from handlers.lambda_deploy.config import LambdaDeployConfig
from handlers.lambda_deploy.deployments import deploy_commit, deploy_ref, deploy_upload, roll_back_alias
from handlers.lambda_deploy.github import MARKER, permission_of, reply
from handlers.lambda_deploy.ordering import order_of

NULL_SHA = "0" * 40


async def push(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    """A push to a configured branch deploys its head; tags, deletions and other branches are ignored."""
    data = event.data
    ref = str(data.get("ref", ""))
    sha = str(data.get("after") or "")
    if not ref.startswith("refs/heads/") or data.get("deleted") or sha in ("", NULL_SHA):
        return
    branch = ref.removeprefix("refs/heads/")
    repository = str(data["repository"]["full_name"])
    config = ctx.config
    rules = [rule for rule in config.push if rule.matches(repository, branch)]
    if not rules:
        return
    head = data.get("head_commit") or {}
    order = order_of(data["repository"].get("pushed_at"), order_of(head.get("timestamp"), event.received_at))
    await asyncio.gather(*(deploy_commit(gh, ctx, rule, repository, sha, order) for rule in rules))


async def s3_upload(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    """An upload under a configured prefix deploys it (or, with ``pointer``, what the pointer names)."""
    data = event.data
    if not str(data.get("action", "")).startswith("ObjectCreated:"):
        return
    bucket, key, version = str(data.get("bucket", "")), str(data.get("key", "")), data.get("version_id")
    config = ctx.config
    order = order_of(data.get("event_time"), event.received_at)
    for rule in (rule for rule in config.s3 if rule.matches(bucket, key)):
        await deploy_upload(ctx, rule, bucket, key, version if isinstance(version, str) else None, order)


async def deploy_command(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    """``/deploy <sha>`` and ``/deploy rollback`` from people who may write to the repository."""
    data = event.data
    comment = data["comment"]
    body = str(comment.get("body") or "")
    sender = data.get("sender") or comment.get("user") or {}
    if MARKER in body or ctx.is_from_bot(event):
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
    config = ctx.config
    picked = pick_rule([rule for rule in config.push if rule.matches(repository)], command.function, repository)
    if isinstance(picked, str):
        await reply(gh, repository, number, picked)
        return
    order = order_of(comment.get("created_at"), event.received_at)
    if command.kind == "rollback":
        text = await roll_back_alias(ctx, picked, repository, user, order)
    else:
        assert command.ref is not None
        text = await deploy_ref(gh, ctx, picked, repository, command.ref, order)
    await reply(gh, repository, number, text)
