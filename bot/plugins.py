"""Finding, choosing and setting up plugins (the contract a plugin sees is bot/plugin.py).

Plugins are found through the ``hookbot.handlers`` entry-point group; the built-ins are registered in
pyproject.toml exactly as a third-party package registers its own. What loads is opt-in beyond the built-ins:
with no ``[hookbot] handlers`` the four built-ins load, and any other installed plugin only when that list names
it, because a plugin gets every event and acts with the bot's GitHub token, and merely installing a package
(a dependency of a dependency, a test tool) must not hand it those. A plugin file or package can also be loaded
by path (``--plugin ./labeler.py``) for a first try, before it is packaged.

A built-in with nothing to do under this config (audit without a destination, exec without hooks, lambda_deploy
without rules) returns None from ``setup`` and is not loaded: otherwise it would still run, log and be timed on
every delivery, which for two idle built-ins was over a quarter of a delivery's CPU (BENCHMARKS.md).

Before any ``setup`` runs, the config's sections are checked against the core's and the plugins' names, and a
plugin's section against its declared ``SETTINGS`` (bot.config_schema.Section), so a typo stops hookbot with the file,
the key and the closest valid name. What was not loaded, and why, goes into the report the start-up summary logs
once (``hookbot serve``), rather than a log line from every command that loads plugins.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router

from bot.config import check_top_level
from bot.config_schema import ConfigError, Section, closest
from bot.delivery import WILDCARD
from bot.entry_points import GROUP, EntryPoint, entry_points
from bot.plugin import Event, Setup
from bot.records import record
from bot.repo_config import RepositorySettings, SettingError

ENTRY_POINT_GROUP = GROUP
BUILTIN_DISTRIBUTION = "hookbot"  # plugins shipped by this distribution load unless [hookbot] handlers says otherwise


@record
class Plugin:
    """A loaded plugin: its router, the config its ``setup`` returned, and what the dispatcher asks of it."""

    name: str
    router: Router
    config: Any
    log: logging.Logger  # handlers log through ctx.log, named hookbot.handlers.<name>
    # What a repository's .github/hookbot.yml may set (the module's ``repository_settings``); None: nothing.
    repository_settings: RepositorySettings[Any] | None = None
    # The module's ``wants(config, event)``: whether it wants a delivery its router would route (audit's
    # ``events`` setting); None: every delivery its router routes.
    wants: Callable[[Any, Event], bool] | None = None
    needs_github: bool = True  # acts on GitHub under this config, so live mode needs credentials

    def may_route(self, event_name: str) -> bool:
        """Whether the router could route some delivery of ``event_name``, known before its payload is read.

        False only when no route names the event (with or without an action) and none is registered for every
        event (``"*"``); ``wants`` can only turn deliveries down, so such a delivery has no handler here.
        """
        return could_route(self.router, event_name)

    def callbacks(self, event: Event, every: sansio.Event) -> list[Callable[..., Awaitable[None]]]:
        """This plugin's handlers for ``event`` and for ``"*"`` (``every``: the same event under that name), in a
        stable order (gidgethub returns a set); none when its ``wants`` turns the delivery down."""
        if self.wants is not None and not self.wants(self.config, event):
            return []
        found = self.router.fetch(event) | self.router.fetch(every)
        if len(found) < 2:  # the common case: one handler or none, already in order
            return list(found)
        return sorted(found, key=lambda callback: getattr(callback, "__qualname__", ""))


def could_route(router: Router, event_name: str) -> bool:
    """Whether ``router`` has a route for ``event_name`` (with or without a payload detail such as ``action``) or
    for every event.

    gidgethub keeps its routes in two tables keyed by event name and offers no public view of them; its own
    ``Router(*others)`` reads them this way. Should a gidgethub release rename them, the answer is True,
    "perhaps", and every delivery is read and asked about as before (tests/bot/test_unwanted.py pins both).
    """
    shallow = getattr(router, "_shallow_routes", None)
    deep = getattr(router, "_deep_routes", None)
    if not isinstance(shallow, dict) or not isinstance(deep, dict):
        return True
    return event_name in shallow or event_name in deep or WILDCARD in shallow or WILDCARD in deep


@record
class PluginReport:
    """What loading found: the plugins that run, and those installed but not loaded with the reason."""

    loaded: list[Plugin]
    not_loaded: dict[str, str]


def installed_plugins() -> dict[str, EntryPoint]:
    """Every plugin an installed distribution registers, by name (bot/entry_points.py reads them)."""
    return {ep.name: ep for ep in entry_points(ENTRY_POINT_GROUP)}


def builtin_names(available: Mapping[str, EntryPoint]) -> list[str]:
    """The plugins shipped by hookbot's own distribution."""
    return sorted(name for name, ep in available.items() if ep.distribution == BUILTIN_DISTRIBUTION)


def load_plugins(
    enabled: Sequence[str] | None,
    sections: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    paths: Sequence[Path] = (),
    *,
    config_file: Path | None = None,
) -> list[Plugin]:
    """Load and set up the enabled plugins (the built-ins when ``enabled`` is None), then those at ``paths``."""
    return load_plugin_report(enabled, sections, env, paths, config_file=config_file).loaded


def load_plugin_report(
    enabled: Sequence[str] | None,
    sections: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    paths: Sequence[Path] = (),
    *,
    config_file: Path | None = None,
) -> PluginReport:
    """Check the config's plugin sections, then load and set up the plugins as load_plugins does, keeping what
    was not loaded and why."""
    where = str(config_file) if config_file else "config"
    available = installed_plugins()
    names = builtin_names(available) if enabled is None else list(enabled)
    modules: list[tuple[str, ModuleType]] = []
    for name in names:
        entry_point = available.get(name)
        if entry_point is None:
            guess = closest(name, available)
            raise ConfigError(
                f"{where}: handler {name!r} is enabled in config but not installed"
                + (f"; did you mean `{guess}`?" if guess else "")
                + f" (installed: {', '.join(sorted(available))})"
            )
        modules.append((name, entry_point.load()))
    for path in paths:
        name, module = load_module_at(path)
        if name in names:
            raise ConfigError(f"plugin {name!r} is both named in [hookbot] handlers and given with --plugin {path}")
        names.append(name)
        modules.append((name, module))
    check_top_level(sections, set(available) | set(names), where)
    not_loaded = {name: "not in [hookbot] handlers" for name in sorted(set(available) - set(names))}
    plugins = []
    for name, module in modules:
        section = sections.get(name, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: [{name}] must be a table")
        plugin = set_up(name, module, Setup(name, section, env or {}), where)
        if plugin is None:
            not_loaded[name] = "nothing to do under this config"
        else:
            plugins.append(plugin)
    return PluginReport(plugins, not_loaded)


def set_up(name: str, module: ModuleType, given: Setup, where: str = "config") -> Plugin | None:
    """Check the plugin's shape and section, and run its ``setup``; None when it has nothing to do here."""
    router = getattr(module, "router", None)
    if not isinstance(router, Router):
        raise ConfigError(f"plugin {name!r} ({module.__name__}) has no module-level Router named 'router'")
    declared = getattr(module, "SETTINGS", None)
    if isinstance(declared, Section):
        declared.check(given.section, where)
    lead = "" if where == "config" else f"{where}: "  # the file's name, when there is one
    setup = getattr(module, "setup", None)
    if setup is None:
        config: Any = given.section
    else:
        try:
            config = setup(given)
        except SettingError as exc:
            raise ConfigError(f"{lead}[{name}] {exc.key} {exc}") from None
        except Exception as exc:  # whatever a plugin raises: one line naming it, never a traceback
            expected = isinstance(exc, ConfigError | ValueError | TypeError)
            reason = str(exc) if expected else f"plugin {name!r} set-up raised {type(exc).__name__}: {exc}"
            raise ConfigError(f"{lead}[{name}] {reason}") from None
        if config is None:
            return None
    settings = getattr(module, "repository_settings", None)
    if settings is not None and not isinstance(settings, RepositorySettings):
        raise ConfigError(f"plugin {name!r}: repository_settings must be a bot.plugin.RepositorySettings")
    wants = getattr(module, "wants", None)
    if wants is not None and not callable(wants):
        raise ConfigError(f"plugin {name!r}: wants must be a function (config, event) -> bool")
    needs = getattr(module, "needs_github", True)
    needs_github = bool(needs(config)) if callable(needs) else bool(needs)
    return Plugin(
        name,
        router,
        config,
        logging.getLogger(f"hookbot.handlers.{name}"),
        repository_settings=settings,
        wants=wants,
        needs_github=needs_github,
    )


def load_module_at(path: Path) -> tuple[str, ModuleType]:
    """Import a plugin from a ``.py`` file or a package directory; its name (and config section) is the stem."""
    file = path / "__init__.py" if path.is_dir() else path
    name = path.name if path.is_dir() else path.stem
    if not file.is_file():
        raise ConfigError(f"--plugin {path}: no such plugin file (give a .py file or a package directory)")
    if not name.isidentifier():
        raise ConfigError(f"--plugin {path}: {name!r} is not a valid module name")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == file.resolve():
            return name, loaded
        raise ConfigError(f"--plugin {path}: a module named {name!r} is already imported from elsewhere")
    spec = importlib.util.spec_from_file_location(
        name, file, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and relative imports look themselves up there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"--plugin {path}: importing it raised {type(exc).__name__}: {exc}") from exc
    return name, module
