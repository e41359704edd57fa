"""Dispatch: de-duplicate, route to each enabled plugin, isolate failures, log every outcome.

Each plugin's success is remembered under ``<delivery id>/<plugin>``, so when a delivery is retried or
redelivered after a partial failure only the plugins that failed run again; the delivery as a whole is marked
done once every plugin has succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import ClientError
from gidgethub import GitHubException, sansio

from bot.aws import AwsClients
from bot.context import ActionLog, StepMarks
from bot.dedupe import DedupeStore
from bot.delivery import WILDCARD, Delivery
from bot.github import GitHubClients, is_permanent
from bot.logs import current_delivery
from bot.plugin import Context, Event, HandlerError
from bot.plugins import Plugin
from bot.records import frozen
from bot.repo_config import OFF

if TYPE_CHECKING:
    from bot.repo_config_loader import RepoConfigs

log = logging.getLogger("hookbot.dispatch")

# Failures whose message says all there is to say (GitHub's answer, a dropped connection, a handler's own
# explanation): one line. Anything else is a bug and its line carries the traceback.
EXPLAINED_ERRORS = (HandlerError, GitHubException, ClientError, TimeoutError)


Status = Literal["ok", "failed", "skipped"]
ROUTED_CACHE_SIZE = 256
REPORT_KEY = "hookbot-config"  # the dedupe key suffix that says a delivery's config check run was made


@frozen
class Outcome:
    """How one plugin's handlers did with one delivery."""

    handler: str
    status: Status
    ms: float
    error: str | None = None
    permanent: bool = False  # retrying cannot help (e.g. GitHub answered 404 or 422)


@dataclass(slots=True)
class DispatchResult:
    """What dispatching one delivery did: each plugin's outcome and the actions taken (or, dry-run, described)."""

    delivery_id: str
    duplicate: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(outcome.status != "failed" for outcome in self.outcomes)

    @property
    def summary(self) -> str:
        """The delivery's outcome in one word: duplicate, failed, done, or unhandled (no plugin had work)."""
        if self.duplicate:
            return "duplicate"
        if not self.ok:
            return "failed"
        return "done" if any(outcome.status == "ok" for outcome in self.outcomes) else "unhandled"


class Dispatcher:
    def __init__(
        self,
        plugins: Sequence[Plugin],
        *,
        github: GitHubClients,
        dedupe: DedupeStore,
        aws: AwsClients,
        dry_run: bool,
        repo_configs: RepoConfigs | None = None,
    ) -> None:
        self.plugins = list(plugins)
        self.github = github
        self.dedupe = dedupe
        self.aws = aws
        self.dry_run = dry_run
        self.repo_configs = repo_configs
        self._routed: dict[str, bool] = {}  # may_want's answer from the routes, by event name (plugins are fixed)

    def routes(self, event: Event) -> list[tuple[Plugin, list[Callable[..., Awaitable[None]]]]]:
        """Each loaded plugin with its handlers for ``event`` (none for a plugin that does not want it)."""
        every = sansio.Event(event.data, event=WILDCARD, delivery_id=event.delivery_id)
        return [(plugin, plugin.callbacks(event, every)) for plugin in self.plugins]

    def wants(self, delivery: Delivery) -> bool:
        """Whether any loaded plugin has a handler for the delivery's event and action (that it wants), or the
        delivery is a push that changes a repository's config (it gets a check run).

        Many webhooks send everything and GitHub Apps get floods of check and workflow events: a delivery nobody
        wants is answered at the door, without the journal or de-duplication.
        """
        if any(callbacks for _, callbacks in self.routes(Event(delivery))):
            return True
        from bot.repo_config_loader import touches_config

        return self.repo_configs is not None and touches_config(delivery)

    def may_want(self, event_name: str, body: bytes) -> bool:
        """Whether any loaded plugin could want a delivery of ``event_name``, judged before its ``body`` is parsed.

        False lets the door answer a flood of, say, ``check_run`` deliveries right after the signature check,
        without parsing them: no plugin routes that event at all (nor every event), and it is not a push that
        could change a repository's config (its commits can name the file only if the body does). True means
        "parse it and ask :meth:`wants`".
        """
        routed = self._routed.get(event_name)
        if routed is None:
            routed = any(plugin.may_route(event_name) for plugin in self.plugins)
            if len(self._routed) < ROUTED_CACHE_SIZE:  # event names are checked, but the cache need not grow with them
                self._routed[event_name] = routed
        if routed:
            return True
        if event_name != "push" or self.repo_configs is None:
            return False
        from bot.repo_config_yaml import REPO_CONFIG_PATH  # loaded with repo_configs already

        return REPO_CONFIG_PATH.rpartition("/")[2].encode() in body

    def dedupe_key(self, key: str) -> str:
        """De-dup entries carry the mode: what a dry-run did is not done for a live run (the two share a table)."""
        return f"dry-run/{key}" if self.dry_run else key

    def _keys(self, delivery: Delivery) -> list[str]:
        return [self.dedupe_key(key) for key in (delivery.delivery_id, *delivery.replay_keys)]

    async def dispatch(self, delivery: Delivery, *, claim_lifetime: float | None = None) -> DispatchResult:
        """Run every enabled plugin on ``delivery`` once; never raises for a handler's failure.

        ``claim_lifetime``: seconds after which the claim lapses if this run never finishes (Lambda passes the
        invocation's remaining time); by default the store's claim timeout.
        """
        token = current_delivery.set(delivery.delivery_id)
        started = time.perf_counter()
        result = DispatchResult(delivery.delivery_id)
        try:
            event = Event(delivery)
            routes = self.routes(event)
            config_pushed = self.repo_configs is not None and self.repo_configs.note_push(delivery)
            if not config_pushed and not any(callbacks for _, callbacks in routes):
                # Wanted by no plugin (GitHub sends many kinds of events): nothing to claim, remember, or ask
                # GitHub; the same answer however often it comes.
                result.outcomes = [Outcome(plugin.name, "skipped", 0.0) for plugin, _ in routes]
                return result
            if not await self._claim(delivery, claim_lifetime):
                result.duplicate = True
                return result
            actions = ActionLog(dry_run=self.dry_run)
            try:
                gh = await self.github.for_installation(delivery.installation_id, actions)
                # Only GitHub events can be the bot's own; an S3 upload must not need GitHub to be reachable.
                bot_login = await self.github.bot_login() if delivery.from_github else None
            except Exception as exc:
                await self._release(delivery)
                log.exception("cannot make a GitHub client", extra={"fields": _fields(delivery)})
                result.outcomes.append(Outcome("github-auth", "failed", 0.0, f"{type(exc).__name__}: {exc}"))
                return result
            try:
                configs = await self._repository_configs(gh, delivery, config_pushed)
            except Exception as exc:
                # Applying the server's config instead could undo what the repository switched off: retry later.
                await self._release(delivery)
                log.exception("cannot read the repository's config", extra={"fields": _fields(delivery)})
                result.outcomes.append(Outcome("repo-config", "failed", 0.0, f"{type(exc).__name__}: {exc}"))
                return result
            result.outcomes = await self._run_plugins(routes, event, gh, delivery, actions, bot_login, configs)
            result.actions = actions.lines
            if result.ok:
                await self._mark_done(delivery)
                # The per-plugin marks serve only retries of a partly failed delivery; a finished one needs none.
                for outcome in result.outcomes:
                    if outcome.status == "ok":
                        await self.dedupe.forget(f"{self.dedupe_key(delivery.delivery_id)}/{outcome.handler}")
                if config_pushed:
                    await self.dedupe.forget(f"{self.dedupe_key(delivery.delivery_id)}/{REPORT_KEY}")
            else:
                await self._release(delivery)
            return result
        finally:
            # One line per delivery at its end, whatever happened: a first test push never seems to vanish.
            summary = result.summary
            fields = _fields(delivery)
            fields["outcome"] = summary
            fields["ms"] = _ms(started)
            if handlers := [o.handler for o in result.outcomes if o.status != "skipped"]:
                fields["handlers"] = ",".join(handlers)
            level = logging.WARNING if summary == "failed" else logging.INFO
            # The text made here, not from "%s" and args: a record with one argument pays an ABC isinstance check.
            log.log(level, f"delivery {summary}", extra={"fields": fields})
            current_delivery.reset(token)

    async def _claim(self, delivery: Delivery, lifetime: float | None) -> bool:
        """Claim the delivery id and every replay key (its body's SHA-256, its SNS message): all or nothing.

        A key already taken means the same delivery is done or running, under this id or another one.
        """
        claimed: list[str] = []
        keys = self._keys(delivery)
        for key in keys:
            if not await self.dedupe.claim(key, lifetime=lifetime):
                for taken in claimed:
                    await self.dedupe.release(taken)
                what = "delivery" if key == keys[0] else "the same body under another delivery id"
                log.info("%s already handled or in progress; skipped", what, extra={"fields": _fields(delivery)})
                return False
            claimed.append(key)
        return True

    async def _release(self, delivery: Delivery) -> None:
        for key in self._keys(delivery):
            await self.dedupe.release(key)

    async def _mark_done(self, delivery: Delivery) -> None:
        for key in self._keys(delivery):
            await self.dedupe.mark_done(key)

    async def _repository_configs(self, gh: Any, delivery: Delivery, config_pushed: bool) -> Mapping[str, Any]:
        """Each plugin's config for the delivery's repository (.github/hookbot.yml under the server's ceiling).

        Empty (every plugin keeps the server's config) for deliveries about no repository, such as S3 uploads.
        On a push that changed the file, the verdict also goes on the pushed commit as a check run, once.
        """
        if self.repo_configs is None or not delivery.from_github or delivery.repository is None:
            return {}
        resolution = await self.repo_configs.resolve(gh, delivery.repository)
        if resolution.error is not None:
            log.warning(
                "repository config ignored, the server's config applies: %s",
                resolution.error,
                extra={"fields": _fields(delivery)},
            )
        report_key = f"{self.dedupe_key(delivery.delivery_id)}/{REPORT_KEY}"
        if config_pushed and not await self.dedupe.is_done(report_key):
            try:
                await self.repo_configs.report(gh, delivery, resolution)
                await self.dedupe.mark_done(report_key)
            except Exception:
                log.warning(
                    "cannot report the repository config's check", exc_info=True, extra={"fields": _fields(delivery)}
                )
        return resolution.configs

    async def _run_plugins(
        self,
        routes: list[tuple[Plugin, list[Callable[..., Awaitable[None]]]]],
        event: Event,
        gh: object,
        delivery: Delivery,
        actions: ActionLog,
        bot_login: str | None,
        configs: Mapping[str, Any],
    ) -> list[Outcome]:
        """Run the plugins that have callbacks for this event side by side; the rest are skipped without a task.

        A task per plugin costs more than many handlers' whole work, so plugins with nothing to do get none,
        and a lone plugin with work is awaited directly. Outcomes keep the plugins' order.
        """
        outcomes: list[Outcome | None] = []
        runs: list[Coroutine[object, object, Outcome]] = []
        for plugin, callbacks in routes:
            config = configs.get(plugin.name, plugin.config)
            if callbacks and config is not OFF:
                runs.append(self._run_plugin(plugin, config, callbacks, event, gh, delivery, actions, bot_login))
                outcomes.append(None)
            else:
                outcomes.append(Outcome(plugin.name, "skipped", 0.0))
        finished = iter([await runs[0]] if len(runs) == 1 else await asyncio.gather(*runs))
        return [outcome or next(finished) for outcome in outcomes]

    async def _run_plugin(
        self,
        plugin: Plugin,
        config: Any,
        callbacks: list[Callable[..., Awaitable[None]]],
        event: Event,
        gh: object,
        delivery: Delivery,
        actions: ActionLog,
        bot_login: str | None,
    ) -> Outcome:
        key = f"{self.dedupe_key(delivery.delivery_id)}/{plugin.name}"
        if await self.dedupe.is_done(key):
            return Outcome(plugin.name, "skipped", 0.0)
        steps = StepMarks(self.dedupe, key)
        ctx = Context(
            config=config,
            log=plugin.log,
            dry_run=self.dry_run,
            aws=self.aws,
            actions=actions,
            bot_login=bot_login,
            steps=steps,
        )
        started = time.perf_counter()
        try:
            for callback in callbacks:
                await callback(event, gh, ctx)
        except Exception as exc:
            outcome = Outcome(
                plugin.name, "failed", _ms(started), f"{type(exc).__name__}: {exc}", permanent=is_permanent(exc)
            )
            explained = isinstance(exc, EXPLAINED_ERRORS)
            log.warning("handler failed", exc_info=not explained, extra={"fields": _fields(delivery, outcome)})
            return outcome
        outcome = Outcome(plugin.name, "ok", _ms(started))
        await self.dedupe.mark_done(key)
        if steps.known:  # the plugin's mark now covers its steps (written first: a crash here loses nothing)
            await steps.forget()
        if log.isEnabledFor(logging.DEBUG):  # its fields cost more than the check, and the line is seldom on
            log.debug("handler finished", extra={"fields": _fields(delivery, outcome)})
        return outcome


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _fields(delivery: Delivery, outcome: Outcome | None = None) -> dict[str, object]:
    fields: dict[str, object] = {
        "delivery": delivery.delivery_id,
        "event": delivery.event,
        "action": delivery.action,
        "repository": delivery.repository,
        "source": delivery.source,
    }
    if outcome is not None:
        fields.update(handler=outcome.handler, outcome=outcome.status, ms=outcome.ms)
        if outcome.error:
            fields["error"] = outcome.error
    return fields
