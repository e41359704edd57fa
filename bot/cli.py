"""The `hookbot` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import gc
import logging
import os
import stat
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import __version__
from bot.config import ConfigError, Resolved, Section, Settings, load_settings, parse_duration, reference_table
from bot.delivery import Delivery, Refusal
from bot.github_webhook import parse_payload
from bot.logs import LOG_FORMATS, register_secret, setup_logging
from bot.plugin import Setup
from bot.plugins import Plugin
from bot.runtime import SECRET_FILE, Runtime, ensure_webhook_secret, server_ceiling, webhook_secrets

if TYPE_CHECKING:
    from bot.inbox import JournalRow

log = logging.getLogger("hookbot")


DEFAULT_SEND_URL = "http://127.0.0.1:8080/webhook"
CONFIG_HELP = "TOML config file (default: $HOOKBOT_CONFIG, else ./hookbot.toml when present)"
LOG_FORMAT_HELP = "console or json (default: $HOOKBOT_LOG_FORMAT, else console on a terminal and json otherwise)"
LOG_LEVEL_HELP = "debug, info, warning or error (default: $HOOKBOT_LOG_LEVEL, else info; warning for replay)"
PLUGIN_OPTION: dict[str, Any] = {
    "type": Path,
    "action": "append",
    "default": [],
    "metavar": "PATH",
    "help": "also load the plugin in this .py file or package directory (repeatable), before it is packaged",
}


def build_parser() -> argparse.ArgumentParser:
    # Every command takes the same --config and log options, before or after its name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", dest="sub_config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    common.add_argument(
        "--log-format", dest="sub_log_format", choices=LOG_FORMATS, default=argparse.SUPPRESS, help=LOG_FORMAT_HELP
    )
    common.add_argument(
        "--log-level", dest="sub_log_level", metavar="LEVEL", default=argparse.SUPPRESS, help=LOG_LEVEL_HELP
    )
    parser = argparse.ArgumentParser(prog="hookbot", description="GitHub webhook bot server.")
    parser.add_argument("--version", action="version", version=f"hookbot {__version__}")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--log-format", choices=LOG_FORMATS, help=LOG_FORMAT_HELP)
    parser.add_argument("--log-level", metavar="LEVEL", help=LOG_LEVEL_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[common])

    serve = command("serve", "run the webhook server")
    serve.add_argument("--host", help="address to listen on (default: [server] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: [server] port, 8080)")
    serve.add_argument("--plugin", dest="plugins", **PLUGIN_OPTION)

    replay = command("replay", "run the handlers on a saved payload and print what they do")
    replay.add_argument("file", type=Path, help="a webhook payload (JSON) as GitHub sent it")
    replay.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. issues")
    replay.add_argument("--action", help="override the payload's action, e.g. opened")
    replay.add_argument(
        "--live", action="store_true", help="really act (needs GitHub credentials for plugins that call GitHub)"
    )
    replay.add_argument("--plugin", dest="plugins", **PLUGIN_OPTION)

    send = command("send", "sign a payload file with the webhook secret and post it to a running hookbot")
    send.add_argument("file", type=Path, help="a webhook payload (JSON)")
    send.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. issues")
    send.add_argument("--url", default=DEFAULT_SEND_URL, help=f"where to post (default {DEFAULT_SEND_URL})")
    send.add_argument("--delivery", help="the X-GitHub-Delivery id (default: a new UUID)")
    send.add_argument("--form", action="store_true", help="post form-encoded (payload=...) instead of JSON")

    package = command(
        "package",
        "build the AWS Lambda deployment zip (see deploy/README.md); a config file given with --config is checked "
        "and put in the zip as hookbot.toml (it must hold no secrets)",
    )
    package.add_argument("--output", type=Path, default=Path("dist/hookbot-lambda.zip"), help="zip to write")
    package.add_argument("--arch", choices=("arm64", "x86_64"), default="arm64", help="Lambda architecture")
    package.add_argument("--include-boto3", action="store_true", help="bundle boto3 instead of the runtime's")
    package.add_argument(
        "--with", dest="with_requirements", action="append", default=[], metavar="REQ", help="also bundle REQ (plugins)"
    )
    package.add_argument("--project", type=Path, help="hookbot source tree (default: this checkout)")
    package.add_argument(
        "--python",
        help="Python 3.12 interpreter to compile bytecode with (default: python3.12 on PATH or beside this Python)",
    )

    deliveries = command("deliveries", "the local inbox's recent deliveries and their outcome")
    deliveries.add_argument("--failed", action="store_true", help="only dead letters (failed after retries)")
    deliveries.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    deliveries.add_argument("--json", action="store_true", help="one JSON object per line, ids in full")
    deliveries_commands = deliveries.add_subparsers(dest="deliveries_command")
    retry = deliveries_commands.add_parser("retry", help="queue failed deliveries again for the server to run")
    retry.add_argument("ids", nargs="*", metavar="ID", help="delivery ids (X-GitHub-Delivery), or their short form")
    retry.add_argument("--all-failed", action="store_true", help="every failed delivery")

    redeliver = command("redeliver", "ask GitHub to redeliver the configured hooks' failed deliveries")
    redeliver.add_argument("--since", default="1h", help="how far back to look: 30m, 1h, 2d (default 1h)")
    redeliver.add_argument("--dry-run", action="store_true", help="only print what would be redelivered")

    config = command("config", "check the configuration, or show the effective settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", parents=[common], help="check the config file and the plugins' sections without starting"
    )
    check.add_argument(
        "--repo-file",
        type=Path,
        metavar="FILE",
        help="also check a repository's .github/hookbot.yml against what this config lets a repository set",
    )
    config_commands.add_parser(
        "show", parents=[common], help="print every setting's effective value and its source (secrets masked)"
    )
    config_commands.add_parser("reference", help="print the table of core settings (Markdown, as in README)")

    audit = command("audit", "read the audit log the audit plugin keeps")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    show = audit_commands.add_parser("show", parents=[common], help="print the recorded delivery with this id")
    show.add_argument("delivery_id", help="the X-GitHub-Delivery id")
    return parser


PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Everything hookbot writes from here on is for its own user only: state dir 0700, files 0600.

    The state dir holds the webhook secret and the journal, whose rows are raw delivery bodies (private
    repositories' issues and code); the umask covers files made later too, by SQLite (the WAL) and by plugins.
    """
    os.umask(PRIVATE_UMASK)


def check_state_dir(state_dir: Path) -> None:
    """Fail at start, with one clear line, when the journal cannot be kept (rather than on the first delivery).

    A state dir (and its files) made by an older hookbot, or by hand, with access for others is made private.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_private(state_dir, 0o700)
        for path in state_dir.iterdir():
            if path.is_file() and not path.is_symlink():
                make_private(path, 0o600)
        probe = state_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"state dir {state_dir} is not writable ({exc.strerror}); set HOOKBOT_STATE_DIR to a writable directory"
        ) from None


def make_private(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & PRIVATE_UMASK:
        path.chmod(mode)
        log.info("made %s private (mode %o, was %o)", path, mode, current)


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (``\\x1b``), safe to print to a terminal.

    Delivery ids, event names and errors in the journal came from headers no signature covers or from handlers.
    exceptions: printed raw, an escape sequence in one could clear or rewrite the operator's screen.
    """
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from bot.inbox import journal_path, recent_deliveries, requeue, resolve_ids

    path = journal_path(settings.state_dir)
    if not path.is_file():
        print(f"no deliveries yet: no journal at {path} (has `hookbot serve` run with this state dir?)")
        return 0
    if args.deliveries_command == "retry":
        if not args.ids and not args.all_failed:
            print("hookbot: deliveries retry needs delivery ids or --all-failed", file=sys.stderr)
            return 2
        ids, problems = resolve_ids(path, args.ids)
        for problem in problems:
            print(f"not queued {printable(problem)}", file=sys.stderr)
        queued = requeue(path, ids, all_failed=args.all_failed)
        for key in queued:
            print(f"queued {printable(key)}")
        for key in sorted(set(ids) - set(queued)):
            print(f"not queued {printable(key)}: no failed delivery with this id", file=sys.stderr)
        print(f"{len(queued)} queued again; a running `hookbot serve` picks them up within a second")
        return 0 if queued or args.all_failed else 1
    rows = recent_deliveries(path, failed_only=args.failed, limit=args.limit)
    if args.json:
        import orjson

        for row in rows:
            print(orjson.dumps(dataclasses.asdict(row)).decode())
        return 0
    if not rows:
        print("no failed deliveries" if args.failed else "no deliveries yet")
        return 0
    print(deliveries_table(rows))
    return 0


def deliveries_table(rows: Sequence[JournalRow]) -> str:
    """The journal's rows as an aligned table with a header; ids in the short form the logs use."""
    from bot.delivery import short_id

    header = ("RECEIVED", "ID", "EVENT", "REPOSITORY", "STATE", "ATTEMPTS", "LAST ERROR")
    table = [header]
    for row in rows:
        # Every field a sender chose (ids, event names, the payload's action and repository, error text quoting
        # them) is escaped: a terminal must not run a control sequence hidden in a delivery.
        event = f"{row.event}.{row.action}" if row.action else row.event
        table.append(
            (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.received_at)),
                printable(short_id(row.delivery_id)),
                printable(event),
                printable(row.repository or "-"),
                row.state,
                str(row.attempts),
                printable(row.error or ""),
            )
        )
    widths = [max(len(line[column]) for line in table) for column in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]).rstrip()
        for line in table
    )


async def redeliver(settings: Settings, since: str, dry_run: bool) -> int:
    from bot.redeliver import redeliver as ask_redelivery

    dry_run = dry_run or bool(settings.dry_run)
    runtime = Runtime.build(settings, secrets_=[])
    try:
        report = await ask_redelivery(runtime, parse_duration(since, "--since"), dry_run=dry_run)
    finally:
        await runtime.close()
    verb = "would redeliver" if dry_run else "redelivered"
    for guid in report.redelivered:
        print(f"{verb} {guid}")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"{report.checked} attempts checked, {len(report.redelivered)} {verb}")
    return 1 if report.errors else 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (``pip install '.[fast]'`` from a checkout), else asyncio's own loop.

    uvloop's C transports cut the server's per-request cost on the hot path (reading the body, writing the
    answer) by about a quarter; it stays optional because it is not built for every platform.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the receive path of a long-running server.

    Measured under load (BENCHMARKS.md): with the defaults a full collection ran about once a second and walked
    every object made at start (modules, aiohttp, the plugins), pausing the loop 18-21 ms each time, which is
    what the slowest answers waited for; and each parsed payload's few hundred objects set off a young
    collection every ~30 deliveries (~190 us each, 3% of the CPU). Freezing what exists at start takes it out of
    every later collection, and a higher first threshold lets payloads die before anything walks them; cycles
    are still collected, just in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def secret_source(settings: Settings, generated: bool | None) -> str:
    """Where the webhook secret came from, for the start-up summary (never the secret itself)."""
    if generated is not None:
        where = settings.state_dir / SECRET_FILE
        return f"generated now, kept in {where}" if generated else f"generated earlier, kept in {where}"
    for item in settings.resolved:
        if item.section == "github" and item.setting.key == "webhook_secret":
            if item.source == "file":
                return f"config file {item.origin}"
            for suffix in ("_SSM_PARAMETER", "_SECRETS_MANAGER_ID"):
                if f"{item.origin}{suffix}" in os.environ:
                    return f"{item.origin}{suffix}"
            return f"environment ({item.origin})"
    return "none"


def log_startup(runtime: Runtime, secret_from: str) -> None:
    """One line each for what a first start needs to know, in both log formats."""
    settings = runtime.settings
    config = str(settings.config_file) if settings.config_file else "none"
    log.info("hookbot %s", __version__, extra={"fields": {"version": __version__}})
    log.info("config file: %s", config, extra={"fields": {"config_file": config}})
    log.info("state dir: %s", settings.state_dir, extra={"fields": {"state_dir": str(settings.state_dir)}})
    log.info("GitHub auth: %s", settings.github.auth_mode, extra={"fields": {"auth": settings.github.auth_mode}})
    log.info("webhook secret: %s", secret_from, extra={"fields": {"secret_from": secret_from}})
    if runtime.dispatcher.dry_run:
        why = "HOOKBOT_DRY_RUN" if settings.dry_run else "no GitHub credentials: set GITHUB_TOKEN or a GitHub App"
        log.info("mode: dry-run, actions are logged, not performed (%s)", why, extra={"fields": {"mode": "dry-run"}})
    else:
        log.info("mode: live", extra={"fields": {"mode": "live"}})
    names = [plugin.name for plugin in runtime.plugins.loaded]
    log.info("plugins loaded: %s", ", ".join(names) or "none", extra={"fields": {"plugins": names}})
    for name, reason in runtime.plugins.not_loaded.items():
        log.info("plugin %s not loaded: %s", name, reason, extra={"fields": {"plugin": name, "reason": reason}})


def serve(settings: Settings, host: str | None, port: int | None, plugin_paths: Sequence[Path] = ()) -> int:
    from bot.serve_loop import AcceptErrorLog, connection_cap, raise_open_files_limit, run_until_signalled, serve_app
    from bot.server import create_app, create_metrics_app

    keep_files_private()
    open_files = raise_open_files_limit()

    secrets = webhook_secrets(settings)
    generated: bool | None = None
    if not secrets:
        value, generated = ensure_webhook_secret(settings.state_dir)
        if generated:
            print(
                "hookbot generated a webhook secret (kept in "
                f"{settings.state_dir / SECRET_FILE}):\n\n    {value}\n\n"
                "Paste it into GitHub: repository Settings > Webhooks > Add webhook > Secret,\n"
                "with Content type application/json and Payload URL http(s)://<this host>/webhook.\n",
                flush=True,
            )
        secrets = [value.encode()]
    check_state_dir(settings.state_dir)
    runtime = Runtime.build(settings, secrets_=secrets, plugin_paths=plugin_paths)
    log_startup(runtime, secret_source(settings, generated))
    host = host or settings.server.host
    port = port or settings.server.port
    server = settings.server
    app = create_app(runtime)
    metrics_app = create_metrics_app(app) if server.metrics_port is not None else None
    tune_garbage_collector()

    def listening() -> None:  # once every socket is bound: a port clash never says "listening" first
        fields = {"host": host, "port": port}
        if server.metrics_port is None:
            routes = "POST /webhook, GET /healthz, GET /metrics"
            log.info("listening on http://%s:%d (%s)", host, port, routes, extra={"fields": fields})
        else:
            log.info("listening on http://%s:%d (POST /webhook, GET /healthz)", host, port, extra={"fields": fields})
            log.info("metrics on http://%s:%d/metrics", host, server.metrics_port)

    loop = new_event_loop()
    loop.set_exception_handler(AcceptErrorLog())
    try:
        run_until_signalled(
            loop,
            serve_app(
                app,
                host,
                port,
                max_connections=connection_cap(server.max_connections, open_files),
                idle_timeout=server.idle_timeout_seconds,
                metrics_app=metrics_app,
                metrics_port=server.metrics_port,
                on_listening=listening,
            ),
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise ConfigError(
                f"cannot listen on {host}:{port}: {os.strerror(exc.errno)} (choose another: --port or [server] port)"
            ) from None
        raise
    return 0


async def replay(
    settings: Settings,
    body: bytes,
    event: str,
    action: str | None,
    live: bool,
    plugin_paths: Sequence[Path] = (),
) -> int:
    payload = parse_payload(body, "application/json")
    if action:
        payload["action"] = action
    delivery = Delivery(event=event, delivery_id=f"replay-{uuid.uuid4()}", payload=payload, body=body, source="replay")
    # --live asks for live mode whatever the environment says; without the credentials a loaded plugin needs,
    # Runtime.build refuses rather than quietly staying in dry-run.
    runtime = Runtime.build(settings, dry_run=not live, secrets_=[], plugin_paths=plugin_paths)
    try:
        result = await runtime.dispatcher.dispatch(delivery)
    finally:
        await runtime.close()
    for line in result.actions:
        print(line)
    if not result.actions:
        print(f"no actions for {delivery.describe()}")
    for outcome in result.outcomes:
        if outcome.status == "failed":
            print(f"handler {outcome.handler} failed: {outcome.error}", file=sys.stderr)
    return 0 if result.ok else 1


def send(settings: Settings, args: argparse.Namespace) -> int:
    """Post a payload file to a running hookbot exactly as GitHub would: signed, with GitHub's headers."""
    import hashlib
    import hmac
    import urllib.error
    import urllib.parse
    import urllib.request

    secret = settings.github.webhook_secret or read_generated_secret(settings.state_dir)
    if not secret:
        raise ConfigError(
            "no webhook secret to sign with: set GITHUB_WEBHOOK_SECRET, or start `hookbot serve` once with this "
            f"state dir so it generates one in {settings.state_dir / SECRET_FILE}"
        )
    payload = args.file.read_bytes()
    if args.form:
        body = urllib.parse.urlencode({"payload": payload.decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = payload, "application/json"
    delivery_id = args.delivery or str(uuid.uuid4())
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - the URL is the user's own --url
        args.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "User-Agent": f"GitHub-Hookshot/hookbot-send-{__version__}",
            "X-GitHub-Event": args.event,
            "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, reason, text = answer.status, answer.reason, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, reason, text = exc.code, exc.reason, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"hookbot: cannot reach {args.url}: {reason} (is `hookbot serve` running?)", file=sys.stderr)
        return 1
    print(f"delivery {delivery_id}: {status} {reason}")
    print(text.rstrip())
    return 0 if 200 <= status < 300 else 1


def read_generated_secret(state_dir: Path) -> str | None:
    path = state_dir / SECRET_FILE
    return path.read_text().strip() if path.is_file() else None


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


def package(args: argparse.Namespace, config: str | None) -> int:
    """Build the zip; ``--config`` means what it means everywhere (the config file, already checked by the
    caller), and the Lambda gets that same file."""
    from bot.package import PackageError, build_package

    def progress(step: str) -> None:
        print(f"{step} ...", flush=True)

    try:
        summary = build_package(
            args.output,
            arch=args.arch,
            include_boto3=args.include_boto3,
            project=args.project,
            config=Path(config) if config else None,
            extra_requirements=args.with_requirements,
            python=args.python,
            progress=progress,
        )
    except PackageError as exc:
        print(f"hookbot package: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def audit_show(settings: Settings, delivery_id: str) -> int:
    """Print one audit record as JSON; the [audit] section is checked by the plugin's own set-up."""
    import orjson

    import handlers.audit
    from bot.aws import AwsClients
    from bot.plugins import set_up
    from handlers.audit.records import read_record

    plugin = set_up("audit", handlers.audit, Setup("audit", settings.plugin_sections.get("audit", {}), {}))
    config = plugin.config if plugin else None  # None: installed but not set up
    if config is None or config.destination is None:
        raise ConfigError('[audit] destination is not set; e.g. destination = "dynamodb://hookbot-audit"')
    record = read_record(config.destination, AwsClients(), delivery_id)
    if record is None:
        print(f"hookbot: no audit record of delivery {delivery_id} in {config.destination}", file=sys.stderr)
        return 1
    print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config" and args.config_command == "reference":
            print(reference_table())
            return 0
        settings = load_settings(os.environ, getattr(args, "sub_config", None) or args.config)
        default_level = "warning" if args.command == "replay" else "info"
        setup_logging(
            getattr(args, "sub_log_format", None) or args.log_format or settings.log_format,
            getattr(args, "sub_log_level", None) or args.log_level or settings.log_level or default_level,
        )
        for item in settings.resolved:
            if item.setting.secret and isinstance(item.value, str):
                register_secret(item.value)
        if args.command == "serve":
            return serve(settings, args.host, args.port, args.plugins)
        if args.command == "replay":
            body = args.file.read_bytes()
            return asyncio.run(replay(settings, body, args.event, args.action, args.live, args.plugins))
        if args.command == "send":
            return send(settings, args)
        if args.command == "package":
            return package(args, getattr(args, "sub_config", None) or args.config)
        if args.command == "deliveries":
            return deliveries(settings, args)
        if args.command == "redeliver":
            return asyncio.run(redeliver(settings, args.since, args.dry_run))
        if args.command == "config":
            if args.config_command == "check":
                return config_check(settings, args.repo_file)
            return config_show(settings)
        if args.command == "audit":
            return audit_show(settings, args.delivery_id)
    except (ConfigError, Refusal) as exc:
        print(f"hookbot: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hookbot: {exc}", file=sys.stderr)
        return 2
    return 2
