"""Plugin discovery through the ``hookbot.handlers`` entry-point group.

A plugin is a module with a module-level ``router = gidgethub.routing.Router()`` (the python/bedevere shape) and,
optionally, ``configure(section) -> object`` that checks its config section at start and returns what its
handlers receive as ``ctx.config``. A plugin that hands parts of hookbot's environment on to something it runs
(exec passes ``PATH`` and an allow-list to its child processes) declares ``configure(section, *, env)`` and gets
the snapshot bot/config.py read, so no plugin reads the environment itself. A plugin that is installed but
has nothing to do under this config (audit without a destination, exec without hooks, lambda_deploy without
rules) returns ``NOT_SET_UP`` from ``configure()`` and is not loaded: otherwise it would still run, log and be
timed on every delivery, which for two idle built-ins was over a quarter of a delivery's CPU (BENCHMARKS.md).
The built-ins are registered in pyproject.toml exactly as a third-party package registers its own, so nothing
here treats them specially.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gidgethub.routing import Router

from bot.config import ConfigError
from bot.repo_config import RepositorySettings

ENTRY_POINT_GROUP = "hookbot.handlers"

log = logging.getLogger("hookbot.plugins")


class NotSetUp:
    """The type of ``NOT_SET_UP``: an explicit value, so that a ``configure()`` returning None still loads."""

    def __repr__(self) -> str:
        return "NOT_SET_UP"


NOT_SET_UP = NotSetUp()


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    router: Router
    config: Any
    log: logging.Logger  # handlers log through ctx.log, named hookbot.handlers.<name>
    # What a repository's .github/hookbot.yml may set (the module's ``repository_settings``); None: nothing.
    repository_settings: RepositorySettings[Any] | None = None


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugins(
    enabled: Sequence[str] | None, sections: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Plugin]:
    """Load the enabled plugins (all installed ones when ``enabled`` is None) and configure each."""
    available = installed_plugins()
    names = sorted(available) if enabled is None else list(enabled)
    plugins = []
    for name in names:
        entry_point = available.get(name)
        if entry_point is None:
            raise ConfigError(
                f"handler {name!r} is enabled in config but not installed; installed: {', '.join(sorted(available))}"
            )
        module = entry_point.load()
        router = getattr(module, "router", None)
        if not isinstance(router, Router):
            raise ConfigError(f"plugin {name!r} ({entry_point.value}) has no module-level gidgethub Router 'router'")
        section = sections.get(name, {})
        configure = getattr(module, "configure", None)
        try:
            config = _configure(configure, section, env or {}) if callable(configure) else section
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"[{name}] config is not valid: {exc}") from None
        if config is NOT_SET_UP:
            log.info("plugin %s is installed but has nothing to do under this config; not loaded", name)
            continue
        settings = getattr(module, "repository_settings", None)
        if settings is not None and not isinstance(settings, RepositorySettings):
            raise ConfigError(f"plugin {name!r}: repository_settings must be a bot.repo_config.RepositorySettings")
        plugins.append(Plugin(name, router, config, logging.getLogger(f"hookbot.handlers.{name}"), settings))
    return plugins


def _configure(configure: Any, section: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Call ``configure(section)``, adding ``env=`` only for a plugin that declares it wants the environment."""
    if "env" in inspect.signature(configure).parameters:
        return configure(section, env=env)
    return configure(section)
