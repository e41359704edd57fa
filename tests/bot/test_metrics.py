"""The metrics module: cheap to import (the Lambda entry never serves /metrics), complete once touched."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_importing_the_modules_that_record_metrics_does_not_import_prometheus() -> None:
    code = "import sys, bot.logs, bot.github, bot.metrics; print('prometheus_client' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "False"


def test_touching_one_metric_registers_every_metric() -> None:
    code = (
        "from bot.metrics import REGISTRY, INBOX_PENDING\n"
        "INBOX_PENDING.set(3)\n"
        "print(sorted(m.name for m in REGISTRY.collect()))\n"
        "print(REGISTRY.get_sample_value('hookbot_inbox_pending'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    names, pending = done.stdout.strip().splitlines()
    for name in ("hookbot_deliveries", "hookbot_handler_seconds", "hookbot_github_requests", "hookbot_journal_batch"):
        assert f"'{name}" in names
    assert pending == "3.0"
