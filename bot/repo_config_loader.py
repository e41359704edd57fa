"""Each repository's ``.github/hookbot.yml``: fetched through the contents API, cached, and reported when broken.

The I/O around bot/repo_config.py. For a delivery about ``owner/repo`` the effective config comes from, in turn:
the repository's own file on its default branch, else ``owner/.github``'s file at the same path, else the
server's config alone. A file's ``_extends`` adds one base file under it.

Cost: a file is kept per repository with its ETag and blob sha and asked again at most once a minute, with
``If-None-Match``, so an unchanged file costs a 304, which GitHub does not count against the rate limit; concurrent
deliveries for one repository share one request. A push to the default branch that touches the file drops its
entry at once, so the new file applies from that very push on. In Lambda the cache lives as long as the warm
container does.

A file that does not parse or validate is ignored (the server's config applies), logged on every delivery that
falls back, and reported on the push that changed it: a "hookbot config" check run on the pushed commit, failing
with the error and its line, or passing once a push fixes it (a commit status where the token cannot create
check runs, as a personal access token cannot).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub import BadRequest, RateLimitExceeded

from bot.delivery import Delivery
from bot.github import HookbotGitHubAPI
from bot.repo_config import ServerCeiling, describe_effect, effective_configs, extends_target
from bot.repo_config_yaml import (
    MAX_FILE_BYTES,
    ORG_CONFIG_REPOSITORY,
    REPO_CONFIG_PATH,
    RepoConfigError,
    RepoFile,
    parse_repo_file,
)

log = logging.getLogger("hookbot.repo_config")

REFRESH_SECONDS = 60.0  # how stale a cached file may be before it is asked for again (conditionally)
MAX_CACHED_FILES = 2048  # files kept; past this the oldest goes (each is at most 64 KiB, most a few hundred bytes)
CHECK_NAME = "hookbot config"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub's limit for a commit status description
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(slots=True)
class CachedFile:
    """A repository's file as GitHub last answered for it: parsed, refused (``error``) or absent (both None)."""

    file: RepoFile | None
    error: RepoConfigError | None
    etag: str | None
    checked_at: float


@dataclass(frozen=True, slots=True)
class Resolution:
    """The config each loaded plugin gets for one repository (``OFF`` for one it switched off)."""

    configs: Mapping[str, Any]
    source: str | None = None  # the file that applies; None: the server's config alone
    error: RepoConfigError | None = None  # a file that was ignored, and why
    files: tuple[CachedFile, ...] = ()  # what it was resolved from, to know when to resolve it again


def touches_config(delivery: Delivery) -> bool:
    """Whether ``delivery`` is a push whose commits add, change or remove the repository's config file."""
    payload = delivery.payload
    if delivery.event != "push" or not isinstance(payload.get("repository"), dict) or delivery.repository is None:
        return False
    if not COMMIT_SHA.fullmatch(str(payload.get("after", ""))) or payload.get("deleted"):
        return False
    commits = [commit for commit in payload.get("commits") or [] if isinstance(commit, dict)]
    return any(
        REPO_CONFIG_PATH in (commit.get(kind) or []) for commit in commits for kind in ("added", "modified", "removed")
    )


class RepoConfigs:
    """The per-repository configs of one server: a cache of files, and the resolutions made from them."""

    def __init__(
        self,
        ceiling: ServerCeiling,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._files: dict[str, CachedFile] = {}
        self._resolved: dict[str, Resolution] = {}
        self._fetching: dict[str, asyncio.Future[CachedFile]] = {}
        self._server_only = Resolution({name: entry.config for name, entry in ceiling.loaded.items()})

    async def resolve(self, gh: HookbotGitHubAPI, repository: str) -> Resolution:
        """The effective configs for ``repository`` ("owner/name"); raises only when GitHub cannot be read at all."""
        own = await self._cached_file(gh, repository)
        chosen = own
        if own.file is None and own.error is None and repository.partition("/")[2] != ORG_CONFIG_REPOSITORY:
            chosen = await self._cached_file(gh, f"{repository.partition('/')[0]}/{ORG_CONFIG_REPOSITORY}")
        base = await self._base_of(gh, chosen)
        used = (chosen,) if base is None else (base, chosen)
        previous = self._resolved.get(repository.lower())
        if previous is not None and len(previous.files) == len(used) and all(map(operator.is_, previous.files, used)):
            return previous
        resolution = self._resolve(chosen, base)
        resolution = Resolution(resolution.configs, resolution.source, resolution.error, used)
        self._resolved[repository.lower()] = resolution
        _bound(self._resolved)
        return resolution

    async def _resolve_at(self, gh: HookbotGitHubAPI, repository: str, sha: str) -> Resolution:
        """What the file at commit ``sha`` would resolve to (a push to another branch): read once, not cached."""
        chosen = await self._fetch(gh, repository, None, ref=sha)
        return self._resolve(chosen, await self._base_of(gh, chosen))

    async def _base_of(self, gh: HookbotGitHubAPI, chosen: CachedFile) -> CachedFile | None:
        """The file ``chosen`` extends, when it names one (a bad name is reported by _resolve)."""
        if chosen.file is None:
            return None
        try:
            target = extends_target(chosen.file, chosen.file.source.partition(":")[0])
        except RepoConfigError:
            return None
        return await self._cached_file(gh, target) if target is not None else None

    def _resolve(self, chosen: CachedFile, base: CachedFile | None) -> Resolution:
        if chosen.error is not None:
            return Resolution(self._server_only.configs, error=chosen.error)
        if chosen.file is None:
            return self._server_only
        files = [chosen.file]
        try:
            target = extends_target(chosen.file, chosen.file.source.partition(":")[0])
            if target is not None and base is not None:
                if base.error is not None:
                    raise base.error
                if base.file is None:
                    raise chosen.file.error(f"_extends: {target} has no readable {REPO_CONFIG_PATH}", ("_extends",))
                files.insert(0, base.file)
            return Resolution(effective_configs(files, self.ceiling), source=chosen.file.source)
        except RepoConfigError as exc:
            return Resolution(self._server_only.configs, error=exc)

    def note_push(self, delivery: Delivery) -> bool:
        """True for a push whose commits touch the file, which gets a check run; on the default branch the
        repository's cached file is dropped at once, so the new one applies from this push on."""
        touched = touches_config(delivery)
        if touched and _on_default_branch(delivery.payload):
            self._files.pop(str(delivery.repository).lower(), None)
        return touched

    async def report(self, gh: HookbotGitHubAPI, delivery: Delivery, resolution: Resolution) -> None:
        """A "hookbot config" check run on the pushed commit saying whether its file is valid (else a status).

        ``resolution`` is the repository's, which a push to the default branch has just made; a push to another
        branch (a pull request's) is checked against the file at its own commit, so a mistake shows before merging.
        """
        repository, sha = str(delivery.repository), str(delivery.payload["after"])
        if not _on_default_branch(delivery.payload):
            resolution = await self._resolve_at(gh, repository, sha)
        error = resolution.error
        if error is None:
            conclusion, title = "success", f"{REPO_CONFIG_PATH} is valid"
            effect = describe_effect(resolution.configs, self.ceiling)
            summary = f"{resolution.source}: {effect}" if resolution.source else "No file: the server's config applies"
        else:
            conclusion, title = "failure", f"{REPO_CONFIG_PATH} is not valid; the server's config applies"
            summary = str(error)
        output: dict[str, Any] = {"title": title, "summary": summary}
        if error is not None and error.line and error.source == f"{repository}:{REPO_CONFIG_PATH}":
            output["annotations"] = [
                {
                    "path": REPO_CONFIG_PATH,
                    "start_line": error.line,
                    "end_line": error.line,
                    "annotation_level": "failure",
                    "message": error.message,
                }
            ]
        check_run = {
            "name": CHECK_NAME,
            "head_sha": sha,
            "status": "completed",
            "conclusion": conclusion,
            "output": output,
        }
        try:
            await gh.post(f"/repos/{repository}/check-runs", data=check_run)
        except BadRequest as exc:
            if isinstance(exc, RateLimitExceeded) or int(exc.status_code) not in (403, 404):
                raise
            # Only a GitHub App can create check runs; a personal access token gets 403 (or 404 without access).
            status = {
                "state": conclusion,
                "context": CHECK_NAME,
                "description": (summary if error is None else str(error))[:STATUS_DESCRIPTION_LIMIT],
            }
            await gh.post(f"/repos/{repository}/statuses/{sha}", data=status)

    async def _cached_file(self, gh: HookbotGitHubAPI, repository: str) -> CachedFile:
        key = repository.lower()
        cached = self._files.get(key)
        if cached is not None and self.clock() - cached.checked_at < self.refresh_seconds:
            return cached
        running = self._fetching.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[CachedFile] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            fetched = await self._fetch(gh, repository, cached)
            future.set_result(fetched)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an error nobody else awaited is not logged as "never retrieved"
            raise
        finally:
            del self._fetching[key]
        self._files[key] = fetched
        _bound(self._files)
        return fetched

    async def _fetch(
        self, gh: HookbotGitHubAPI, repository: str, cached: CachedFile | None, *, ref: str | None = None
    ) -> CachedFile:
        now = self.clock()
        path = f"/repos/{repository}/contents/{REPO_CONFIG_PATH}"
        try:
            status, headers, data = await gh.get_conditional(
                f"{path}?ref={ref}" if ref else path, cached.etag if cached else None
            )
        except BadRequest as exc:
            if isinstance(exc, RateLimitExceeded) or int(exc.status_code) != 403:
                raise
            log.warning(
                "cannot read %s in %s (%s); the App needs the contents: read permission",
                REPO_CONFIG_PATH,
                repository,
                exc,
            )
            return CachedFile(None, None, None, now)
        if status == 304 and cached is not None:
            cached.checked_at = now
            return cached
        if status == 404 or not isinstance(data, dict):
            return CachedFile(None, None, None, now)
        etag = headers.get("etag")
        source = f"{repository}:{REPO_CONFIG_PATH}"
        try:
            return CachedFile(_parse(data, source), None, etag, now)
        except RepoConfigError as exc:
            return CachedFile(None, exc, etag, now)


def _on_default_branch(payload: Mapping[str, Any]) -> bool:
    repository = payload.get("repository") or {}
    return payload.get("ref") == f"refs/heads/{repository.get('default_branch')}"


def _parse(data: Mapping[str, Any], source: str) -> RepoFile:
    """The contents API's answer for a file as a parsed RepoFile; the size is checked before anything is decoded."""
    size = data.get("size")
    if not isinstance(size, int) or data.get("type") != "file":
        raise RepoConfigError("is not a file", source=source)
    if size > MAX_FILE_BYTES:
        raise RepoConfigError(f"the file is {size} bytes; hookbot reads at most {MAX_FILE_BYTES}", source=source)
    try:
        text = base64.b64decode(str(data.get("content", "")))
    except (binascii.Error, ValueError):
        raise RepoConfigError("GitHub's answer held no readable content", source=source) from None
    return parse_repo_file(text, source, sha=data.get("sha"))


def _bound(cache: dict[str, Any]) -> None:
    while len(cache) > MAX_CACHED_FILES:
        del cache[next(iter(cache))]
