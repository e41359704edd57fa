"""`hookbot deliveries` and `hookbot redeliver`: what the journal and GitHub know of past deliveries.

Both print what a sender chose (ids, event names, error text), so every such field is escaped first: a terminal
must not run a control sequence hidden in a delivery.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.config_schema import parse_duration
from bot.runtime import Runtime
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.inbox import JournalRow


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
