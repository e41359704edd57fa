"""Wires settings into the long-lived parts every entry point shares: plugins, GitHub clients, dedupe, dispatch."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.aws import AwsClients
from bot.claim_check import PayloadStore
from bot.config import check_webhook_secret
from bot.config_schema import ConfigError
from bot.dedupe import CachedDedupeStore, DedupeStore, DynamoDedupeStore, MemoryDedupeStore, check_table
from bot.dispatch import Dispatcher
from bot.github import GitHubClients
from bot.health import Health
from bot.logs import register_secret
from bot.plugins import Plugin, PluginReport, installed_plugins, load_plugin_report
from bot.repo_config import CeilingEntry, ServerCeiling
from bot.settings import Settings
from bot.sns import SnsVerifier
from bot.sns_fetch import SnsFetcher

if TYPE_CHECKING:
    from bot.relay import Relay
    from bot.repo_config_loader import RepoConfigs

log = logging.getLogger("hookbot")

SECRET_FILE = "webhook-secret"  # noqa: S105 - a file name, not a secret


@dataclass(slots=True)
class Runtime:
    """Everything an entry point (server, Lambda, replay) works with, built once from the settings."""

    settings: Settings
    dispatcher: Dispatcher
    github: GitHubClients
    secrets: list[bytes]
    sns_verifier: SnsVerifier
    sns_fetcher: SnsFetcher
    relay: Relay | None
    health: Health
    payloads: PayloadStore
    plugins: PluginReport

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        dry_run: bool | None = None,
        secrets_: list[bytes] | None = None,
        plugin_paths: Sequence[Path] = (),
    ) -> Runtime:
        """Everything an entry point needs; ``plugin_paths`` are plugins loaded by path (``--plugin``)."""
        effective_dry_run = settings.effective_dry_run if dry_run is None else dry_run
        secret_values = secrets_ if secrets_ is not None else webhook_secrets(settings)
        for value in (*secret_values, settings.github.token, settings.github.private_key):
            register_secret(value)
        report = load_plugin_report(
            settings.handlers,
            settings.plugin_sections,
            settings.process_env,
            plugin_paths,
            config_file=settings.config_file,
        )
        if not effective_dry_run and not settings.github.has_credentials:
            refuse_live_without_credentials(report)
        github = GitHubClients(settings.github, dry_run=effective_dry_run)
        aws = AwsClients()
        health = Health()
        plugins = report.loaded
        dispatcher = Dispatcher(
            plugins,
            github=github,
            dedupe=dedupe_store(settings, aws, health),
            aws=aws,
            dry_run=effective_dry_run,
            # Without credentials there is nothing to read a repository's file with: the server's config applies.
            repo_configs=repo_configs(plugins) if settings.github.has_credentials else None,
        )
        verifier = SnsVerifier.build(
            settings.sns.topic_arns,
            emulator_urls=(settings.aws_endpoint_url_sns, settings.aws_endpoint_url),
            max_age_seconds=settings.sns.max_age_seconds,
        )
        payloads = PayloadStore(aws, settings.relay.payload_bucket, max_bytes=settings.server.max_body_bytes)
        relay: Relay | None = None
        if settings.relay.topic_arn:
            from bot.relay import Relay  # only a relaying server needs it: one import less at a Lambda cold start

            relay = Relay(settings.relay.topic_arn, aws, secrets=secret_values, payloads=payloads)
        return cls(settings, dispatcher, github, secret_values, verifier, SnsFetcher(), relay, health, payloads, report)

    def check_dedupe_table(self) -> None:
        """With ``[dedupe] table``, check its key schema once (DescribeTable): a wrong table stops the start with
        one line (ConfigError) instead of a traceback per delivery. Blocking: call it before the loop runs."""
        if self.settings.dedupe.table:
            check_table(self.dispatcher.aws, self.settings.dedupe.table)

    async def close(self) -> None:
        """Close what is bound to the running event loop; caches (tokens, certificates) are kept for the next."""
        await self.github.close()
        await self.sns_fetcher.close()


def refuse_live_without_credentials(report: PluginReport) -> None:
    """Live mode was asked for without GitHub credentials: fine for plugins that never call GitHub (an S3-only
    auto-deployer), a refusal naming the others, since their calls would fail anonymously for ~30 s each and
    end as dead letters."""
    needing = [plugin.name for plugin in report.loaded if plugin.needs_github]
    if needing:
        raise ConfigError(
            f"live mode was asked for but no GitHub credentials are set, and {', '.join(needing)} "
            f"{'needs' if len(needing) == 1 else 'need'} them: set GITHUB_TOKEN (or GITHUB_APP_ID and "
            "GITHUB_PRIVATE_KEY), or limit [hookbot] handlers to plugins that do not call GitHub "
            '(e.g. handlers = ["lambda_deploy"] with only [[lambda_deploy.s3]] rules)'
        )


def repo_configs(plugins: list[Plugin]) -> RepoConfigs:
    """The reader of repositories' .github/hookbot.yml; imported here, since only a bot with GitHub credentials has
    one (a dry-run Lambda without them does not pay for the import at its cold start)."""
    from bot.repo_config_loader import RepoConfigs

    return RepoConfigs(server_ceiling(plugins))


def server_ceiling(plugins: list[Plugin]) -> ServerCeiling:
    """What a repository's .github/hookbot.yml may narrow: the loaded plugins' configs and declarations."""
    return ServerCeiling(
        loaded={plugin.name: CeilingEntry(plugin.config, plugin.repository_settings) for plugin in plugins},
        installed=frozenset(installed_plugins()),
    )


def dedupe_store(settings: Settings, aws: AwsClients, health: Health | None = None) -> DedupeStore:
    """In-process memory, or, with ``[dedupe] table``, the shared DynamoDB table behind that memory as a cache.

    Chosen here so that every entry point (server, Lambda, replay) de-duplicates the same way.
    """
    local = MemoryDedupeStore(
        ttl_seconds=settings.dedupe.ttl_seconds, claim_timeout=settings.dedupe.claim_timeout_seconds
    )
    if not settings.dedupe.table:
        return local
    shared = DynamoDedupeStore(
        aws,
        settings.dedupe.table,
        ttl_seconds=settings.dedupe.ttl_seconds,
        claim_timeout=settings.dedupe.claim_timeout_seconds,
    )
    return CachedDedupeStore(local, shared, health)


def webhook_secrets(settings: Settings) -> list[bytes]:
    """The current secret first, then the previous ones still accepted during a rotation."""
    current = settings.github.webhook_secret
    values = [current] if current else []
    values.extend(settings.github.previous_secrets)
    return [value.encode() for value in values]


def ensure_webhook_secret(state_dir: Path) -> tuple[str, bool]:
    """Read the generated secret from the state dir, making one on first start; True when it is new.

    hookbot never runs unauthenticated: with no secret configured it makes a strong one and keeps it, so
    restarts keep accepting the deliveries GitHub signs with it.

    The file appears whole or not at all: the secret is written and synced under a temporary name, then linked
    to its real name (which, unlike a rename, never replaces a file another process made meanwhile). A file
    that is blank or short anyway (a ``touch``, an empty mounted secret) is refused, never used as a key.
    """
    path = state_dir / SECRET_FILE
    if not path.is_file():
        state_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        temporary = state_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(value + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the one to keep (and was printed by them)
        else:
            return value, True
        finally:
            temporary.unlink(missing_ok=True)
    source = f"the generated file {path} (delete it to have a new one made, or write your own)"
    return check_webhook_secret(path.read_text().strip(), source), False
