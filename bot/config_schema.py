"""How a setting is declared, parsed and checked, for hookbot's own sections and plugins' sections alike.

A setting is declared once (`Setting`: name, type, default, environment variable, help) inside a `Section`;
parsing, defaults, the unknown-key check with its "did you mean", ``hookbot config show`` and README's reference
table all read that declaration. It lives apart from hookbot's own sections (bot/settings.py) and from loading
(bot/config.py) because plugins declare their sections with it too (through bot.plugin), and neither needs the
other's code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from bot.records import record


class ConfigError(Exception):
    """A setting a user got wrong; the message says which and how to fix it."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant, or None when nothing is close."""
    import difflib  # only a mistake needs it (~0.5 ms at a cold start)

    matches = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean `greeter`?"`` for a near miss, else the list of valid names (short lists only)."""
    options = sorted(choices)
    guess = closest(name, options)
    if guess is not None:
        return f"; did you mean `{guess}`?"
    if len(options) <= 12:
        return f"; valid: {', '.join(options)}"
    return ""


def check_event_names(names: Iterable[str], where: str) -> None:
    """Refuse an event name GitHub does not send (``"pushh"``); ``event.action`` is checked by its event part."""
    from bot.github_events import DOCUMENTED_EVENTS

    known = DOCUMENTED_EVENTS | {"s3", "*"}  # hookbot's own name for S3 uploads, and "every event"
    for name in names:
        event = name.partition(".")[0]
        if event not in known:
            raise ValueError(f"{where}: unknown event `{event}`{did_you_mean(event, known)}")


def check_placeholders(template: str, allowed: Collection[str], where: str) -> None:
    """Refuse a ``{name}`` a template cannot fill, listing the names it can (``{autor}`` -> ``{author}``)."""
    import string

    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{where} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    for name in fields:
        if name not in allowed:
            guess = closest(name, allowed)
            hint = f" (did you mean {{{guess}}}?)" if guess else ""
            names = ", ".join(f"{{{a}}}" for a in sorted(allowed))
            raise ValueError(f"{where} uses unknown placeholder {{{name}}}{hint}; allowed: {names}")


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def parse_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def parse_number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {value!r}") from None


def parse_duration(text: str, name: str = "duration") -> float:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"2d"`` (or plain seconds) as seconds."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be a duration such as 30s, 10m, 1h or 2d, not {text!r}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be more than zero, not {text!r}")
    return seconds


def parse_strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigError(f"{name} must be a list of strings, not {value!r}")


def parse_text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # an App id written as a TOML number
        return str(value)
    raise ConfigError(f"{name} must be a string, not {value!r}")


def parse_tables(value: Any, name: str) -> list[Mapping[str, Any]]:
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        return value
    raise ConfigError(f"{name} must be an array of tables (each written under its own [[...]] header)")


Kind = Literal["text", "int", "number", "bool", "list", "duration", "path", "tables"]
PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "text": parse_text,
    "int": parse_int,
    "number": parse_number,
    "bool": parse_bool,
    "list": parse_strings,
    "duration": lambda value, name: parse_duration(str(value), name),
    "path": lambda value, name: Path(parse_text(value, name)),
    "tables": parse_tables,
}


@record
class Setting:
    """One setting, declared once: everything else (parsing, defaults, docs, ``config show``) is read from here.

    ``default`` None means "not set" (the setting is optional). ``secret`` values are masked when shown and
    redacted from logs.
    """

    key: str
    kind: Kind
    default: Any
    help: str
    env: str | None = None
    secret: bool = False
    positive: bool = False  # a count, size or time: zero or less is refused

    def parse(self, value: Any, where: str) -> Any:
        parsed = PARSERS[self.kind](value, where)
        if self.positive and parsed <= 0:
            raise ConfigError(f"{where} must be more than zero, not {value!r}")
        return parsed


@record
class Section:
    """A config file table (``[server]``, ``[greeter]``) and the settings it may hold."""

    name: str
    settings: tuple[Setting, ...]
    help: str = ""

    def setting(self, key: str) -> Setting:
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise KeyError(key)

    def check(self, data: Mapping[str, Any], where: str = "config") -> None:
        """Refuse unknown keys (with the closest valid one) and values of the wrong type; defaults are not added."""
        keys = {setting.key for setting in self.settings}
        for key in data:
            if key not in keys:
                raise ConfigError(f"{where}: unknown key `{key}` in [{self.name}]{did_you_mean(key, keys)}")
        for setting in self.settings:
            if setting.key in data:
                if setting.kind == "tables" and not isinstance(data[setting.key], list):
                    raise ConfigError(
                        f"{where}: [{self.name}] {setting.key} must be an array of tables: "
                        f"write each one as [[{self.name}.{setting.key}]]"
                    )
                setting.parse(data[setting.key], f"{where}: [{self.name}] {setting.key}")

    def parse(self, data: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
        """Every setting of the section, typed, with the declared default where the file says nothing."""
        self.check(data, where)
        return {
            setting.key: setting.parse(data[setting.key], f"[{self.name}] {setting.key}")
            if setting.key in data
            else setting.default
            for setting in self.settings
        }


Source = Literal["env", "file", "default"]


@record
class Resolved:
    """A setting's effective value and where it came from (``config show``)."""

    section: str
    setting: Setting
    value: Any
    source: Source
    origin: str  # the variable's name, the file's path, or "default"
