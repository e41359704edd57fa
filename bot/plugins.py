"""Plugin discovery through the ``hookbot.handlers`` entry-point group.

A plugin is a module with a module-level ``router = gidgethub.routing.Router()`` (the python/bedevere shape) and,
optionally, ``configure(section) -> object`` that checks its config section at start and returns what its
handlers receive as ``ctx.config``. The built-ins are registered in pyproject.toml exactly as a third-party
package registers its own, so nothing here treats them specially.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gidgethub.routing import Router

from bot.config import ConfigError

ENTRY_POINT_GROUP = "hookbot.handlers"


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    router: Router
    config: Any


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugins(enabled: Sequence[str] | None, sections: Mapping[str, Any]) -> list[Plugin]:
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
            config = configure(section) if callable(configure) else section
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"[{name}] config is not valid: {exc}") from None
        plugins.append(Plugin(name=name, router=router, config=config))
    return plugins
