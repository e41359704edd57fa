"""Per-repository configuration: a parsed ``.github/hookbot.yml`` checked and applied under the server's ceiling.

Pure logic, no I/O (bot/repo_config_loader.py fetches and caches the files, bot/repo_config_yaml.py reads them
safely): parsed files in, an effective config per plugin or a :class:`RepoConfigError` naming the file, the line
and the key out.

The server's config is the ceiling. A plugin declares, in ``repository_settings``, which of its settings a
repository may set and how a repository's values narrow the server's config; everything else (unknown sections,
unknown keys, settings a repository may not set, a plugin the server does not run) is refused, so a repository
can narrow and personalise, never widen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from bot.records import record

if TYPE_CHECKING:  # only read files are checked here; a bot without credentials never reads one (cold start)
    from bot.repo_config_yaml import RepoFile

EXTENDS_KEY = "_extends"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # a GitHub owner or repository name (and nothing like ".." or "/")

ConfigT = TypeVar("ConfigT")


class SettingError(ValueError):
    """Raised by a plugin's ``narrow`` for one key's value, so the error can point at that key's line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------------------------
# What a plugin lets a repository set


SettingKind = Literal["bool", "text", "names"]
KIND_WORDS: Mapping[SettingKind, str] = {
    "bool": "true or false",
    "text": "text",
    "names": "a list of names",
}


@record
class RepoSetting:
    """One setting a repository may set for a plugin, with its kind (checked) and help (shown in errors)."""

    name: str
    kind: SettingKind
    help: str


@record
class RepositorySettings(Generic[ConfigT]):
    """A plugin's declaration (its module's ``repository_settings``): what a repository may set, and how.

    ``narrow(server_config, values)`` returns the config the plugin's handlers get for that repository; it may
    only narrow or personalise the server's config, and raises SettingError naming the key whose value it
    refuses. A declared ``enabled`` is handled here: ``enabled: false`` switches the plugin off for the repository
    and ``narrow`` never sees it.
    """

    settings: tuple[RepoSetting, ...]
    narrow: Callable[[ConfigT, Mapping[str, Any]], ConfigT]

    def setting(self, name: str) -> RepoSetting | None:
        return next((setting for setting in self.settings if setting.name == name), None)


class Off:
    """The type of ``OFF``: a plugin a repository switched off (``enabled: false``)."""

    def __repr__(self) -> str:
        return "OFF"


OFF = Off()


@record
class CeilingEntry:
    """One loaded plugin under the ceiling: the server's config for it, and what a repository may narrow."""

    config: Any  # the server's config for the plugin, what its handlers get when no repository file narrows it
    settings: RepositorySettings[Any] | None  # None: a repository may set nothing (audit)


@record
class ServerCeiling:
    """What the server runs (``loaded``) and which plugins exist at all (``installed``, for "did you mean")."""

    loaded: Mapping[str, CeilingEntry]
    installed: frozenset[str]


def check_file(file: RepoFile, ceiling: ServerCeiling) -> None:
    """Refuse unknown sections and keys, wrong types, and anything that would switch on what the server runs not."""
    extends = file.data.get(EXTENDS_KEY)
    if extends is not None and not isinstance(extends, str):
        raise file.error(
            f"{EXTENDS_KEY} must be a repository name such as other-repo or owner/other-repo", (EXTENDS_KEY,)
        )
    known = ceiling.installed | set(ceiling.loaded)
    for name, section in file.data.items():
        if name == EXTENDS_KEY:
            continue
        if name not in known:
            raise file.error(
                f"unknown section {name!r}{_suggest(name, known)}; sections are plugin names: "
                f"{', '.join(sorted(known))}",
                (name,),
            )
        if section is None:
            continue
        if not isinstance(section, dict):
            raise file.error(f"{name} must be a mapping of settings", (name,))
        entry = ceiling.loaded.get(name)
        if entry is None:
            if section and section != {"enabled": False}:
                raise file.error(
                    f"{name} is off on this server; a repository can narrow a plugin's settings, "
                    "not switch a plugin on",
                    (name, next(iter(section))),
                )
            continue
        for key, value in section.items():
            _check_setting(file, name, entry.settings, key, value)


def _check_setting(file: RepoFile, plugin: str, settings: RepositorySettings[Any] | None, key: str, value: Any) -> None:
    path = (plugin, key)
    if settings is None:
        raise file.error(f"{plugin} takes no repository settings; only the server's config sets it", path)
    setting = settings.setting(key)
    if setting is None:
        names = [s.name for s in settings.settings]
        raise file.error(
            f"{plugin}.{key} is not a setting a repository may set{_suggest(key, names)}; "
            f"{plugin} takes: {', '.join(names)}",
            path,
        )
    fits = {
        "bool": isinstance(value, bool),
        "text": isinstance(value, str),
        "names": isinstance(value, list) and all(isinstance(item, str) for item in value),
    }[setting.kind]
    if not fits:
        raise file.error(f"{plugin}.{key} must be {KIND_WORDS[setting.kind]}, not {value!r}", path)


def _suggest(name: str, choices: Any) -> str:
    import difflib  # only a mistake needs it (~0.5 ms at a cold start)

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def extends_target(file: RepoFile, repository: str) -> str | None:
    """The ``owner/name`` a file's ``_extends`` names (``name`` alone: same owner as ``repository``), or None."""
    value = file.data.get(EXTENDS_KEY)
    if value is None:
        return None
    owner = repository.partition("/")[0]
    target_owner, _, target_name = value.rpartition("/") if "/" in value else (owner, "", value)
    if not all(NAME.fullmatch(part) and part not in (".", "..") for part in (target_owner, target_name)):
        raise file.error(
            f"{EXTENDS_KEY}: {value!r} is not a repository name such as other-repo or owner/other-repo", (EXTENDS_KEY,)
        )
    target = f"{target_owner}/{target_name}"
    if target.lower() == repository.lower():
        raise file.error(f"{EXTENDS_KEY}: {value!r} names this same repository", (EXTENDS_KEY,))
    return target


def effective_configs(files: list[RepoFile], ceiling: ServerCeiling) -> dict[str, Any]:
    """Each loaded plugin's config for the repository: ``files`` are the base first, then the one extending it.

    A later file's key replaces the same key of an earlier one (Probot's ``_extends`` semantics), per plugin.
    A plugin no file mentions keeps the server's config object itself.
    """
    for file in files:
        check_file(file, ceiling)
    for base in files[:-1]:
        if EXTENDS_KEY in base.data:
            raise base.error(
                f"{EXTENDS_KEY} is followed one level only, and this file is already the base of "
                f"{files[-1].source.partition(':')[0]}",
                (EXTENDS_KEY,),
            )
    result: dict[str, Any] = {}
    for name, entry in ceiling.loaded.items():
        values: dict[str, tuple[Any, RepoFile]] = {}
        for file in files:
            for key, value in (file.data.get(name) or {}).items():
                values[key] = (value, file)
        if not values or entry.settings is None:
            result[name] = entry.config
        elif "enabled" in values and values["enabled"][0] is False:
            result[name] = OFF
        else:
            narrowing = {key: value for key, (value, _) in values.items() if key != "enabled"}
            result[name] = _narrow(name, entry, narrowing, values) if narrowing else entry.config
    return result


def describe_effect(configs: Mapping[str, Any], ceiling: ServerCeiling) -> str:
    """What a resolved file changes, in a few words: ``greeter: off; exec: narrowed`` (a check run's summary)."""
    changes = [
        f"{name}: {'off' if configs[name] is OFF else 'narrowed'}"
        for name, entry in ceiling.loaded.items()
        if configs.get(name, entry.config) is not entry.config
    ]
    return "; ".join(changes) or "changes nothing the server's config says"


def _narrow(name: str, entry: CeilingEntry, narrowing: dict[str, Any], values: dict[str, tuple[Any, RepoFile]]) -> Any:
    assert entry.settings is not None
    try:
        return entry.settings.narrow(entry.config, narrowing)
    except SettingError as exc:
        raise values[exc.key][1].error(f"{name}.{exc.key}: {exc}", (name, exc.key)) from None
    except ValueError as exc:
        file = next(iter(values.values()))[1]
        raise file.error(f"{name}: {exc}", (name,)) from None
