"""Greet the author of a newly opened issue or pull request with a comment.

Every comment carries a hidden marker; before writing, the greeter looks for that marker in the conversation, so
a retry, a redelivery or a second replica can never greet twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub import sansio
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router

from bot.config import Section, Setting, check_placeholders
from bot.context import HandlerContext

router = Router()

MARKER = "<!-- hookbot:greeter -->"


PLACEHOLDERS = frozenset({"author", "repository", "number", "title"})
SETTINGS = Section(
    "greeter",
    (
        Setting(
            "issue_comment",
            "text",
            "Thanks for opening this issue, @{author}! A maintainer will take a look soon.",
            "the comment on a new issue; placeholders {author}, {repository}, {number}, {title}",
        ),
        Setting(
            "pull_request_comment",
            "text",
            "Thanks for the pull request, @{author}! A maintainer will review it soon.",
            "the comment on a new pull request; the same placeholders",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class GreeterConfig:
    issue_comment: str = SETTINGS.setting("issue_comment").default
    pull_request_comment: str = SETTINGS.setting("pull_request_comment").default


def configure(section: Mapping[str, Any]) -> GreeterConfig:
    """Check the templates at start: a typo such as ``{autor}`` fails here, naming the placeholders allowed."""
    config = GreeterConfig(**SETTINGS.parse(section, "[greeter]"))
    check_placeholders(config.issue_comment, PLACEHOLDERS, "issue_comment")
    check_placeholders(config.pull_request_comment, PLACEHOLDERS, "pull_request_comment")
    return config


def is_from_bot(sender: Mapping[str, Any], bot_login: str | None) -> bool:
    """A Bot account or the bot's own user: answering either could start a loop between bots."""
    login = sender.get("login")
    return sender.get("type") == "Bot" or (bot_login is not None and login == bot_login)


async def already_commented(gh: GitHubAPI, comments_url: str) -> bool:
    async for comment in gh.getiter(comments_url):
        if MARKER in (comment.get("body") or ""):
            return True
    return False


async def greet(gh: GitHubAPI, ctx: HandlerContext, item: Mapping[str, Any], template: str) -> None:
    repository = ctx.delivery.payload["repository"]["full_name"]
    number = item["number"]
    author = item["user"]["login"]
    comments_url = f"/repos/{repository}/issues/{number}/comments"
    if await already_commented(gh, comments_url):
        ctx.log.info("already greeted %s#%s; not greeting twice", repository, number)
        return
    text = template.format(author=author, repository=repository, number=number, title=item.get("title", ""))
    await gh.post(comments_url, data={"body": f"{text}\n\n{MARKER}"})


@router.register("issues", action="opened")
async def issue_opened(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    if not is_from_bot(event.data["sender"], ctx.bot_login):
        await greet(gh, ctx, event.data["issue"], ctx.config.issue_comment)


@router.register("pull_request", action="opened")
async def pull_request_opened(event: sansio.Event, gh: GitHubAPI, ctx: HandlerContext) -> None:
    if not is_from_bot(event.data["sender"], ctx.bot_login):
        await greet(gh, ctx, event.data["pull_request"], ctx.config.pull_request_comment)
