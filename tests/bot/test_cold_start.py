"""What a Lambda cold start pays for: a first SNS-borne delivery, in a fresh interpreter, dry-run without GitHub
credentials (the default plugins), imports and builds only what that delivery needs (BENCHMARKS.md, cold start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.github_webhook import sign
from tests.helpers import SECRET, fixture_bytes
from tests.lambda_events import sns_event
from tests.sns_signing import TOPIC, notification

FIRST_DELIVERY = """
import gc, json, sys
import bot.aws_lambda
result = bot.aws_lambda.handler(json.loads(open(sys.argv[1]).read()), None)
import aiohttp
print(json.dumps({
    "result": result,
    "modules": sorted(name for name in sys.argv[2:] if name in sys.modules),
    "sessions": sum(isinstance(thing, aiohttp.ClientSession) for thing in gc.get_objects()),
    "guarded": sorted(
        f"{name}.{value.__name__}"
        for name, module in list(sys.modules.items())
        if name.startswith(("bot.", "handlers."))
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == name
        and getattr(getattr(value, "__dataclass_params__", None), "frozen", False)
    ),
}))
"""
# Needed only with GitHub credentials (a repository's .github/hookbot.yml), with a relay, or for a "did you mean";
# importlib.metadata (and the zipfile, csv and email parsing it brings) not at all: bot/entry_points.py finds plugins.
NOT_NEEDED = (
    "bot.repo_config_loader",
    "bot.repo_config_yaml",
    "bot.relay",
    "difflib",
    "importlib.metadata",
    "zipfile",
    "csv",
)


def test_a_first_dry_run_delivery_imports_and_builds_only_what_it_needs(tmp_path: Path) -> None:
    body = fixture_bytes("github/issues.opened.json")
    attributes = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "cold-1",
        "X-Hub-Signature-256": sign(body, SECRET.encode()),
    }
    event = tmp_path / "event.json"
    event.write_text(json.dumps(sns_event(notification(body.decode(), attributes=attributes))))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "HOOKBOT_", "AWS_"))}
    env.update(
        GITHUB_WEBHOOK_SECRET=SECRET,
        HOOKBOT_DRY_RUN="1",
        HOOKBOT_STATE_DIR=str(tmp_path / "state"),
        AWS_DEFAULT_REGION="us-east-1",
        SNS_TOPIC_ARNS=TOPIC,
    )
    done = subprocess.run(
        [sys.executable, "-c", FIRST_DELIVERY, str(event), *NOT_NEEDED],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"]["deliveries"][0]["status"] == "ok", done.stderr
    assert report["modules"] == []
    # The dry-run client of a bot without credentials sends nothing, so it needs no HTTP session.
    assert report["sessions"] == 0
    # The classes a cold start builds are bot.records.frozen where they were @dataclass(frozen=True): frozen for
    # mypy, without the two guards that @dataclass(frozen=True) compiles for every class at every start.
    assert report["guarded"] == []
