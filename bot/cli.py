"""The `hookbot` command (also `python -m bot`): the argument parser and the dispatch to each command.

Each command group lives in its own module under bot/commands/; this module only parses, loads the settings and
logging every command shares, and turns a user's mistake (ConfigError, Refusal, OSError) into one line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.commands.audit import audit_show
from bot.commands.config import config_check, config_show
from bot.commands.deliveries import deliveries, redeliver
from bot.commands.dlq import dlq_replay
from bot.commands.local import replay, send
from bot.commands.package import package
from bot.commands.serve import serve
from bot.config import load_settings, reference_table
from bot.config_schema import ConfigError
from bot.delivery import Refusal
from bot.logs import LOG_FORMATS, register_secret, setup_logging

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

    dlq = commands.add_parser("dlq", help="the AWS stack's failed-deliveries queue (see deploy/README.md)")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_replay_parser = dlq_commands.add_parser(
        "replay",
        parents=[common],
        help="run the deliveries parked in the queue again; delete each message only after it succeeded",
    )
    dlq_replay_parser.add_argument("queue_url", metavar="QUEUE_URL", help="the FailedDeliveriesQueueUrl output")
    dlq_replay_parser.add_argument("--dry-run", action="store_true", help="run handlers in dry-run, delete nothing")
    dlq_replay_parser.add_argument("--max", type=int, dest="max_messages", metavar="N", help="at most N messages")

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
        if args.command == "dlq":
            return dlq_replay(settings, args.queue_url, args.max_messages, args.dry_run)
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
