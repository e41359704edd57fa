"""What one delivery log line costs, with the caller's file and line looked up and without.

Run: `.venv/bin/python bench/log_line.py`. Each variant runs in its own process (the logger class is chosen when
a logger is made): ``lookup`` is the logging module's default, ``srcfile-none`` the old patch of the private
``logging._srcfile`` (issue 15 forbids patching logging internals), ``findcaller`` what bot/logs.py does now (a
logger class overriding the documented ``findCaller``). Not a test: CI never runs it.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import timeit

LINES = 5000
REPEATS = 80
VARIANTS = ("lookup", "srcfile-none", "findcaller")


def measure(variant: str) -> float:
    """Microseconds per line, the best of REPEATS runs of LINES lines, formatted as JSON into memory."""
    from bot.logs import JsonFormatter  # importing bot.logs installs the findCaller-overriding logger class

    if variant != "findcaller":
        logging.setLoggerClass(logging.Logger)
    if variant == "srcfile-none":
        logging._srcfile = None  # the old patch, measured here only
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    log = logging.getLogger(f"hookbot.bench.{variant}")
    fields = {"event": "issues", "action": "opened", "repository": "o/r", "outcome": "done", "ms": 3.1}

    def line() -> None:
        log.info("delivery %s", "done", extra={"fields": fields})

    return min(timeit.repeat(line, number=LINES, repeat=REPEATS)) / LINES * 1e6


def main() -> None:
    if len(sys.argv) > 1:
        print(f"{measure(sys.argv[1]):.2f}")
        return
    for variant in VARIANTS:
        result = subprocess.run([sys.executable, __file__, variant], capture_output=True, text=True, check=True)
        print(f"{variant:<13} {result.stdout.strip()} us per line")


if __name__ == "__main__":
    main()
