"""Per-repository configuration: ``.github/hookbot.yml`` read, checked and applied under the server's ceiling.

Pure logic, no I/O (bot/repo_config_loader.py fetches and caches the files): bytes in, an effective config per
plugin or a :class:`RepoConfigError` naming the file, the line and the key out.

The server's config is the ceiling. A plugin declares, in ``repository_settings``, which of its settings a
repository may set and how a repository's values narrow the server's config; everything else (unknown sections,
unknown keys, settings a repository may not set, a plugin the server does not run) is refused, so a repository
can narrow and personalise, never widen.

The YAML is untrusted input from anyone who can push to a repository the App is installed on, so it is read from
PyYAML's event stream (never its object constructor): only strings, booleans, numbers, null, lists and mappings
are built, the file is capped at 64 KiB before parsing, nesting is capped, and every value counts against a
budget *including the values an alias repeats*, so an alias bomb ("billion laughs") is refused after a few
thousand values instead of growing without bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    import yaml

REPO_CONFIG_PATH = ".github/hookbot.yml"
ORG_CONFIG_REPOSITORY = ".github"  # the owner's repository that holds defaults for all its repositories
MAX_FILE_BYTES = 64 * 1024
MAX_VALUES = 5_000  # values built, counting every repetition an alias makes; a real file has a few dozen
MAX_DEPTH = 16
EXTENDS_KEY = "_extends"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # a GitHub owner or repository name (and nothing like ".." or "/")
SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
}
SEQUENCE_TAG = "tag:yaml.org,2002:seq"
MAPPING_TAG = "tag:yaml.org,2002:map"

Path = tuple[str | int, ...]
ConfigT = TypeVar("ConfigT")


class RepoConfigError(Exception):
    """A repository file hookbot ignores; ``str()`` is the one line a maintainer reads (file, line, what, fix)."""

    def __init__(self, message: str, *, source: str = REPO_CONFIG_PATH, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where}: {self.message}"


class SettingError(ValueError):
    """Raised by a plugin's ``narrow`` for one key's value, so the error can point at that key's line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------------------------
# Reading the YAML


@dataclass(frozen=True, slots=True)
class RepoFile:
    """One parsed ``.github/hookbot.yml``: its top-level mapping, and the line of every key and list item."""

    source: str  # "owner/repo:.github/hookbot.yml", the name errors use
    data: Mapping[str, Any]
    lines: Mapping[Path, int] = field(default_factory=dict, repr=False)
    sha: str | None = None  # the blob sha it was read at, when it came from GitHub

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its closest recorded parent (values an alias repeats have none of their own)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, message: str, path: Path = ()) -> RepoConfigError:
        return RepoConfigError(message, source=self.source, line=self.line_of(path))


@dataclass(slots=True)
class _Open:
    """A list or mapping being built from the event stream."""

    value: list[Any] | dict[str, Any]
    path: Path
    anchor: str | None
    line: int
    size: int = 1
    key: str | None = None  # a mapping's key waiting for its value
    key_line: int = 0


def parse_repo_file(text: bytes, source: str = REPO_CONFIG_PATH, sha: str | None = None) -> RepoFile:
    """Parse a repository file safely; raise RepoConfigError for anything hookbot will not read."""
    if len(text) > MAX_FILE_BYTES:
        raise RepoConfigError(f"the file is {len(text)} bytes; hookbot reads at most {MAX_FILE_BYTES}", source=source)
    import yaml  # only when a repository has a file: the Lambda entry and start-up never pay for it

    lines: dict[Path, int] = {}
    documents: list[Any] = []
    try:
        _build(_events(yaml, text), source, lines, documents)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RepoConfigError(
            f"not valid YAML: {exc.problem or exc.context}", source=source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise RepoConfigError(f"not valid YAML: {exc}", source=source) from None
    if len(documents) > 1:
        raise RepoConfigError("holds more than one YAML document; write one", source=source)
    data = documents[0] if documents and documents[0] is not None else {}
    if not isinstance(data, dict):
        raise RepoConfigError("must be a mapping of plugin names to their settings", source=source, line=1)
    return RepoFile(source, data, lines, sha)


def _events(yaml: Any, text: bytes) -> Iterator[yaml.Event]:
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def _build(events: Iterator[Any], source: str, lines: dict[Path, int], documents: list[Any]) -> None:
    """Build plain values from parser events with a stack (no recursion), counting values against MAX_VALUES."""
    import yaml

    scalar_loader: Any = yaml.SafeLoader("")  # resolves and converts plain scalars exactly as safe_load would
    anchors: dict[str, tuple[Any, int]] = {}
    stack: list[_Open] = []
    built = 0

    def fail(message: str, line: int) -> RepoConfigError:
        return RepoConfigError(message, source=source, line=line)

    def place(value: Any, size: int, line: int) -> None:
        nonlocal built
        built += size
        if built > MAX_VALUES:
            raise fail(f"holds more than {MAX_VALUES} values (aliases count each time they repeat); refused", line)
        if not stack:
            documents.append(value)
            return
        top = stack[-1]
        top.size += size
        if isinstance(top.value, list):
            lines[(*top.path, len(top.value))] = line
            top.value.append(value)
        elif top.key is None:
            if not isinstance(value, str):
                raise fail(f"a key must be text, not {value!r}", line)
            if value in top.value:
                raise fail(f"{_dotted((*top.path, value))} is set twice", line)
            top.key, top.key_line = value, line
        else:
            lines[(*top.path, top.key)] = top.key_line
            top.value[top.key] = value
            top.key = None

    def child_path() -> Path:
        if not stack:
            return ()
        top = stack[-1]
        return (*top.path, len(top.value) if isinstance(top.value, list) else top.key or "")

    for event in events:
        line = event.start_mark.line + 1
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag in (None, "!"):
                tag = scalar_loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag not in SCALAR_TAGS:
                kind = tag.removeprefix("tag:yaml.org,2002:")
                raise fail(
                    f"{event.value!r} is read as a {kind}; only text, numbers and true/false are read "
                    "(quote it if it is text)",
                    line,
                )
            try:
                value = scalar_loader.construct_object(yaml.ScalarNode(tag, event.value))
            except ValueError as exc:  # e.g. an integer longer than Python converts
                raise fail(f"{event.value[:40]!r} cannot be read: {exc}", line) from None
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            place(value, 1, line)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            sequence = isinstance(event, yaml.SequenceStartEvent)
            if event.tag not in (None, "!", SEQUENCE_TAG if sequence else MAPPING_TAG):
                raise fail(f"the tag {event.tag} is not read; write plain lists and mappings", line)
            if len(stack) >= MAX_DEPTH:
                raise fail(f"nests deeper than {MAX_DEPTH} levels; refused", line)
            if stack and isinstance(stack[-1].value, dict) and stack[-1].key is None:
                raise fail("a key must be text, not a list or mapping", line)
            stack.append(_Open([] if sequence else {}, child_path(), event.anchor, line))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            done = stack.pop()
            if done.anchor:
                anchors[done.anchor] = (done.value, done.size)
            built -= done.size - 1  # its values were counted as they were placed; count only the container now
            place(done.value, done.size, done.line)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise fail(f"the alias *{event.anchor} names no anchor defined before it", line)
            value, size = anchors[event.anchor]
            place(value, size, line)


def _dotted(path: Path) -> str:
    return ".".join(str(part) for part in path)


# ---------------------------------------------------------------------------------------------------------------
# What a plugin lets a repository set


SettingKind = Literal["bool", "text", "names"]
KIND_WORDS: Mapping[SettingKind, str] = {
    "bool": "true or false",
    "text": "text",
    "names": "a list of names",
}


@dataclass(frozen=True, slots=True)
class RepoSetting:
    name: str
    kind: SettingKind
    help: str


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class CeilingEntry:
    config: Any  # the server's config for the plugin, what its handlers get when no repository file narrows it
    settings: RepositorySettings[Any] | None  # None: a repository may set nothing (audit)


@dataclass(frozen=True, slots=True)
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
