"""Greet the author of a newly opened issue or pull request with a comment.

Every comment carries a hidden marker; before writing, the greeter looks for that marker in the conversation, so
a retry, a redelivery or a second replica can never greet twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.plugin import Context, Event, GitHubAPI, Router, Setup, comment_once, hidden_marker, issue_path

router = Router()

MARKER = hidden_marker("greeter")


@dataclass(frozen=True, slots=True)
class GreeterConfig:
    issue_comment: str = "Thanks for opening this issue, @{author}! A maintainer will take a look soon."
    pull_request_comment: str = "Thanks for the pull request, @{author}! A maintainer will review it soon."


def setup(plugin: Setup) -> GreeterConfig:
    """Check the templates at start: a typo such as ``{autor}`` fails here, not on the first issue."""
    config = GreeterConfig(**{k: str(v) for k, v in plugin.section.items()})
    for template in (config.issue_comment, config.pull_request_comment):
        template.format(author="someone", repository="owner/repo", number=1, title="t")
    return config


async def greet(
    event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig], item: Mapping[str, Any], template: str
) -> None:
    if ctx.is_from_bot(event):
        return
    comments = issue_path(event, "comments")
    number = item["number"]
    text = template.format(
        author=item["user"]["login"], repository=event.repository, number=number, title=item.get("title", "")
    )
    if not await comment_once(gh, comments, text, MARKER):
        ctx.log.info("already greeted %s#%s; not greeting twice", event.repository, number)


@router.register("issues", action="opened")
async def issue_opened(event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig]) -> None:
    await greet(event, gh, ctx, event.data["issue"], ctx.config.issue_comment)


@router.register("pull_request", action="opened")
async def pull_request_opened(event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig]) -> None:
    await greet(event, gh, ctx, event.data["pull_request"], ctx.config.pull_request_comment)
