"""Settings from the TOML file and the environment, read once at start into plain typed values.

Only this module (and the CLI that calls it) reads environment variables; handlers get their own config section.
Precedence: environment variable, then the config file, then the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

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

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or (self.app_id and self.private_key))


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
    require_github_signature: bool = False
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
    plugin_sections: Mapping[str, Any] = field(default_factory=dict)
    aws_endpoint_url: str | None = None
    aws_endpoint_url_sns: str | None = None
    # The environment hookbot started with, for a plugin that hands parts of it on to something it runs (exec:
    # PATH, LAMBDA_TASK_ROOT, its `env` allow-list). Read here, once, so no plugin reads the environment itself.
    process_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def effective_dry_run(self) -> bool:
        """Dry-run when asked for; when not said, whenever there is nothing to authenticate to GitHub with.

        ``HOOKBOT_DRY_RUN=0`` said explicitly acts even without GitHub credentials: an S3-only auto-deployer
        needs AWS, not GitHub.
        """
        if self.dry_run is not None:
            return self.dry_run
        return not self.github.has_credentials


CORE_SECTIONS = {"github", "sns", "server", "dedupe", "relay", "hookbot"}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def _float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {value!r}") from None


Number = TypeVar("Number", int, float)


def _positive(value: Number, name: str) -> Number:
    if value <= 0:
        raise ConfigError(f"{name} must be more than zero, not {value!r}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigError(f"{name} must be a list of strings, not {value!r}")


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] in the config file must be a table")
    return section


def _read_file(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file: a Lambda without a bundled config never pays for the parser

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (set HOOKBOT_CONFIG or --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _webhook_secret(env: Mapping[str, str], github: Mapping[str, Any], path: Path | None) -> str | None:
    """The configured webhook secret, checked, or None (then `serve` generates one); set but blank is refused."""
    if "GITHUB_WEBHOOK_SECRET" in env:
        references = (
            ("SSM parameter", env.get("GITHUB_WEBHOOK_SECRET_SSM_PARAMETER", "").strip()),
            ("Secrets Manager secret", env.get("GITHUB_WEBHOOK_SECRET_SECRETS_MANAGER_ID", "").strip()),
        )
        source = "GITHUB_WEBHOOK_SECRET" + "".join(f" (from {kind} {ref})" for kind, ref in references if ref)
        return check_webhook_secret(env["GITHUB_WEBHOOK_SECRET"], source)
    value = github.get("webhook_secret")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[github] webhook_secret of {path} must be a string")
    return check_webhook_secret(value, f"[github] webhook_secret of {path}")


def load_settings(env: Mapping[str, str], config_path: str | Path | None = None) -> Settings:
    """Build Settings from an environment mapping and an optional TOML file (pure apart from reading files).

    Secrets named by ``<NAME>_SSM_PARAMETER`` / ``<NAME>_SECRETS_MANAGER_ID`` are fetched first (bot/aws_secrets.py).
    """
    from bot.aws_secrets import resolve_secrets  # imported here: it raises this module's ConfigError

    env = resolve_secrets(env)
    path_text = config_path or env.get("HOOKBOT_CONFIG")
    if path_text:
        path: Path | None = Path(path_text)
    else:
        path = Path("hookbot.toml") if Path("hookbot.toml").is_file() else None
    data = _read_file(path) if path else {}

    gh = _section(data, "github")
    private_key = env.get("GITHUB_PRIVATE_KEY") or gh.get("private_key")
    key_path = env.get("GITHUB_PRIVATE_KEY_PATH") or gh.get("private_key_path")
    if not private_key and key_path:
        try:
            private_key = Path(key_path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read GITHUB_PRIVATE_KEY_PATH {key_path}: {exc.strerror}") from None
    app_id = env.get("GITHUB_APP_ID") or gh.get("app_id")
    if bool(app_id) != bool(private_key):
        raise ConfigError(
            "GitHub App auth needs both GITHUB_APP_ID and GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)"
        )
    every = gh.get("redeliver_every")
    github = GitHubSettings(
        webhook_secret=_webhook_secret(env, gh, path),
        previous_secrets=tuple(
            check_webhook_secret(value, f"[github] previous_secrets[{index}] of {path}")
            for index, value in enumerate(_strings(gh.get("previous_secrets", []), "[github] previous_secrets"))
        ),
        allow_sha1=_bool(gh.get("allow_sha1", False), "[github] allow_sha1"),
        token=env.get("GITHUB_TOKEN") or gh.get("token"),
        app_id=str(app_id) if app_id else None,
        private_key=private_key,
        api_url=(env.get("GITHUB_API_URL") or gh.get("api_url") or DEFAULT_API_URL).rstrip("/"),
        bot_login=gh.get("bot_login"),
        hooks=_strings(gh.get("hooks", []), "[github] hooks"),
        redeliver_every=parse_duration(str(every), "[github] redeliver_every") if every else None,
    )

    srv = _section(data, "server")
    server = ServerSettings(
        host=str(srv.get("host", "127.0.0.1")),
        port=_int(srv.get("port", 8080), "[server] port"),
        max_body_bytes=_int(srv.get("max_body_bytes", GITHUB_MAX_BODY), "[server] max_body_bytes"),
        queue_size=_int(srv.get("queue_size", 1000), "[server] queue_size"),
        workers=_int(srv.get("workers", 8), "[server] workers"),
        max_attempts=_int(srv.get("max_attempts", 5), "[server] max_attempts"),
        retry_base_seconds=_float(srv.get("retry_base_seconds", 2.0), "[server] retry_base_seconds"),
        shutdown_grace_seconds=_float(srv.get("shutdown_grace_seconds", 8.0), "[server] shutdown_grace_seconds"),
        read_deadline_seconds=_positive(
            _float(srv.get("read_deadline_seconds", GITHUB_TIMEOUT_SECONDS), "[server] read_deadline_seconds"),
            "[server] read_deadline_seconds",
        ),
        max_buffered_bytes=_int(srv.get("max_buffered_bytes", MAX_BUFFERED_BYTES), "[server] max_buffered_bytes"),
        max_connections=_positive(
            _int(srv.get("max_connections", 1000), "[server] max_connections"), "[server] max_connections"
        ),
        idle_timeout_seconds=_positive(
            _float(srv.get("idle_timeout_seconds", 10.0), "[server] idle_timeout_seconds"),
            "[server] idle_timeout_seconds",
        ),
        metrics_token=env.get("HOOKBOT_METRICS_TOKEN") or srv.get("metrics_token") or None,
        metrics_port=_int(srv["metrics_port"], "[server] metrics_port") if "metrics_port" in srv else None,
    )
    if server.max_buffered_bytes < server.max_body_bytes:
        raise ConfigError(
            f"[server] max_buffered_bytes ({server.max_buffered_bytes}) must be at least max_body_bytes "
            f"({server.max_body_bytes}): otherwise a body of the allowed size could never be read"
        )

    sns_data = _section(data, "sns")
    sns = SnsSettings(
        topic_arns=_strings(env.get("SNS_TOPIC_ARNS", sns_data.get("topic_arns", [])), "SNS_TOPIC_ARNS"),
        require_github_signature=_bool(
            sns_data.get("require_github_signature", False), "[sns] require_github_signature"
        ),
        verify_in_lambda=_bool(sns_data.get("verify_in_lambda", False), "[sns] verify_in_lambda"),
        max_age_seconds=_int(sns_data.get("max_age_seconds", 3600), "[sns] max_age_seconds"),
    )

    dd = _section(data, "dedupe")
    dedupe = DedupeSettings(
        ttl_seconds=_int(dd.get("ttl_seconds", 7 * 24 * 3600), "[dedupe] ttl_seconds"),
        table=env.get("HOOKBOT_DEDUPE_TABLE") or dd.get("table"),
        claim_timeout_seconds=_int(dd.get("claim_timeout_seconds", 900), "[dedupe] claim_timeout_seconds"),
    )

    rl = _section(data, "relay")
    relay = RelaySettings(
        topic_arn=env.get("HOOKBOT_RELAY_TOPIC_ARN") or rl.get("topic_arn"),
        also_handle=_bool(rl.get("also_handle", False), "[relay] also_handle"),
    )

    core = _section(data, "hookbot")
    handlers_value = core.get("handlers", data.get("handlers"))
    handlers = _strings(handlers_value, "handlers") if handlers_value is not None else None
    state_dir = env.get("HOOKBOT_STATE_DIR") or core.get("state_dir") or ".hookbot"
    dry_run_value = env.get("HOOKBOT_DRY_RUN", core.get("dry_run"))
    dry_run = None if dry_run_value is None else _bool(dry_run_value, "HOOKBOT_DRY_RUN")

    return Settings(
        github=github,
        server=server,
        sns=sns,
        dedupe=dedupe,
        relay=relay,
        state_dir=Path(state_dir),
        dry_run=dry_run,
        handlers=handlers,
        plugin_sections={k: v for k, v in data.items() if k not in CORE_SECTIONS and isinstance(v, Mapping)},
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_endpoint_url_sns=env.get("AWS_ENDPOINT_URL_SNS"),
        process_env=MappingProxyType(dict(env)),
    )
