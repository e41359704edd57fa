"""The `hookbot` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import stat
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.config import ConfigError, Settings, load_settings, parse_duration
from bot.delivery import Delivery, Refusal
from bot.github_webhook import parse_payload
from bot.logs import setup_logging
from bot.plugin import Setup
from bot.runtime import Runtime, ensure_webhook_secret, webhook_secrets

log = logging.getLogger("hookbot")


PLUGIN_OPTION: dict[str, Any] = {
    "type": Path,
    "action": "append",
    "default": [],
    "metavar": "PATH",
    "help": "also load the plugin in this .py file or package directory (repeatable), before it is packaged",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookbot", description="GitHub webhook bot server.")
    parser.add_argument("--version", action="version", version=f"hookbot {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $HOOKBOT_CONFIG, else ./hookbot.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    serve.add_argument("--plugin", dest="plugins", **PLUGIN_OPTION)

    replay = commands.add_parser("replay", help="run the handlers on a saved payload and print what they do")
    replay.add_argument("file", type=Path, help="a webhook payload (JSON) as GitHub sent it")
    replay.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. issues")
    replay.add_argument("--action", help="override the payload's action, e.g. opened")
    replay.add_argument("--live", action="store_true", help="really act (default: dry-run)")
    replay.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    replay.add_argument("--plugin", dest="plugins", **PLUGIN_OPTION)

    package = commands.add_parser("package", help="build the AWS Lambda deployment zip (see deploy/README.md)")
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
    package.add_argument("--config", dest="sub_config", help="bundle this config file as hookbot.toml (no secrets)")

    deliveries = commands.add_parser("deliveries", help="the local inbox's recent deliveries and their outcome")
    deliveries.add_argument("--failed", action="store_true", help="only dead letters (failed after retries)")
    deliveries.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    deliveries.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    deliveries_commands = deliveries.add_subparsers(dest="deliveries_command")
    retry = deliveries_commands.add_parser("retry", help="queue failed deliveries again for the server to run")
    retry.add_argument("ids", nargs="*", metavar="ID", help="delivery ids (X-GitHub-Delivery)")
    retry.add_argument("--all-failed", action="store_true", help="every failed delivery")

    redeliver = commands.add_parser("redeliver", help="ask GitHub to redeliver the configured hooks' failed deliveries")
    redeliver.add_argument("--since", default="1h", help="how far back to look: 30m, 1h, 2d (default 1h)")
    redeliver.add_argument("--dry-run", action="store_true", help="only print what would be redelivered")
    redeliver.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    audit = commands.add_parser("audit", help="read the audit log the audit plugin keeps")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    show = audit_commands.add_parser("show", help="print the recorded delivery with this id")
    show.add_argument("delivery_id", help="the X-GitHub-Delivery id")
    show.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
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
    from bot.inbox import journal_path, recent_deliveries, requeue

    path = journal_path(settings.state_dir)
    if not path.is_file():
        print(f"no journal at {path} (has `hookbot serve` run with this state dir?)", file=sys.stderr)
        return 1
    if args.deliveries_command == "retry":
        if not args.ids and not args.all_failed:
            print("hookbot: deliveries retry needs delivery ids or --all-failed", file=sys.stderr)
            return 2
        queued = requeue(path, args.ids, all_failed=args.all_failed)
        for key in queued:
            print(f"queued {printable(key)}")
        for key in sorted(set(args.ids) - set(queued)):
            print(f"not queued {printable(key)}: no failed delivery with this id", file=sys.stderr)
        print(f"{len(queued)} queued again; a running `hookbot serve` picks them up within seconds")
        return 0 if queued or args.all_failed else 1
    for row in recent_deliveries(path, failed_only=args.failed, limit=args.limit):
        received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.received_at))
        delivery_id, event = printable(row.delivery_id), printable(row.event)
        line = f"{received}  {delivery_id}  {event:<14} {row.state:<8} attempts={row.attempts}"
        print(f"{line}  {printable(row.error)}" if row.error else line)
    return 0


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
    """uvloop when installed (``pip install 'hookbot[fast]'``), else asyncio's own loop.

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


def serve(settings: Settings, host: str | None, port: int | None, plugin_paths: Sequence[Path] = ()) -> int:
    from bot.server import create_app, create_metrics_app
    from bot.server_limits import AcceptErrorLog, connection_cap, raise_open_files_limit, run_until_signalled, serve_app

    keep_files_private()
    open_files = raise_open_files_limit()

    secrets = webhook_secrets(settings)
    if not secrets:
        value, created = ensure_webhook_secret(settings.state_dir)
        if created:
            print(
                "hookbot generated a webhook secret (kept in "
                f"{settings.state_dir / 'webhook-secret'}):\n\n    {value}\n\n"
                "Paste it into GitHub: repository Settings > Webhooks > Add webhook > Secret,\n"
                "with Content type application/json and Payload URL http(s)://<this host>/webhook.\n",
                flush=True,
            )
        secrets = [value.encode()]
    check_state_dir(settings.state_dir)
    runtime = Runtime.build(settings, secrets_=secrets, plugin_paths=plugin_paths)
    if runtime.dispatcher.dry_run:
        log.info("dry-run: actions are logged, not performed (set GITHUB_TOKEN or a GitHub App to act)")
    host = host or settings.server.host
    port = port or settings.server.port
    server = settings.server
    if server.metrics_port is None:
        log.info("listening on http://%s:%d (POST /webhook, GET /healthz, GET /metrics)", host, port)
    else:
        log.info("listening on http://%s:%d (POST /webhook, GET /healthz)", host, port)
        log.info("metrics on http://%s:%d/metrics", host, server.metrics_port)
    app = create_app(runtime)
    metrics_app = create_metrics_app(app) if server.metrics_port is not None else None
    tune_garbage_collector()
    loop = new_event_loop()
    loop.set_exception_handler(AcceptErrorLog())
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
        ),
    )
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
    runtime = Runtime.build(
        settings, dry_run=not live or settings.effective_dry_run, secrets_=[], plugin_paths=plugin_paths
    )
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


def package(args: argparse.Namespace, config: str | None) -> int:
    from bot.package import PackageError, build_package

    try:
        summary = build_package(
            args.output,
            arch=args.arch,
            include_boto3=args.include_boto3,
            project=args.project,
            config=Path(config) if config else None,
            extra_requirements=args.with_requirements,
            python=args.python,
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
    setup_logging()
    try:
        settings = load_settings(os.environ, getattr(args, "sub_config", None) or args.config)
        if args.command == "serve":
            return serve(settings, args.host, args.port, args.plugins)
        if args.command == "replay":
            body = args.file.read_bytes()
            return asyncio.run(replay(settings, body, args.event, args.action, args.live, args.plugins))
        if args.command == "package":
            return package(args, getattr(args, "sub_config", None) or args.config)
        if args.command == "deliveries":
            return deliveries(settings, args)
        if args.command == "redeliver":
            return asyncio.run(redeliver(settings, args.since, args.dry_run))
        if args.command == "audit":
            return audit_show(settings, args.delivery_id)
    except (ConfigError, Refusal) as exc:
        print(f"hookbot: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hookbot: {exc}", file=sys.stderr)
        return 2
    return 2
