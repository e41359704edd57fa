"""Settings from the TOML file and the environment, read once at start into plain typed values.

Every core setting is declared once, in ``CORE_SECTIONS`` (name, type, default, environment variable, help):
parsing, defaults, the unknown-key check, ``hookbot config show`` and README's reference table all come from that
declaration. A plugin declares its own section the same way (a module-level ``SETTINGS = Section(...)``), so its
keys are checked, with a "did you mean" for a typo, before its ``configure()`` runs.

Only this module (and the CLI that calls it) reads environment variables; handlers get their own config section.
Precedence: environment variable (when set and not empty), then the config file, then the default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

DEFAULT_API_URL = "https://api.github.com"
GITHUB_MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB.
GITHUB_TIMEOUT_SECONDS = 10.0  # GitHub gives up on a delivery after 10 s, so no genuine body takes longer.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024


class ConfigError(Exception):
    """A setting a user got wrong; the message says which and how to fix it."""


# An HMAC keyed with an empty or short secret is one an attacker can compute or guess: hookbot refuses to start
# with one rather than accept deliveries signed with it. GitHub accepts any secret, so the check is ours.
MIN_SECRET_BYTES = 16


def check_webhook_secret(value: str, source: str) -> str:
    """``value`` when it is a webhook secret worth the name; else a ConfigError naming ``source`` and the fix."""
    size = len(value.encode())
    if value.strip() and size >= MIN_SECRET_BYTES:
        return value
    what = "blank" if not value.strip() else f"only {size} bytes"
    raise ConfigError(
        f"the webhook secret in {source} is {what}; it needs at least {MIN_SECRET_BYTES}: make one with "
        "`openssl rand -hex 32` and set the same value in GitHub's webhook settings"
    )


def check_webhook_secrets(github: Mapping[str, Resolved], env: Mapping[str, str]) -> None:
    """The configured webhook secret and every previous one, each named by where it came from when refused."""
    current = github["webhook_secret"]
    if current.value is not None:
        source = f"[github] webhook_secret of {current.origin}"
        if current.source == "env":
            references = (
                ("SSM parameter", env.get("GITHUB_WEBHOOK_SECRET_SSM_PARAMETER", "").strip()),
                ("Secrets Manager secret", env.get("GITHUB_WEBHOOK_SECRET_SECRETS_MANAGER_ID", "").strip()),
            )
            source = current.origin + "".join(f" (from {kind} {ref})" for kind, ref in references if ref)
        check_webhook_secret(current.value, source)
    previous = github["previous_secrets"]
    for index, value in enumerate(previous.value):
        check_webhook_secret(value, f"[github] previous_secrets[{index}] of {previous.origin}")


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


def _core_sections() -> tuple[Section, ...]:
    return (
        Section(
            "hookbot",
            (
                Setting(
                    "handlers",
                    "list",
                    None,
                    "which plugins run; unset: the built-ins (another installed plugin runs only when named here)",
                ),
                Setting(
                    "state_dir",
                    "path",
                    Path(".hookbot"),
                    "where local state lives; `serve` keeps it private (the dir 0700, its files 0600)",
                    env="HOOKBOT_STATE_DIR",
                ),
                Setting(
                    "dry_run",
                    "bool",
                    None,
                    "log actions instead of doing them; unset: dry-run exactly when no GitHub credentials are set; "
                    "`0` without them refuses to start when a loaded plugin needs them",
                    env="HOOKBOT_DRY_RUN",
                ),
                Setting(
                    "log_format",
                    "text",
                    None,
                    "`console` or `json`; unset: console when stderr is a terminal, else JSON",
                    env="HOOKBOT_LOG_FORMAT",
                ),
                Setting("log_level", "text", None, "a logging level name (default info)", env="HOOKBOT_LOG_LEVEL"),
            ),
        ),
        Section(
            "github",
            (
                Setting(
                    "webhook_secret",
                    "text",
                    None,
                    "the webhook secret, at least 16 bytes (`openssl rand -hex 32`); unset: one is generated on first "
                    "start, kept in the state dir and printed",
                    env="GITHUB_WEBHOOK_SECRET",
                    secret=True,
                ),
                Setting(
                    "previous_secrets",
                    "list",
                    (),
                    "still accepted while you rotate the secret in GitHub's settings (each at least 16 bytes)",
                    secret=True,
                ),
                Setting("allow_sha1", "bool", False, "accept sha1-only X-Hub-Signature (old GitHub Enterprise only)"),
                Setting("token", "text", None, "a personal access token", env="GITHUB_TOKEN", secret=True),
                Setting("app_id", "text", None, "GitHub App id (with a private key)", env="GITHUB_APP_ID"),
                Setting(
                    "private_key",
                    "text",
                    None,
                    "the GitHub App's private key (PEM)",
                    env="GITHUB_PRIVATE_KEY",
                    secret=True,
                ),
                Setting(
                    "private_key_path",
                    "path",
                    None,
                    "a file holding the GitHub App's private key",
                    env="GITHUB_PRIVATE_KEY_PATH",
                ),
                Setting(
                    "api_url",
                    "text",
                    DEFAULT_API_URL,
                    "API base (GitHub Enterprise: `https://HOST/api/v3`); every API call goes here",
                    env="GITHUB_API_URL",
                ),
                Setting("bot_login", "text", None, "the account the bot writes as (asked from GET /user with a token)"),
                Setting(
                    "hooks", "list", (), '`["owner/repo:HOOK_ID"]` for `hookbot redeliver`; none: the App\'s webhook'
                ),
                Setting(
                    "redeliver_every", "duration", None, "`serve` asks GitHub to redeliver failed deliveries this often"
                ),
                Setting(
                    "request_timeout_seconds",
                    "number",
                    30.0,
                    "one GitHub API request at most; after a crash a delivery that was running waits this long",
                    positive=True,
                ),
            ),
        ),
        Section(
            "server",
            (
                Setting("host", "text", "127.0.0.1", "address to listen on"),
                Setting("port", "int", 8080, "port to listen on"),
                Setting("max_body_bytes", "int", GITHUB_MAX_BODY, "largest body accepted (GitHub's own cap: 25 MiB)"),
                Setting("queue_size", "int", 1000, "accepted deliveries waiting; beyond it: 503 + Retry-After"),
                Setting("workers", "int", 8, "deliveries handled at once"),
                Setting("max_attempts", "int", 5, "tries per delivery before it is parked as a dead letter"),
                Setting(
                    "retry_base_seconds", "number", 2.0, "first retry after about this long, then doubling (jittered)"
                ),
                Setting(
                    "shutdown_grace_seconds",
                    "number",
                    8.0,
                    "on SIGTERM, running handlers get this long (docker stop waits 10 s)",
                ),
                Setting(
                    "read_deadline_seconds",
                    "number",
                    GITHUB_TIMEOUT_SECONDS,
                    "a request's body must arrive within this long (GitHub itself gives up after 10 s)",
                    positive=True,
                ),
                Setting(
                    "max_buffered_bytes",
                    "int",
                    MAX_BUFFERED_BYTES,
                    "request bytes held at once across connections; beyond it: 503 (at least max_body_bytes)",
                ),
                Setting("max_connections", "int", 1000, "connections open at once", positive=True),
                Setting(
                    "idle_timeout_seconds",
                    "number",
                    10.0,
                    "an idle keep-alive connection is closed after this",
                    positive=True,
                ),
                Setting(
                    "metrics_token",
                    "text",
                    None,
                    "`GET /metrics` then needs `Authorization: Bearer <token>`",
                    env="HOOKBOT_METRICS_TOKEN",
                    secret=True,
                ),
                Setting("metrics_port", "int", None, "serve `/metrics` on this port instead of the webhook's"),
            ),
        ),
        Section(
            "sns",
            (
                Setting(
                    "topic_arns",
                    "list",
                    (),
                    "SNS topics whose messages are accepted; none: every SNS message is refused",
                    env="SNS_TOPIC_ARNS",
                ),
                Setting(
                    "require_github_signature",
                    "bool",
                    True,
                    "every GitHub delivery through SNS needs a valid X-Hub-Signature-256 attribute; false also "
                    "accepts the legacy attribute-less shape on the SNS signature alone",
                    env="HOOKBOT_REQUIRE_GITHUB_SIGNATURE",
                ),
                Setting("verify_in_lambda", "bool", False, "check SNS signatures in Lambda too"),
                Setting("max_age_seconds", "int", 3600, "oldest SNS message accepted"),
            ),
        ),
        Section(
            "dedupe",
            (
                Setting("ttl_seconds", "int", 7 * 24 * 3600, "how long a handled delivery id is remembered"),
                Setting(
                    "table",
                    "text",
                    None,
                    "a DynamoDB table for de-duplication shared by replicas and Lambda",
                    env="HOOKBOT_DEDUPE_TABLE",
                ),
                Setting("claim_timeout_seconds", "int", 900, "a claim older than this is taken over (its holder died)"),
            ),
        ),
        Section(
            "relay",
            (
                Setting(
                    "topic_arn",
                    "text",
                    None,
                    "relay verified deliveries to this SNS topic",
                    env="HOOKBOT_RELAY_TOPIC_ARN",
                ),
                Setting("also_handle", "bool", False, "relay and handle here too"),
                Setting(
                    "payload_bucket",
                    "text",
                    None,
                    "S3 bucket for deliveries over SNS's 256 KiB (written by the relay, read by the worker)",
                    env="HOOKBOT_RELAY_PAYLOAD_BUCKET",
                ),
            ),
        ),
    )


CORE_SECTIONS: tuple[Section, ...] = _core_sections()
CORE_SECTION_NAMES = frozenset(section.name for section in CORE_SECTIONS)
TOP_LEVEL_KEYS = frozenset({"handlers"})  # the older spelling of [hookbot] handlers


def core_section(name: str) -> Section:
    for section in CORE_SECTIONS:
        if section.name == name:
            return section
    raise KeyError(name)


Source = Literal["env", "file", "default"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A setting's effective value and where it came from (``config show``)."""

    section: str
    setting: Setting
    value: Any
    source: Source
    origin: str  # the variable's name, the file's path, or "default"


@dataclass(frozen=True, slots=True)
class GitHubSettings:
    # Secrets stay out of repr(): settings end up in tracebacks, debug logs and test failure output.
    webhook_secret: str | None = field(default=None, repr=False)
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    allow_sha1: bool = False
    token: str | None = field(default=None, repr=False)
    app_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    bot_login: str | None = None
    hooks: tuple[str, ...] = ()
    redeliver_every: float | None = None  # seconds; from "10m" style text
    # How long one GitHub API request may take before the client gives up. After a crash, a delivery that was
    # running waits this long from its attempt's start, so whatever it had in flight has landed or failed.
    request_timeout_seconds: float = 30.0

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or (self.app_id and self.private_key))

    @property
    def auth_mode(self) -> str:
        """What GitHub calls are made as, for the start-up line: a token, a GitHub App, or nothing."""
        if self.token:
            return "token"
        if self.app_id and self.private_key:
            return f"GitHub App {self.app_id}"
        return "none"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = GITHUB_MAX_BODY
    queue_size: int = 1000
    workers: int = 8
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    shutdown_grace_seconds: float = 8.0
    read_deadline_seconds: float = GITHUB_TIMEOUT_SECONDS
    max_buffered_bytes: int = MAX_BUFFERED_BYTES
    max_connections: int = 1000
    idle_timeout_seconds: float = 10.0
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int | None = None


@dataclass(frozen=True, slots=True)
class SnsSettings:
    topic_arns: tuple[str, ...] = ()
    require_github_signature: bool = True
    verify_in_lambda: bool = False
    max_age_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class DedupeSettings:
    ttl_seconds: int = 7 * 24 * 3600
    table: str | None = None
    claim_timeout_seconds: int = 900


@dataclass(frozen=True, slots=True)
class RelaySettings:
    topic_arn: str | None = None
    also_handle: bool = False
    payload_bucket: str | None = None  # S3 bucket for deliveries over SNS's 256 KiB (see bot/claim_check.py)


@dataclass(frozen=True, slots=True)
class Settings:
    github: GitHubSettings = field(default_factory=GitHubSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    sns: SnsSettings = field(default_factory=SnsSettings)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    state_dir: Path = Path(".hookbot")
    dry_run: bool | None = None  # None: not said, so dry-run exactly when there are no GitHub credentials
    handlers: tuple[str, ...] | None = None  # None: every installed plugin
    log_format: str | None = None  # None: console on a terminal, else JSON
    log_level: str | None = None
    plugin_sections: Mapping[str, Any] = field(default_factory=dict)
    aws_endpoint_url: str | None = None
    aws_endpoint_url_sns: str | None = None
    config_file: Path | None = None
    # Each core setting's value and source, for `hookbot config show`.
    resolved: tuple[Resolved, ...] = field(default=(), repr=False)
    # The environment hookbot started with, for a plugin that hands parts of it on to something it runs (exec:
    # PATH, LAMBDA_TASK_ROOT, its `env` allow-list). Read here, once, so no plugin reads the environment itself.
    process_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def effective_dry_run(self) -> bool:
        """Dry-run when asked for; when not said, whenever there is nothing to authenticate to GitHub with.

        ``HOOKBOT_DRY_RUN=0`` said explicitly acts even without GitHub credentials: an S3-only auto-deployer
        needs AWS, not GitHub (a plugin that does need them refuses to start then: bot/runtime.py).
        """
        if self.dry_run is not None:
            return self.dry_run
        return not self.github.has_credentials

    @property
    def config_label(self) -> str:
        """How error lines name where a setting came from."""
        return str(self.config_file) if self.config_file else "config"


def _read_file(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file: a Lambda without a bundled config never pays for the parser

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (set HOOKBOT_CONFIG or --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory (set HOOKBOT_CONFIG or --config to a file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def config_path(env: Mapping[str, str], config_path: str | Path | None = None) -> Path | None:
    """``--config``, else ``HOOKBOT_CONFIG``, else ``./hookbot.toml`` when there is one."""
    path_text = config_path or env.get("HOOKBOT_CONFIG")
    if path_text:
        return Path(path_text)
    return Path("hookbot.toml") if Path("hookbot.toml").is_file() else None


def check_top_level(data: Mapping[str, Any], plugin_names: Collection[str], where: str) -> None:
    """Refuse a table that neither hookbot nor an installed plugin reads (``[greeterr]``), and stray keys."""
    known = CORE_SECTION_NAMES | set(plugin_names)
    for name, value in data.items():
        if isinstance(value, Mapping) or (isinstance(value, list) and name not in TOP_LEVEL_KEYS):
            if name not in known:
                raise ConfigError(f"{where}: unknown section [{name}]{did_you_mean(name, known)}")
        elif name not in TOP_LEVEL_KEYS:
            homes = {setting.key: section.name for section in CORE_SECTIONS for setting in section.settings}
            guess = closest(name, homes)
            hint = f"; did you mean `{guess}` under [{homes[guess]}]?" if guess else " (settings go under a [section])"
            raise ConfigError(f"{where}: unknown key `{name}` outside any section{hint}")


def resolve(data: Mapping[str, Any], env: Mapping[str, str], where: str) -> dict[str, dict[str, Resolved]]:
    """Each core setting's value from the environment, the file or the default, checked and typed."""
    result: dict[str, dict[str, Resolved]] = {}
    for section in CORE_SECTIONS:
        table = data.get(section.name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section.name}] in the config file must be a table")
        section.check(table, where)
        values: dict[str, Resolved] = {}
        for setting in section.settings:
            env_value = env.get(setting.env) if setting.env else None
            if setting.env and env_value:
                value = setting.parse(env_value, setting.env)
                values[setting.key] = Resolved(section.name, setting, value, "env", setting.env)
            elif setting.key in table:
                value = setting.parse(table[setting.key], f"{where}: [{section.name}] {setting.key}")
                values[setting.key] = Resolved(section.name, setting, value, "file", where)
            else:
                values[setting.key] = Resolved(section.name, setting, setting.default, "default", "default")
        result[section.name] = values
    if "handlers" in data and "handlers" not in data.get("hookbot", {}):
        setting = core_section("hookbot").setting("handlers")
        value = setting.parse(data["handlers"], f"{where}: handlers")
        result["hookbot"]["handlers"] = Resolved("hookbot", setting, value, "file", where)
    return result


def load_settings(env: Mapping[str, str], config_path_: str | Path | None = None) -> Settings:
    """Build Settings from an environment mapping and an optional TOML file (pure apart from reading files).

    Secrets named by ``<NAME>_SSM_PARAMETER`` / ``<NAME>_SECRETS_MANAGER_ID`` are fetched first (bot/aws_secrets.py).
    Plugin sections are checked when the plugins load (bot/plugins.py), which is where their names are known.
    """
    from bot.aws_secrets import resolve_secrets  # imported here: it raises this module's ConfigError

    env = resolve_secrets(env)
    path = config_path(env, config_path_)
    data = _read_file(path) if path else {}
    where = str(path) if path else "config"
    resolved = resolve(data, env, where)
    check_webhook_secrets(resolved["github"], env)

    def values(section: str) -> dict[str, Any]:
        return {key: item.value for key, item in resolved[section].items()}

    gh = values("github")
    key_path = gh.pop("private_key_path")
    if not gh["private_key"] and key_path:
        try:
            gh["private_key"] = Path(key_path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read GITHUB_PRIVATE_KEY_PATH {key_path}: {exc.strerror}") from None
    if bool(gh["app_id"]) != bool(gh["private_key"]):
        raise ConfigError(
            "GitHub App auth needs both GITHUB_APP_ID and GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)"
        )
    gh["api_url"] = gh["api_url"].rstrip("/")
    server = ServerSettings(**values("server"))
    if server.max_buffered_bytes < server.max_body_bytes:
        raise ConfigError(
            f"[server] max_buffered_bytes ({server.max_buffered_bytes}) must be at least max_body_bytes "
            f"({server.max_body_bytes}): otherwise a body of the allowed size could never be read"
        )
    core = values("hookbot")
    log_format = core["log_format"]
    if log_format is not None and log_format not in ("console", "json"):
        raise ConfigError(f"log format must be `console` or `json`, not {log_format!r}")

    return Settings(
        github=GitHubSettings(**gh),
        server=server,
        sns=SnsSettings(**values("sns")),
        dedupe=DedupeSettings(**values("dedupe")),
        relay=RelaySettings(**values("relay")),
        state_dir=core["state_dir"],
        dry_run=core["dry_run"],
        handlers=core["handlers"],
        log_format=log_format,
        log_level=core["log_level"],
        plugin_sections={
            k: v for k, v in data.items() if k not in CORE_SECTION_NAMES and k not in TOP_LEVEL_KEYS
        },
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_endpoint_url_sns=env.get("AWS_ENDPOINT_URL_SNS"),
        config_file=path,
        resolved=tuple(item for section in resolved.values() for item in section.values()),
        process_env=MappingProxyType(dict(env)),
    )


def shown_value(item: Resolved) -> str:
    """A value as ``config show`` prints it: TOML-like, secrets masked."""
    value = item.value
    if value is None or value == ():
        return "(not set)" if value is None else "[]"
    if item.setting.secret:
        return "***"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{part}"' for part in value) + "]"
    if isinstance(value, str | Path):
        return f'"{value}"'
    return str(value)


def reference_table(sections: Iterable[Section] = CORE_SECTIONS) -> str:
    """README's table of every core setting, generated from the declaration (a test keeps README in step)."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for section in sections:
        for setting in section.settings:
            default = setting.default
            if default is None:
                shown = "unset"
            elif isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            elif isinstance(default, tuple):
                shown = "`[]`"
            elif isinstance(default, str | Path):
                shown = f'`"{default}"`'
            else:
                shown = f"`{default}`"
            env = f"`{setting.env}`" if setting.env else ""
            lines.append(f"| `[{section.name}] {setting.key}` | {env} | {shown} | {setting.help} |")
    return "\n".join(lines)
