"""Deploy AWS Lambda functions: on a push, on an S3 upload, and on a `/deploy` comment.

The "Lambda Auto-Deployer" idea, triggered from GitHub as well as from S3. Every deployment takes the same path:
wait for the function's turn, resolve the artifact (an S3 object, or the pushed commit's own zipball repackaged
and uploaded), update or create the function, stamp its Description with what was deployed, publish a version and
move the alias, so that a rollback is one alias move.

This module holds only the router and ``setup``: every start imports the plugin to ask whether it has work,
a Lambda cold start included, so the rest is imported when a section has rules (config) and when a trigger
fires (the others). One concern per module:

- :mod:`.triggers`: what a push, an upload and a ``/deploy`` comment each deploy;
- :mod:`.config`: the ``[lambda_deploy]`` rules, checked at start;
- :mod:`.deployments`: the shared deployment path and how each outcome is reported;
- :mod:`.ordering`: one deployment per function at a time, never older code over newer;
- :mod:`.aws_steps`: the blocking boto3 steps (run in threads);
- :mod:`.github`: GitHub Deployments, comments, permissions and zipballs;
- :mod:`.commands`: the ``/deploy`` comment grammar;
- :mod:`.errors`: the two ways a deployment ends without running.

Nothing here loads boto3 or botocore: clients come from ``ctx.aws`` when a deployment runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.plugin import Context, Event, GitHubAPI, RepoSetting, RepositorySettings, Router, Section, Setting, Setup

if TYPE_CHECKING:
    from handlers.lambda_deploy.config import LambdaDeployConfig

router = Router()

SETTINGS = Section(
    "lambda_deploy",
    (
        Setting("push", "tables", (), "deploy on a push: [[lambda_deploy.push]] rules"),
        Setting("s3", "tables", (), "deploy on an S3 upload: [[lambda_deploy.s3]] rules"),
    ),
)


def setup(plugin: Setup) -> LambdaDeployConfig | None:
    """No ``[lambda_deploy]`` section: nothing to deploy, said without importing the rest of the plugin; any
    section is checked in full (config.configure).

    ``plugin.env`` is hookbot's environment snapshot, read only for ``AWS_LAMBDA_FUNCTION_NAME`` (which Lambda
    sets to the function running the code), so that hookbot never deploys over itself.
    """
    if not plugin.section:
        return None
    from handlers.lambda_deploy import config

    return config.configure(plugin.section, own_function=plugin.env.get("AWS_LAMBDA_FUNCTION_NAME"))


def needs_github(config: LambdaDeployConfig) -> bool:
    """Push rules report through GitHub Deployments (and answer /deploy comments); S3 rules need only AWS."""
    return bool(config.push)


def _narrow(config: LambdaDeployConfig, values: Mapping[str, Any]) -> LambdaDeployConfig:
    from handlers.lambda_deploy import config as rules

    return rules.narrow(config, values)


# No function, artifact, bucket or alias can come from a repository: it can only pick among the server's rules.
repository_settings: RepositorySettings[LambdaDeployConfig] = RepositorySettings(
    settings=(
        RepoSetting("enabled", "bool", "false: nothing deploys from this repository"),
        RepoSetting("rules", "names", "the names of the server's push rules that apply to this repository"),
    ),
    narrow=_narrow,
)


@router.register("push")
async def push(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    from handlers.lambda_deploy import triggers

    await triggers.push(event, gh, ctx)


@router.register("s3")
async def s3_upload(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    from handlers.lambda_deploy import triggers

    await triggers.s3_upload(event, gh, ctx)


@router.register("issue_comment", action="created")
async def deploy_command(event: Event, gh: GitHubAPI, ctx: Context[LambdaDeployConfig]) -> None:
    from handlers.lambda_deploy import triggers

    await triggers.deploy_command(event, gh, ctx)
