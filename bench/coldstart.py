"""The Lambda cold start: fresh interpreters importing `bot.aws_lambda` and handling one SNS-borne delivery,
against fresh interpreters that only `import aiohttp, gidgethub` (the floor any Python GitHub bot pays)."""

from __future__ import annotations

import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from load import Load
from servers import PYTHON, ROOT, SERVER_CORE, TOPIC_ARN, server_env

# What a fresh Lambda interpreter does: import the handler module and handle one SNS-borne GitHub delivery.
LAMBDA_SNIPPET = (
    "import json, sys\n"
    "import bot.aws_lambda\n"
    "event = json.loads(open(sys.argv[1], 'rb').read())\n"
    "bot.aws_lambda.handler(event, None)\n"
)
# The baseline: a fresh interpreter that only imports what a minimal aiohttp + gidgethub bot needs.
IMPORT_SNIPPET = "import aiohttp, gidgethub\n"


def lambda_event(workdir: Path) -> Path:
    """An SNS-to-Lambda event carrying the benchmark delivery as DESIGN.md's message attributes describe it."""
    body, signature = Load.one_signed()
    attribute = {"Type": "String"}
    record = {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": TOPIC_ARN + ":2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": TOPIC_ARN,
            "Subject": None,
            "Message": body.decode(),
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {
                "X-GitHub-Event": {**attribute, "Value": "issues"},
                "X-GitHub-Delivery": {**attribute, "Value": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                "X-Hub-Signature-256": {**attribute, "Value": signature},
            },
        },
    }
    path = workdir / "lambda-event.json"
    path.write_text(json.dumps({"Records": [record]}))
    return path


def lambda_task_dir(workdir: Path) -> Path:
    """hookbot as a Lambda function holds it: installed (not editable) with only its runtime dependencies, in one
    directory that goes on PYTHONPATH, as `hookbot package` lays out /var/task (but for this machine's Python)."""
    target = workdir / "lambda-task"
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return target


def time_interpreters(
    commands: dict[str, list[str]], env: dict[str, str], workdir: Path, repetitions: int
) -> dict[str, Any]:
    """Median wall time of fresh interpreters running each command, alternating them."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # one untimed run each fills the OS page cache
        subprocess.run(argv, env=env, cwd=workdir, check=True, capture_output=True, timeout=60)
    for _ in range(repetitions):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=workdir, check=True, capture_output=True, timeout=60)
            times[name].append(round((time.perf_counter() - started) * 1000, 1))
    lambda_ms = statistics.median(times["lambda"])
    imports_ms = statistics.median(times["imports"])
    return {
        "lambda_ms": lambda_ms,
        "imports_ms": imports_ms,
        "ratio": round(lambda_ms / imports_ms, 2),
        "samples_ms": times,
    }


COLD_START_METHODS = {
    "deployed": "the `hookbot package` zip for this machine's architecture, unpacked, run by Lambda's Python "
    "without writing bytecode (/var/task is read-only)",
    "installed": "hookbot and its runtime dependencies installed into one directory on PYTHONPATH, this machine's "
    "Python",
    "dev_venv": "the development venv (editable install, test tools)",
}


def deployed_task_dir(workdir: Path) -> tuple[Path, str] | None:
    """The real Lambda zip, built for this machine's architecture and unpacked, and Lambda's Python to run it with;
    None without a Python 3.12 here or on an architecture Lambda does not run."""
    from bot.package import find_lambda_python

    arch = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine())
    python = find_lambda_python()
    if arch is None or python is None:
        return None
    archive = workdir / "hookbot-lambda.zip"
    subprocess.run(
        [str(PYTHON), "-m", "bot", "package", "--arch", arch, "--output", str(archive), "--python", python],
        check=True,
        capture_output=True,
        timeout=900,
    )
    task = workdir / "var-task"
    with zipfile.ZipFile(archive) as unpacked:
        unpacked.extractall(task)
    return task, python


def cold_start(workdir: Path, repetitions: int) -> dict[str, Any] | None:
    """Fresh interpreters, alternating the Lambda path and the bare imports; None when this branch has no Lambda entry.

    Measured up to three ways (COLD_START_METHODS), each with both sides alike; the goal's figure is the first
    one this machine can do: the deployed zip when a Python 3.12 is at hand, else the runtime-only install. The
    development venv's editable install adds an import hook to every import and its test tools add some hundred
    distributions to the plugin entry-point scan; neither is on a Lambda.
    """
    if importlib.util.find_spec("bot.aws_lambda") is None:
        return None
    event = lambda_event(workdir)
    env = server_env(workdir)
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    ways: list[tuple[str, str, dict[str, str]]] = []
    deployed = deployed_task_dir(workdir)
    if deployed is not None:
        task, lambda_python = deployed
        ways.append(("deployed", lambda_python, {**env, "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1"}))
    ways.append(("installed", str(base_python), {**env, "PYTHONPATH": str(lambda_task_dir(workdir))}))
    ways.append(("dev_venv", str(PYTHON), env))
    variants = {}
    for name, python, python_env in ways:
        commands = {
            "lambda": ["taskset", "-c", SERVER_CORE, python, "-c", LAMBDA_SNIPPET, str(event)],
            "imports": ["taskset", "-c", SERVER_CORE, python, "-c", IMPORT_SNIPPET],
        }
        variants[name] = time_interpreters(commands, python_env, workdir, repetitions)
    method = ways[0][0]
    return {**variants[method], "method": method, "variants": variants}
