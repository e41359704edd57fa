"""Recover deliveries that never reached hookbot: ask GitHub to send failed ones again.

GitHub does not retry a failed webhook delivery by itself. It does keep a log of every attempt (for a few days)
and redelivers on request, so a delivery lost while hookbot was down, restarting, or answering 503 can be
recovered: list the hook's deliveries, find the events (GUIDs) whose latest attempt in the window failed and
that never succeeded, and ask for one more attempt of each. A redelivery keeps its GUID, so if the first copy
did arrive after all, de-duplication absorbs the second.

Repository hooks are listed with the token (or the App's installation token for that repository); the GitHub
App's own webhook with the App's JWT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gidgethub import apps

from bot.config_schema import ConfigError
from bot.context import ActionLog
from bot.github import HookbotGitHubAPI
from bot.runtime import Runtime

log = logging.getLogger("hookbot.redeliver")

PAGE = "?per_page=100"


@dataclass(frozen=True, slots=True)
class Hook:
    """Where a hook's deliveries live: ``/repos/{owner}/{repo}/hooks/{id}`` or ``/app/hook``."""

    path: str
    repository: str | None = None  # owner/repo for a repository hook

    @classmethod
    def parse(cls, text: str) -> Hook:
        repository, sep, hook_id = text.rpartition(":")
        if not sep or repository.count("/") != 1 or not hook_id.isdigit():
            raise ConfigError(f'[github] hooks entries look like "owner/repo:HOOK_ID", not {text!r}')
        return cls(f"/repos/{repository}/hooks/{hook_id}", repository)


@dataclass(slots=True)
class RedeliverReport:
    checked: int = 0
    redelivered: list[str] = field(default_factory=list)  # GUIDs
    errors: list[str] = field(default_factory=list)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _succeeded(attempt: Mapping[str, Any]) -> bool:
    code = attempt.get("status_code")
    return isinstance(code, int) and 200 <= code < 300


def to_redeliver(attempts: Iterable[Mapping[str, Any]], since: float) -> list[Mapping[str, Any]]:
    """The latest attempt of each GUID that failed at or after ``since`` and has no successful attempt.

    Pure logic over GitHub's delivery list items (``id``, ``guid``, ``delivered_at``, ``status_code``,
    ``redelivery``); a status code of 0 means GitHub got no answer at all (timeout, connection refused).
    """
    by_guid: dict[str, list[Mapping[str, Any]]] = {}
    for attempt in attempts:
        by_guid.setdefault(str(attempt.get("guid")), []).append(attempt)
    chosen = []
    for tries in by_guid.values():
        if any(_succeeded(t) for t in tries):
            continue
        latest = max(tries, key=lambda t: (_epoch(str(t["delivered_at"])), int(t["id"])))
        if _epoch(str(latest["delivered_at"])) >= since:
            chosen.append(latest)
    return sorted(chosen, key=lambda t: _epoch(str(t["delivered_at"])))


@dataclass(frozen=True, slots=True)
class Auth:
    jwt: str | None = None
    oauth_token: str | None = None


async def _recent(gh: HookbotGitHubAPI, path: str, since: float, auth: Auth) -> AsyncIterator[Mapping[str, Any]]:
    """The hook's delivery attempts, newest first, stopping at the first one older than ``since``."""
    async for attempt in gh.getiter(f"{path}/deliveries{PAGE}", jwt=auth.jwt, oauth_token=auth.oauth_token):
        if _epoch(str(attempt["delivered_at"])) < since:
            return
        yield attempt


async def redeliver(runtime: Runtime, since_seconds: float, *, dry_run: bool = False) -> RedeliverReport:
    """Ask GitHub to redeliver what failed in the last ``since_seconds`` on every configured hook."""
    settings = runtime.settings.github
    hooks = [Hook.parse(text) for text in settings.hooks]
    if not hooks:
        if not settings.app_id:
            raise ConfigError(
                'nothing to redeliver from: set [github] hooks = ["owner/repo:HOOK_ID"] with GITHUB_TOKEN, '
                "or GitHub App credentials (GITHUB_APP_ID + GITHUB_PRIVATE_KEY) for the App's webhook"
            )
        hooks = [Hook("/app/hook")]
    since = time.time() - since_seconds
    report = RedeliverReport()
    actions = ActionLog(dry_run=dry_run)
    gh = HookbotGitHubAPI(runtime.github.transport(), actions=actions, base_url=settings.api_url)
    for hook in hooks:
        try:
            auth = await _auth(runtime, gh, hook)
            attempts = [a async for a in _recent(gh, hook.path, since, auth)]
            report.checked += len(attempts)
            for attempt in to_redeliver(attempts, since):
                guid = str(attempt["guid"])
                url = f"{hook.path}/deliveries/{attempt['id']}/attempts"
                if dry_run:
                    actions.record(f"POST {url} (redeliver {attempt.get('event')} {guid})")
                else:
                    await gh.post(url, data=b"", jwt=auth.jwt, oauth_token=auth.oauth_token)
                    log.info("asked GitHub to redeliver %s", guid, extra={"fields": {"hook": hook.path}})
                report.redelivered.append(guid)
        except Exception as exc:
            log.warning("cannot redeliver for %s: %s", hook.path, exc)
            report.errors.append(f"{hook.path}: {type(exc).__name__}: {exc}")
    return report


async def _auth(runtime: Runtime, gh: HookbotGitHubAPI, hook: Hook) -> Auth:
    """The credentials for one hook: the App's JWT, the token, or the installation token for the repository."""
    settings = runtime.settings.github
    if hook.repository is None or (settings.app_id and not settings.token):
        if not (settings.app_id and settings.private_key):
            raise ConfigError("listing the App's webhook deliveries needs GITHUB_APP_ID and GITHUB_PRIVATE_KEY")
        jwt = apps.get_jwt(app_id=settings.app_id, private_key=settings.private_key)
        if hook.repository is None:
            return Auth(jwt=jwt)
        installation = await gh.getitem(f"/repos/{hook.repository}/installation", jwt=jwt)
        return Auth(oauth_token=await runtime.github.installation_token(int(installation["id"])))
    if not settings.token:
        raise ConfigError("listing a repository hook's deliveries needs GITHUB_TOKEN (admin:repo_hook scope)")
    return Auth(oauth_token=settings.token)


async def redeliver_periodically(runtime: Runtime, every: float) -> None:
    """`[github] redeliver_every` in `serve`: a sweep at start, then one per period, each over two periods.

    The window overlaps so that nothing falls between two sweeps; GUIDs asked for twice are absorbed by dedupe.
    """
    while True:
        try:
            report = await redeliver(runtime, 2 * every, dry_run=runtime.dispatcher.dry_run)
            if report.redelivered or report.errors:
                log.info(
                    "redelivery sweep: %d asked again, %d errors",
                    len(report.redelivered),
                    len(report.errors),
                    extra={"fields": {"checked": report.checked}},
                )
        except ConfigError as exc:
            log.warning("redelivery sweep disabled: %s", exc)
            return
        await asyncio.sleep(every)
