"""The Lambda cold start: fresh interpreters importing `bot.aws_lambda` and handling one SNS-borne delivery,
against fresh interpreters that only `import aiohttp, gidgethub` (the floor any Python GitHub bot pays)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
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


def time_commands(
    commands: dict[str, tuple[list[str], dict[str, str]]], workdir: Path, repetitions: int
) -> dict[str, dict[str, Any]]:
    """Each command's median wall time and CPU time (user+system of the child) over ``repetitions`` fresh runs,
    the commands taking turns so that whatever else the machine does falls on all of them alike."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for argv, env in commands.values():  # one untimed run each fills the OS page cache
        subprocess.run(argv, env=env, cwd=workdir, check=True, capture_output=True, timeout=60)
    for _ in range(repetitions):
        for name, (argv, env) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=workdir, check=True, capture_output=True, timeout=60)
            wall[name].append(round((time.perf_counter() - started) * 1000, 1))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            cpu[name].append(round(used * 1000, 1))
    return {
        name: {
            "wall_ms": statistics.median(wall[name]),
            "cpu_ms": statistics.median(cpu[name]),
            "cpu_quartiles_ms": [round(q, 1) for q in statistics.quantiles(cpu[name], n=4)],
            "samples_ms": wall[name],
            "cpu_samples_ms": cpu[name],
        }
        for name in commands
    }


def time_interpreters(
    commands: dict[str, list[str]], env: dict[str, str], workdir: Path, repetitions: int
) -> dict[str, Any]:
    """Median wall time of fresh interpreters running each command, alternating them (and their CPU time)."""
    timed = time_commands({name: (argv, env) for name, argv in commands.items()}, workdir, repetitions)
    lambda_ms = timed["lambda"]["wall_ms"]
    imports_ms = timed["imports"]["wall_ms"]
    return {
        "lambda_ms": lambda_ms,
        "imports_ms": imports_ms,
        "ratio": round(lambda_ms / imports_ms, 2),
        "cpu_ratio": round(timed["lambda"]["cpu_ms"] / timed["imports"]["cpu_ms"], 3),
        "samples_ms": {name: figures["samples_ms"] for name, figures in timed.items()},
    }


COLD_START_METHODS = {
    "deployed": "the `hookbot package` zip for this machine's architecture, unpacked, run by Lambda's Python "
    "without writing bytecode (/var/task is read-only)",
    "installed": "hookbot and its runtime dependencies installed into one directory on PYTHONPATH, this machine's "
    "Python",
    "dev_venv": "the development venv (editable install, test tools)",
}


def deployed_task_dir(workdir: Path, checkout: Path = ROOT, name: str = "var-task") -> tuple[Path, str] | None:
    """The real Lambda zip of ``checkout``, built for this machine's architecture and unpacked, and Lambda's Python
    to run it with; None without a Python 3.12 here or on an architecture Lambda does not run."""
    from bot.package import find_lambda_python

    arch = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine())
    python = find_lambda_python()
    if arch is None or python is None:
        return None
    archive = workdir / f"{name}.zip"
    package = ["package", "--arch", arch, "--output", str(archive), "--python", python, "--project", str(checkout)]
    subprocess.run(
        [str(PYTHON), "-m", "bot", *package],
        check=True,
        capture_output=True,
        timeout=900,
    )
    task = workdir / name
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


def compare(against: Path, repetitions: int) -> None:
    """This checkout's cold start and ``against``'s, interleaved with the floor, deployed and in each one's venv.

    What one change gave: CPU time (user+system) is the figure to compare on a shared machine, wall time is shown
    beside it. ``against`` is another checkout of hookbot with its own ``.venv`` (``make test`` builds one).
    """
    with tempfile.TemporaryDirectory(prefix="hookbot-coldstart-") as temporary:
        workdir = Path(temporary)
        event = str(lambda_event(workdir))
        env = server_env(workdir)
        env.pop("PYTHONPATH", None)
        sides = {"this": ROOT, "against": against.resolve()}
        ways: dict[str, dict[str, tuple[list[str], dict[str, str]]]] = {}
        deployed = {side: deployed_task_dir(workdir, checkout, f"task-{side}") for side, checkout in sides.items()}
        if deployed["this"] is not None:
            this_task, python = deployed["this"]
            runs = {"imports": ([python, "-c", IMPORT_SNIPPET], {**env, "PYTHONPATH": str(this_task)})}
            for side, built in deployed.items():
                assert built is not None
                runs[side] = ([python, "-c", LAMBDA_SNIPPET, event], {**env, "PYTHONPATH": str(built[0])})
            ways["deployed"] = {
                name: (argv, {**side_env, "PYTHONDONTWRITEBYTECODE": "1"}) for name, (argv, side_env) in runs.items()
            }
        venv = {side: str(checkout / ".venv" / "bin" / "python") for side, checkout in sides.items()}
        ways["dev_venv"] = {
            "imports": ([venv["this"], "-c", IMPORT_SNIPPET], env),
            **{side: ([python, "-c", LAMBDA_SNIPPET, event], env) for side, python in venv.items()},
        }
        for way, runs in ways.items():
            pinned = {name: (["taskset", "-c", SERVER_CORE, *argv], run_env) for name, (argv, run_env) in runs.items()}
            timed = time_commands(pinned, workdir, repetitions)
            floor = timed["imports"]["cpu_ms"]
            for name, figures in timed.items():
                low, _, high = figures["cpu_quartiles_ms"]
                print(
                    f"{way:9} {name:8} CPU {figures['cpu_ms']:6.1f} ms (quartiles {low:.1f}-{high:.1f}), "
                    f"{figures['cpu_ms'] / floor:.3f} x the floor; wall {figures['wall_ms']:6.1f} ms"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The Lambda cold start of this checkout against another one.")
    parser.add_argument("--against", type=Path, required=True, help="another hookbot checkout with its .venv")
    parser.add_argument("--repetitions", type=int, default=21, help="alternating runs of each (default 21)")
    arguments = parser.parse_args()
    compare(arguments.against, arguments.repetitions)
