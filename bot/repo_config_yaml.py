"""Reading ``.github/hookbot.yml`` safely: bytes in, plain values with the line of every key out.

The YAML is untrusted input from anyone who can push to a repository the App is installed on, so it is read from
PyYAML's event stream (never its object constructor): only strings, booleans, numbers, null, lists and mappings
are built, the file is capped at 64 KiB before parsing, nesting is capped, and every value counts against a
budget *including the values an alias repeats*, so an alias bomb ("billion laughs") is refused after a few
thousand values instead of growing without bound.

What the values may say (which sections and keys, and how they narrow the server's config) is bot/repo_config.py's
concern; this module only keeps the lines, so that its errors can point a maintainer at the line to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

REPO_CONFIG_PATH = ".github/hookbot.yml"
ORG_CONFIG_REPOSITORY = ".github"  # the owner's repository that holds defaults for all its repositories
MAX_FILE_BYTES = 64 * 1024
MAX_VALUES = 5_000  # values built, counting every repetition an alias makes; a real file has a few dozen
MAX_DEPTH = 16
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

