"""`hookbot config check` and `hookbot config show`: everything a start checks, and where each value came from.

Both stop short of binding a socket or calling anything, so they fit a CI job or a first look at a new host.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.config_schema import Resolved, Section
from bot.plugins import Plugin
from bot.runtime import server_ceiling
from bot.settings import Settings


def config_check(settings: Settings, repo_file: Path | None = None) -> int:
    """Everything a start checks, short of binding a socket or calling anything: settings, sections, plugins;
    with ``repo_file``, a repository's .github/hookbot.yml too, for that repository's own CI."""
    from bot.plugins import load_plugin_report
    from bot.runtime import refuse_live_without_credentials

    report = load_plugin_report(
        settings.handlers, settings.plugin_sections, settings.process_env, config_file=settings.config_file
    )
    if not settings.effective_dry_run and not settings.github.has_credentials:
        refuse_live_without_credentials(report)
    where = settings.config_file or "no config file (defaults and environment)"
    print(f"{where}: ok")
    print(f"plugins loaded: {', '.join(plugin.name for plugin in report.loaded) or 'none'}")
    for name, reason in report.not_loaded.items():
        print(f"plugin {name} not loaded: {reason}")
    print(f"mode: {'dry-run' if settings.effective_dry_run else 'live'}; GitHub auth: {settings.github.auth_mode}")
    return repo_file_check(repo_file, report.loaded) if repo_file else 0


def repo_file_check(path: Path, loaded: list[Plugin]) -> int:
    """Validate a repository file offline against what the loaded plugins let a repository set.

    Its ``_extends`` is not followed: that needs GitHub, and the base file gets its own check where it lives.
    """
    from bot.repo_config import EXTENDS_KEY, describe_effect, effective_configs
    from bot.repo_config_yaml import RepoConfigError, parse_repo_file

    ceiling = server_ceiling(loaded)
    try:
        file = parse_repo_file(path.read_bytes(), str(path))
        configs = effective_configs([file], ceiling)
    except OSError as exc:
        print(f"hookbot: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except RepoConfigError as exc:
        print(f"hookbot: {exc}", file=sys.stderr)
        return 1
    extends = file.data.get(EXTENDS_KEY)
    note = f" ({EXTENDS_KEY}: {extends} is not followed offline)" if extends else ""
    print(f"{path}: ok; {describe_effect(configs, ceiling)}{note}")
    return 0


def config_show(settings: Settings) -> int:
    """Each setting's effective value and where it came from: the environment, the file, or the default."""
    from bot.config import shown_value
    from bot.plugins import installed_plugins

    print(f"# config file: {settings.config_file or 'none'}")
    mode = "dry-run" if settings.effective_dry_run else "live"
    print(f"# mode: {mode}; GitHub auth: {settings.github.auth_mode}")
    rows: list[tuple[str, str, str]] = []
    for item in settings.resolved:
        rows.append((f"[{item.section}] {item.setting.key}", shown_value(item), _source_label(item)))
    for name, entry_point in sorted(installed_plugins().items()):
        declared = getattr(entry_point.load(), "SETTINGS", None)
        if not isinstance(declared, Section):
            continue
        section = settings.plugin_sections.get(name, {})
        for setting in declared.settings:
            present = setting.key in section
            value = setting.parse(section[setting.key], f"[{name}] {setting.key}") if present else setting.default
            item = Resolved(name, setting, value, "file" if present else "default", str(settings.config_file))
            rows.append((f"[{name}] {setting.key}", shown_value(item), _source_label(item)))
    width = max(len(name) for name, _, _ in rows)
    value_width = min(48, max(len(value) for _, value, _ in rows))
    for name, value, source in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {source}")
    return 0


def _source_label(item: Resolved) -> str:
    if item.source == "env":
        return f"env {item.origin}"
    return "file" if item.source == "file" else "default"
