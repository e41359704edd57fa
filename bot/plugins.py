"""Plugin discovery through the ``hookbot.handlers`` entry-point group.

A plugin is a module with a module-level ``router = gidgethub.routing.Router()`` (the python/bedevere shape) and,
optionally, ``SETTINGS = bot.config.Section(...)`` declaring its config section's keys (checked before anything
else, so a typo gets "did you mean"), and ``configure(section) -> object`` that checks its config section at
start and returns what its handlers receive as ``ctx.config``. A plugin that hands parts of hookbot's environment
on to something it runs (exec passes ``PATH`` and an allow-list to its child processes) declares
``configure(section, *, env)`` and gets the snapshot bot/config.py read, so no plugin reads the environment
itself. A plugin that is installed but has nothing to do under this config (audit without a destination, exec
without hooks, lambda_deploy without rules) returns ``NOT_SET_UP`` from ``configure()`` and is not loaded:
otherwise it would still run, log and be timed on every delivery, which for two idle built-ins was over a
quarter of a delivery's CPU (BENCHMARKS.md). The built-ins are registered in pyproject.toml exactly as a
third-party package registers its own, so nothing here treats them specially.

A plugin that can work without GitHub credentials says so with a module-level ``needs_github = False``, or
``needs_github(config) -> bool`` when that depends on its config: live mode without credentials refuses to
start only when a loaded plugin needs them.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gidgethub.routing import Router

from bot.config import ConfigError, Section, check_top_level, closest
from bot.repo_config import RepositorySettings, SettingError

ENTRY_POINT_GROUP = "hookbot.handlers"



class NotSetUp:
    """The type of ``NOT_SET_UP``: an explicit value, so that a ``configure()`` returning None still loads."""

    def __repr__(self) -> str:
        return "NOT_SET_UP"


NOT_SET_UP = NotSetUp()


class HandlerError(Exception):
    """A handler failure its message fully explains (a command's exit status, a missing artifact): logged as one
    line, without the traceback that an unexpected error gets."""


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    router: Router
    config: Any
    log: logging.Logger  # handlers log through ctx.log, named hookbot.handlers.<name>
    # What a repository's .github/hookbot.yml may set (the module's ``repository_settings``); None: nothing.
    repository_settings: RepositorySettings[Any] | None = None
    needs_github: bool = True  # acts on GitHub under this config, so live mode needs credentials


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


@dataclass(frozen=True, slots=True)
class PluginReport:
    """What loading found: the plugins that run, and those installed but not loaded with the reason."""

    loaded: list[Plugin]
    not_loaded: dict[str, str]


def load_plugins(
    enabled: Sequence[str] | None,
    sections: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
) -> list[Plugin]:
    """Load the enabled plugins (all installed ones when ``enabled`` is None) and configure each."""
    return load_plugin_report(enabled, sections, env, config_file=config_file).loaded


def load_plugin_report(
    enabled: Sequence[str] | None,
    sections: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
) -> PluginReport:
    """Check the plugin sections against the installed plugins, then load and configure the enabled ones."""
    where = str(config_file) if config_file else "config"
    available = installed_plugins()
    check_top_level(sections, available, where)
    names = sorted(available) if enabled is None else list(enabled)
    plugins = []
    not_loaded = {name: "not in [hookbot] handlers" for name in sorted(set(available) - set(names))}
    for name in names:
        entry_point = available.get(name)
        if entry_point is None:
            guess = closest(name, available)
            raise ConfigError(
                f"{where}: handler {name!r} is enabled in config but not installed"
                + (f"; did you mean `{guess}`?" if guess else "")
                + f" (installed: {', '.join(sorted(available))})"
            )
        module = entry_point.load()
        router = getattr(module, "router", None)
        if not isinstance(router, Router):
            raise ConfigError(f"plugin {name!r} ({entry_point.value}) has no module-level gidgethub Router 'router'")
        section = sections.get(name, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: [{name}] must be a table")
        declared = getattr(module, "SETTINGS", None)
        if isinstance(declared, Section):
            declared.check(section, where)
        configure = getattr(module, "configure", None)
        try:
            config = _configure(configure, section, env or {}) if callable(configure) else section
        except SettingError as exc:
            raise ConfigError(f"{where}: [{name}] {exc.key} {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{where}: [{name}] {exc}") from None
        if config is NOT_SET_UP:
            not_loaded[name] = "nothing to do under this config"
            continue
        settings = getattr(module, "repository_settings", None)
        if settings is not None and not isinstance(settings, RepositorySettings):
            raise ConfigError(f"plugin {name!r}: repository_settings must be a bot.repo_config.RepositorySettings")
        needs = getattr(module, "needs_github", True)
        needs_github = bool(needs(config)) if callable(needs) else bool(needs)
        plugins.append(
            Plugin(name, router, config, logging.getLogger(f"hookbot.handlers.{name}"), settings, needs_github)
        )
    return PluginReport(plugins, not_loaded)


def _configure(configure: Any, section: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Call ``configure(section)``, adding ``env=`` only for a plugin that declares it wants the environment."""
    if "env" in inspect.signature(configure).parameters:
        return configure(section, env=env)
    return configure(section)
