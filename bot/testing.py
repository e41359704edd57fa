"""A test kit for plugins: run one plugin on a payload against an in-process recording GitHub, see what it did.

::

    from bot.testing import run_plugin
    import labeler

    def test_new_issues_get_the_label() -> None:
        done = run_plugin(labeler, "tests/issues.opened.json", event="issues", config={"label": "triage"})
        assert done.writes == [("POST", "/repos/o/r/issues/7/labels", {"labels": ["triage"]})]

The plugin runs as hookbot runs it: its ``setup`` gets ``config`` (a mistake there raises hookbot's
``ConfigError``), its handlers get the same :class:`~bot.plugin.Event`, client and :class:`~bot.plugin.Context`,
and the client is hookbot's own, so a request to any origin but the configured API raises ``UntrustedURLError``
here as it would in production (the fake API lives at :data:`API_URL`, not api.github.com). A handler's
exception propagates to the test. Nothing touches the network, the environment or the disk.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
from gidgethub import sansio

from bot.aws import AwsClients
from bot.config_schema import ConfigError
from bot.context import ActionLog
from bot.delivery import WILDCARD, Delivery
from bot.github import Answer, DryRunGitHubAPI, HookbotGitHubAPI
from bot.plugin import Context, Event, Setup
from bot.plugins import set_up

API_URL = "https://api.github.test"  # where the fake GitHub answers: not api.github.com, as under GitHub Enterprise
BOT_LOGIN = "hookbot-test[bot]"
TOKEN = "fake-github-token"  # noqa: S105 - what the fake is sent; it checks nothing
JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}


class Request(NamedTuple):
    """One request a plugin made; a tuple, so a test compares it with ``("POST", path, data)``."""

    method: str
    path: str  # the API path, without the API's origin and without the query
    data: Any  # the JSON body, or None


@dataclass
class FakeGitHub:
    """An in-process GitHub API that records every request and remembers what was created.

    A POST to a path answers 201 with the body plus an ``id``, and is remembered under that path; a GET answers
    what a test set with :meth:`answer`, else what was created at (or :meth:`seed`-ed into) that path, else an
    empty list, which is what GitHub answers for a collection with nothing in it. ``/user`` is the bot.
    """

    bot_login: str = BOT_LOGIN
    requests: list[Request] = field(default_factory=list)
    created: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def answer(self, method: str, path: str, data: Any, status: int = 200) -> None:
        """Answer every ``method`` request to ``path`` with ``data`` (a status >= 400 makes gidgethub raise)."""
        self.answers[(method, path)] = (status, data)

    def seed(self, path: str, *items: Mapping[str, Any]) -> None:
        """Items already there before the plugin runs, e.g. earlier comments on an issue."""
        self.created.setdefault(path, []).extend({"id": next(self._ids), **item} for item in items)

    @property
    def writes(self) -> list[Request]:
        """Every request but reads: what the plugin changed (or tried to)."""
        return [request for request in self.requests if request.method != "GET"]

    def respond(self, method: str, path: str, data: Any) -> tuple[int, Any]:
        """The status and JSON body for one request (recorded first)."""
        self.requests.append(Request(method, path, data))
        if (method, path) in self.answers:
            return self.answers[(method, path)]
        if method == "GET" and path == "/user":
            return 200, {"login": self.bot_login, "type": "Bot"}
        if method == "GET":
            return 200, self.created.get(path, [])
        item = {"id": next(self._ids), **(data if isinstance(data, Mapping) else {})}
        if method == "POST":
            self.created.setdefault(path, []).append(item)
            return 201, item
        return 200, item

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """hookbot's client transport (bot.github.Transport), answered in-process."""
        path = urlsplit(url).path.removeprefix(urlsplit(API_URL).path) or "/"
        status, data = self.respond(method, path, orjson.loads(body) if body else None)
        return status, JSON_HEADERS, orjson.dumps(data) if data is not None else b""

    def client(self, actions: ActionLog, *, dry_run: bool = False) -> HookbotGitHubAPI:
        """hookbot's GitHub client (or, with ``dry_run``, its dry-run client) talking to this fake."""
        if dry_run:
            return DryRunGitHubAPI(self.send, can_read=True, actions=actions, oauth_token=TOKEN, base_url=API_URL)
        return HookbotGitHubAPI(self.send, actions=actions, oauth_token=TOKEN, base_url=API_URL)


@dataclass
class Done:
    """What one plugin run did."""

    github: FakeGitHub
    actions: list[str]  # one line per side effect, as `hookbot replay` prints them
    config: Any  # what the plugin's setup made of the config

    @property
    def requests(self) -> list[Request]:
        return self.github.requests

    @property
    def writes(self) -> list[Request]:
        return self.github.writes


async def run_plugin_async(
    plugin: ModuleType,
    payload: Mapping[str, Any] | str | Path,
    *,
    event: str,
    config: Mapping[str, Any] | None = None,
    github: FakeGitHub | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    aws: AwsClients | None = None,
    name: str | None = None,
    delivery_id: str | None = None,
) -> Done:
    """Run ``plugin``'s handlers for one delivery of ``event`` (inside a running event loop).

    ``payload`` is a dict or the path of a JSON file as GitHub sent it. ``config`` is the plugin's section;
    ``name`` its config name (default: the module's last name); ``delivery_id`` the X-GitHub-Delivery (default:
    a new one per run), for a plugin that writes it somewhere. A plugin whose setup says it has nothing to do
    under ``config`` is an error here, since the test expects it to run.
    """
    github = github or FakeGitHub()
    name = name or plugin.__name__.rpartition(".")[2]
    loaded = set_up(name, plugin, Setup(name, config or {}, env or {}))
    if loaded is None:
        raise ConfigError(f"plugin {name!r} has nothing to do under this config (its setup returned None)")
    data = payload if isinstance(payload, Mapping) else orjson.loads(Path(payload).read_bytes())  # noqa: ASYNC240 - a test's small fixture
    body = orjson.dumps(data)
    delivery = Delivery(event, delivery_id or f"test-{uuid.uuid4()}", dict(data), body, "replay")
    actions = ActionLog(dry_run=dry_run)
    ctx = Context(
        config=loaded.config,
        log=loaded.log,
        dry_run=dry_run,
        aws=aws or AwsClients(),
        actions=actions,
        bot_login=github.bot_login,
    )
    every = sansio.Event(delivery.payload, event=WILDCARD, delivery_id=delivery.delivery_id)
    plugin_event = Event(delivery)
    gh = github.client(actions, dry_run=dry_run)
    for callback in loaded.callbacks(plugin_event, every):
        await callback(plugin_event, gh, ctx)
    return Done(github, actions.lines, loaded.config)


def run_plugin(
    plugin: ModuleType,
    payload: Mapping[str, Any] | str | Path,
    *,
    event: str,
    config: Mapping[str, Any] | None = None,
    github: FakeGitHub | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    aws: AwsClients | None = None,
    name: str | None = None,
    delivery_id: str | None = None,
) -> Done:
    """:func:`run_plugin_async` for a plain (not async) test."""
    return asyncio.run(
        run_plugin_async(
            plugin,
            payload,
            event=event,
            config=config,
            github=github,
            dry_run=dry_run,
            env=env,
            aws=aws,
            name=name,
            delivery_id=delivery_id,
        )
    )
