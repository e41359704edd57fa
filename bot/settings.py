"""hookbot's own settings: every core section declared once, and the typed values they load into.

``CORE_SECTIONS`` is the single declaration of every core setting (its type, default, environment variable and
help): bot/config.py reads the file and the environment against it, and README's reference table is generated
from it. The frozen dataclasses below are what the rest of hookbot gets, plain typed values read once at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from bot.config_schema import Resolved, Section, Setting
from bot.records import record

DEFAULT_API_URL = "https://api.github.com"
GITHUB_MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB.
GITHUB_TIMEOUT_SECONDS = 10.0  # GitHub gives up on a delivery after 10 s, so no genuine body takes longer.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024


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


@record
class GitHubSettings:
    """``[github]``: how deliveries are checked and how hookbot talks to GitHub."""

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
    # How long one GitHub API request may take before the client gives up. After a crash, a delivery that had begun
    # a write waits this long from its start mark (bot/effects.py), so whatever it had in flight has landed or failed.
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


@record
class ServerSettings:
    """``[server]``: what `hookbot serve` listens on and the bounds it keeps."""

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


@record
class SnsSettings:
    """``[sns]``: which SNS messages are accepted, and how they are checked."""

    topic_arns: tuple[str, ...] = ()
    require_github_signature: bool = True
    verify_in_lambda: bool = False
    max_age_seconds: int = 3600


@record
class DedupeSettings:
    """``[dedupe]``: how long and where handled deliveries are remembered."""

    ttl_seconds: int = 7 * 24 * 3600
    table: str | None = None
    claim_timeout_seconds: int = 900


@record
class RelaySettings:
    """``[relay]``: the SNS topic verified deliveries are passed on to, if any."""

    topic_arn: str | None = None
    also_handle: bool = False
    payload_bucket: str | None = None  # S3 bucket for deliveries over SNS's 256 KiB (see bot/claim_check.py)


@record
class Settings:
    """Every setting hookbot read at start: the core sections, the plugins' sections as written, and where each
    value came from."""

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
