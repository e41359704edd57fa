"""`hookbot dlq replay`: the deliveries the AWS stack parked in its failed-deliveries queue, run again here.

Each message goes through the Lambda worker's own entry (bot/dlq.py), so a replayed delivery is checked,
de-duplicated and handled as it would have been in Lambda; a message is deleted only after it succeeded.
"""

from __future__ import annotations

import asyncio

from bot.config_schema import ConfigError
from bot.runtime import Runtime
from bot.settings import Settings


def dlq_replay(settings: Settings, queue_url: str, max_messages: int | None, dry_run: bool) -> int:
    """`hookbot dlq replay`: the worker's own entry over each parked message (see bot/dlq.py); 1 when any is kept."""
    from bot.aws_lambda import LambdaEntry
    from bot.dlq import replay

    if max_messages is not None and max_messages < 1:
        raise ConfigError("--max must be 1 or more")
    runtime = Runtime.build(settings, dry_run=True if dry_run else None)
    runtime.check_dedupe_table()
    entry = LambdaEntry(runtime)

    async def run() -> int:
        report = await replay(
            entry,
            runtime.dispatcher.aws,
            queue_url,
            max_messages=max_messages,
            keep_all=dry_run,
            say=lambda line: print(line, flush=True),
        )
        deleted = 0 if dry_run else report.succeeded
        left = report.succeeded + report.failed - deleted
        print(f"{report.succeeded} succeeded, {report.failed} failed; {deleted} deleted, {left} left in the queue")
        return 1 if report.failed else 0

    return asyncio.run(run())
