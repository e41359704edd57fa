"""Greet the author of a newly opened issue or pull request with a comment.

Every comment carries a hidden marker; before writing, the greeter looks for that marker in the conversation, so
a retry, a redelivery or a second replica can never greet twice.

A repository may narrow and personalise it in ``.github/hookbot.yml`` (``repository_settings``): switch it off,
write its own greetings, skip more authors. Its values pass the same checks as the server's ``[greeter]``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.config_schema import closest
from bot.plugin import (
    Context,
    Event,
    GitHubAPI,
    RepoSetting,
    RepositorySettings,
    Router,
    Section,
    Setting,
    SettingError,
    Setup,
    comment_once,
    hidden_marker,
    issue_path,
)
from bot.records import record

router = Router()

MARKER = hidden_marker("greeter")
PLACEHOLDERS = ("author", "repository", "number", "title")
AUTHOR_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]-]{1,100}")  # a login (bots end in "[bot]"), with * and ? globs


SETTINGS = Section(
    "greeter",
    (
        Setting("enabled", "bool", True, "false: the greeter is not loaded"),
        Setting(
            "issue_comment",
            "text",
            "Thanks for opening this issue, @{author}! A maintainer will take a look soon.",
            "the comment on a new issue ({author}, {repository}, {number}, {title}); empty: none",
        ),
        Setting(
            "pull_request_comment",
            "text",
            "Thanks for the pull request, @{author}! A maintainer will review it soon.",
            "the comment on a new pull request (the same placeholders); empty: none",
        ),
        Setting("skip_authors", "list", (), "logins or globs (`dependabot*`) never greeted; case-insensitive"),
    ),
)


@record
class GreeterConfig:
    """The greetings and who is never greeted: what ``setup`` and a repository's file narrow."""

    issue_comment: str = SETTINGS.setting("issue_comment").default
    pull_request_comment: str = SETTINGS.setting("pull_request_comment").default
    skip_authors: tuple[str, ...] = ()  # logins or globs (``dependabot*``) never greeted; case-insensitive


def setup(plugin: Setup) -> GreeterConfig | None:
    """Check the templates at start: a typo such as ``{autor}`` fails here, not on the first issue."""
    section = plugin.section
    SETTINGS.check(section, "[greeter]")
    if section.get("enabled", True) is False:
        return None
    return narrow(GreeterConfig(), {key: value for key, value in section.items() if key != "enabled"})


def narrow(config: GreeterConfig, values: Mapping[str, Any]) -> GreeterConfig:
    """``config`` with a repository's (or the server's) greetings, and its ``skip_authors`` added to the list.

    An empty greeting means "do not greet that kind"; a template may use only the plain placeholders
    {author}, {repository}, {number} and {title}: no attributes, indexes or format specs, which a repository's
    file could otherwise use to reach into objects or to pad a comment to any size.
    """
    changes: dict[str, Any] = {}
    for key in ("issue_comment", "pull_request_comment"):
        if key in values:
            changes[key] = _template(values[key], key)
    if "skip_authors" in values:
        changes["skip_authors"] = config.skip_authors + _author_patterns(values["skip_authors"])
    return replace(config, **changes)


def _template(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise SettingError(key, f"must be text, not {value!r}")
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(value)
            if name is not None
        ]
    except ValueError as exc:
        raise SettingError(key, f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            guess = closest(name, PLACEHOLDERS) if name not in PLACEHOLDERS else None
            raise SettingError(
                key,
                f"uses {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                f"a greeting may use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                + (f"; did you mean {{{guess}}}?" if guess else ""),
            )
    return value


def _author_patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise SettingError("skip_authors", f"must be a list of logins or globs such as dependabot*, not {value!r}")
    for pattern in value:
        if not AUTHOR_PATTERN.fullmatch(pattern):
            raise SettingError("skip_authors", f"{pattern!r} is not a login or a glob such as dependabot*")
    return tuple(value)


def is_skipped(login: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``login`` matches one of ``patterns``: ``*`` and ``?`` are the only wildcards, so ``[bot]`` is
    literal text, and logins compare case-insensitively as GitHub's do."""
    return any(
        re.fullmatch(".*".join(".".join(map(re.escape, part.split("?"))) for part in pattern.split("*")), login, re.I)
        for pattern in patterns
    )


repository_settings: RepositorySettings[GreeterConfig] = RepositorySettings(
    settings=(
        RepoSetting("enabled", "bool", "false: no greetings in this repository"),
        RepoSetting("issue_comment", "text", "the greeting on a new issue; empty: none"),
        RepoSetting("pull_request_comment", "text", "the greeting on a new pull request; empty: none"),
        RepoSetting("skip_authors", "names", "logins or globs (dependabot*) not greeted, besides the server's"),
    ),
    narrow=narrow,
)


async def greet(
    event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig], item: Mapping[str, Any], template: str
) -> None:
    number = item["number"]
    author = item["user"]["login"]
    if not template or ctx.is_from_bot(event) or is_skipped(author, ctx.config.skip_authors):
        return
    text = template.format(author=author, repository=event.repository, number=number, title=item.get("title", ""))
    if not await comment_once(gh, issue_path(event, "comments"), text, MARKER):
        ctx.log.info("already greeted %s#%s; not greeting twice", event.repository, number)


@router.register("issues", action="opened")
async def issue_opened(event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig]) -> None:
    await greet(event, gh, ctx, event.data["issue"], ctx.config.issue_comment)


@router.register("pull_request", action="opened")
async def pull_request_opened(event: Event, gh: GitHubAPI, ctx: Context[GreeterConfig]) -> None:
    await greet(event, gh, ctx, event.data["pull_request"], ctx.config.pull_request_comment)
