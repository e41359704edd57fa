"""Everything a hookbot plugin imports: the one public plugin API.

A plugin is a module (or package) with:

- a module-level ``router = Router()``, whose handlers are ``async def handler(event, gh, ctx)`` (the shape
  python/bedevere uses): ``event`` is the delivery (its payload is ``event.data``, and only there), ``gh`` a
  gidgethub client pinned to the configured GitHub API, ``ctx`` this plugin's :class:`Context`;
- optionally ``repository_settings = RepositorySettings(...)``: which of its settings a repository's
  ``.github/hookbot.yml`` may set and how they narrow the server's config (bot/repo_config.py); handlers then get
  the effective config for the delivery's repository as ``ctx.config``;
- optionally ``setup(plugin: Setup) -> Config | None``, called once at start with the plugin's config section.
  It checks the section and returns what handlers get as ``ctx.config`` (typed: ``Context[Config]``), or None when
  the plugin has nothing to do under this config, and is then not loaded. Whatever it raises stops hookbot
  with one config error naming the plugin. Without ``setup``, ``ctx.config`` is the section as it was written;
- optionally ``SETTINGS = Section(name, (Setting(...), ...))``: the keys its section may hold, declared the way
  hookbot declares its own (type, default, help). They are checked before ``setup`` runs, so a typo stops hookbot
  with "did you mean"; ``SETTINGS.parse(section)`` gives every value typed, with the defaults filled in;
- optionally ``needs_github = False`` (or ``needs_github(config) -> bool``) when it can act without GitHub
  credentials: live mode without credentials refuses to start only when a loaded plugin needs them. Raising
  :class:`HandlerError` from a handler logs a failure its message explains as one line, without a traceback.
- optionally ``wants(config, event) -> bool``: whether the plugin wants a delivery its router would route (audit:
  the events its ``events`` setting names). A delivery no loaded plugin wants is answered at the door without
  the journal or de-duplication, so say no here rather than return early in a ``"*"`` handler.

Helpers the built-ins share live here too, so a third-party plugin gets them from the same place: whether a
delivery was sent by a bot (answering one could start a loop between bots), the hidden-marker comment that makes
a comment idempotent, and API paths for the delivery's issue or pull request.

A handler that changes something outside hookbot other than through ``gh`` (runs a command, writes to AWS)
awaits :func:`before_effect` first, in live mode: after a crash, a delivery that may have had such a change in
flight is run again only once ``[github] request_timeout_seconds`` have passed since, so that the retry's own
idempotency check sees what landed. ``gh`` does this itself before every request that is not a read.

API paths, never payload URLs: every request goes to the configured GitHub API (``GITHUB_API_URL``), and the
client refuses any other origin with :class:`UntrustedURLError`, so a forged payload cannot aim the bot's token
at another host. A payload's ``issue["url"]`` names api.github.com even when hookbot talks to GitHub Enterprise
or a test server; :func:`issue_path` builds the same path from the payload's repository and number.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gidgethub import sansio
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router

from bot.aws import AwsClients
from bot.config_schema import ConfigError, Section, Setting, check_event_names
from bot.context import ActionLog, StepMarks
from bot.delivery import WILDCARD, Delivery, Source, action_of, describe, matches, repository_of
from bot.effects import before_effect
from bot.github import UntrustedURLError
from bot.logs import CREDENTIAL_PATTERN, REDACTED, register_secret
from bot.records import record
from bot.repo_config import RepoSetting, RepositorySettings, SettingError

__all__ = [
    "CREDENTIAL_PATTERN",
    "REDACTED",
    "WILDCARD",
    "ActionLog",
    "AwsClients",
    "ConfigError",
    "Context",
    "Event",
    "GitHubAPI",
    "HandlerError",
    "RepoSetting",
    "RepositorySettings",
    "Router",
    "Section",
    "Setting",
    "SettingError",
    "Setup",
    "StepMarks",
    "UntrustedURLError",
    "before_effect",
    "check_event_names",
    "comment_once",
    "find_marked_comment",
    "hidden_marker",
    "is_about_issue",
    "issue_path",
    "register_secret",
    "repository_path",
]

ConfigT = TypeVar("ConfigT")


class HandlerError(Exception):
    """A handler failure its message fully explains (a command's exit status, a missing artifact): logged as one
    line, without the traceback that an unexpected error gets."""


class Event(sansio.Event):
    """gidgethub's Event (``data``, ``event``, ``delivery_id``) plus what hookbot knows of the delivery."""

    def __init__(self, delivery: Delivery) -> None:
        super().__init__(delivery.payload, event=delivery.event, delivery_id=delivery.delivery_id)
        self.received_at: float = delivery.received_at  # epoch seconds, when hookbot accepted it
        self.source: Source = delivery.source

    @property
    def action(self) -> str | None:
        return action_of(self.data)

    @property
    def repository(self) -> str | None:
        """``owner/name`` of the repository the delivery is about, if any."""
        return repository_of(self.data)

    def describe(self) -> str:
        """``issues.opened`` style name, as logs and config filters spell it."""
        return describe(self.event, self.action)

    def matches(self, names: Iterable[str]) -> bool:
        """True when one of a config's event filters names this delivery: ``*``, ``push`` or ``issues.opened``."""
        return matches(self.event, self.action, names)


@record
class Setup:
    """What a plugin's ``setup`` hook gets at start."""

    name: str  # the plugin's name, which is also its config section: [name]
    section: Mapping[str, Any]  # that section as written ({} when absent)
    # The environment hookbot started with, for a plugin that hands parts of it to something it runs (exec: PATH
    # and an allow-list); plugins never read os.environ themselves.
    env: Mapping[str, str]


@dataclass(slots=True)
class Context(Generic[ConfigT]):
    """What a handler gets after ``(event, gh)``: one per delivery and plugin."""

    config: ConfigT  # what the plugin's setup returned (the raw section for a plugin without setup)
    log: logging.Logger  # named hookbot.handlers.<plugin>; lines carry the delivery id
    dry_run: bool  # writes to GitHub are recorded, not sent; a plugin acting elsewhere checks this itself
    aws: AwsClients  # boto3 clients, made on first use
    actions: ActionLog  # one line per side effect: what `hookbot replay` prints
    bot_login: str | None = None  # the account hookbot writes as, when known
    # Steps of this plugin already done for this delivery (a plugin doing several independent things marks each,
    # so a retry runs only those that failed); None: nothing remembers steps, every step runs.
    steps: StepMarks | None = None

    def is_from_bot(self, event: Event) -> bool:
        """Sent by a Bot account or by hookbot itself: answering either could start a loop between bots."""
        sender = event.data.get("sender") or {}
        return sender.get("type") == "Bot" or (self.bot_login is not None and sender.get("login") == self.bot_login)


def hidden_marker(plugin: str, **details: object) -> str:
    """An HTML comment GitHub does not show, put in a comment so that a retry can find what it wrote.

    ``details`` tell one plugin's comments apart (exec: the hook and the delivery).
    """
    words = "".join(f" {key}={value}" for key, value in details.items())
    return f"<!-- hookbot:{plugin}{words} -->"


async def find_marked_comment(gh: GitHubAPI, comments_path: str, marker: str) -> dict[str, Any] | None:
    """The first comment under ``comments_path`` that carries ``marker``, or None."""
    async for comment in gh.getiter(comments_path):
        if marker in (comment.get("body") or ""):
            return dict(comment)
    return None


async def comment_once(gh: GitHubAPI, comments_path: str, text: str, marker: str) -> bool:
    """Post ``text`` with ``marker`` unless a comment with that marker is already there; True when posted.

    A retry, a redelivery or a second replica then never writes the same comment twice.
    """
    if await find_marked_comment(gh, comments_path, marker) is not None:
        return False
    await gh.post(comments_path, data={"body": f"{text}\n\n{marker}"})
    return True


def repository_path(event: Event, *tail: str | int) -> str:
    """``/repos/{owner}/{name}[/tail...]`` of the delivery's repository (KeyError when it has none)."""
    repository = event.repository
    if repository is None:
        raise KeyError("repository")
    return "/".join((f"/repos/{repository}", *(str(part) for part in tail)))


def issue_path(event: Event, *tail: str | int) -> str:
    """``/repos/{owner}/{name}/issues/{number}[/tail...]`` of the delivery's issue or pull request.

    Pull requests are issues to the API, so ``issue_path(event, "comments")`` and ``issue_path(event, "labels")``
    work for both. KeyError when the delivery is about neither (a push), which hookbot counts as a permanent
    failure of the handler: check :func:`is_about_issue` first when an event may be either.
    """
    for key in ("issue", "pull_request"):
        item = event.data.get(key)
        if isinstance(item, Mapping) and isinstance(item.get("number"), int):
            return repository_path(event, "issues", item["number"], *tail)
    raise KeyError("issue")


def is_about_issue(event: Event) -> bool:
    """True when the delivery names an issue or a pull request in a repository (issue_path can build its path)."""
    try:
        issue_path(event)
    except KeyError:
        return False
    return True
