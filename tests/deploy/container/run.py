"""`make test-container`: build the real Dockerfile with podman and run tests/deploy/container/check_image.py
against it.

Steps, each said on stdout: install podman and its helpers through apt when missing; make the Debian base image
once and keep it in podman's image store, tagged with a hash of the recipe (no registry is reachable where CI
runs, so the official python image cannot be pulled); build the image from the repository's Dockerfile with that
base; then run the checks inside a private network namespace, where the container and the fake GitHub share a
loopback of their own (the container reaches the fake at 127.0.0.1, and port 8080 collides with nothing on the
host).

Where podman cannot run here (not root, no apt to install it, no network namespaces), it says why and exits 0
having tested nothing; with HOOKBOT_REQUIRE_CONTAINER_TEST=1 (set by .ci/run) that is a failure instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "localhost/hookbot-test:latest"
BASE_REPOSITORY = "localhost/hookbot-test-base"
APT_PACKAGES = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap", "newuidmap": "uidmap", "ip": "iproute2"}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The base: Debian bookworm's python3 (3.11, which hookbot supports) with what the Dockerfile's stages use: venv
# (with its bundled pip) for the build stage, useradd (passwd) for the final one, CA certificates for HTTPS.
BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
    "include": ["python3", "python3-venv", "passwd", "ca-certificates"],
}

# What podman needs on this kind of machine: runc (crun refuses its hybrid cgroups), explicit ulimits (root cannot
# raise the hard limits here), and no default sysctls: podman sets net.ipv4.ping_group_range by default, which
# runc refuses in a network namespace that runc itself runs in (the checks' private one).
CONTAINERS_CONF = """\
[containers]
default_sysctls = []
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


def say(message: str) -> None:
    print(f"test-container: {message}", flush=True)


def run(*argv: str, quiet: bool = False, env: dict[str, str] | None = None) -> None:
    """Run a command, its output shown unless ``quiet``; on failure, show what it printed and stop."""
    result = subprocess.run(argv, capture_output=quiet, text=True, env=env)
    if result.returncode != 0:
        if quiet:
            sys.stdout.write(result.stdout + result.stderr)
        raise SystemExit(f"test-container: failed ({result.returncode}): {' '.join(argv)}")


def works(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0


def why_podman_cannot_run() -> str | None:
    """None when podman can build and run here (installing it first if needed), else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (apt, podman's rootful runtime and a private network namespace)"
    missing = sorted({package for command, package in APT_PACKAGES.items() if shutil.which(command) is None})
    if missing:
        if shutil.which("apt-get") is None:
            return f"{', '.join(missing)} missing and no apt-get to install them"
        say(f"installing {' '.join(missing)} with apt")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                return f"apt-get could not install {' '.join(missing)}"
    if not works("unshare", "--net", "true"):
        return "no network namespaces (unshare --net fails)"
    if not works("podman", "info"):
        return "podman is installed but `podman info` fails"
    return None


def ensure_base() -> str:
    """The base image for BASE_RECIPE: from podman's store when made before, else made now (mmdebstrap)."""
    key = hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    tag = f"{BASE_REPOSITORY}:{key}"
    if works("podman", "image", "exists", tag):
        say(f"base {tag}: cached")
        return tag
    say(f"base {tag}: making it with mmdebstrap (Debian {BASE_RECIPE['suite']} {BASE_RECIPE['variant']})")
    started = time.monotonic()
    # dpkg's many small writes and fsyncs took 110 s on this machine's disk and 40 s in memory, hence /dev/shm
    # (about 250 MB, for the minute it takes) and unsafe-io (a half-made base is thrown away anyway).
    in_memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="hookbot-base-", dir=in_memory) as scratch:
        tarball = Path(scratch) / "base.tar"
        run(
            "mmdebstrap",
            "--quiet",
            "--dpkgopt=force-unsafe-io",
            f"--variant={BASE_RECIPE['variant']}",
            f"--include={','.join(BASE_RECIPE['include'])}",
            "--format=tar",
            str(BASE_RECIPE["suite"]),
            str(tarball),
            str(BASE_RECIPE["mirror"]),
            env={**os.environ, "TMPDIR": scratch},  # where mmdebstrap makes its chroot
        )
        run("podman", "import", "--quiet", str(tarball), tag, quiet=True)
    say(f"base {tag}: made in {time.monotonic() - started:.0f} s")
    return tag


def build_image(base: str) -> None:
    """The repository's own Dockerfile, only BASE changed. Outbound TLS may be inspected on this kind of machine, so
    the host's CA bundle is mounted into the build's RUN steps (it is not part of any layer)."""
    say(f"building {IMAGE} from Dockerfile with BASE={base}")
    started = time.monotonic()
    unnamed_before = unnamed_images()
    ca = ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.exists() else []
    run(
        "podman", "build", "--quiet", "--format", "docker", "--network", "host", *ca,
        "--build-arg", f"BASE={base}", "--tag", IMAGE, "--file", str(ROOT / "Dockerfile"), str(ROOT),
        quiet=True,
    )  # fmt: skip
    say(f"built in {time.monotonic() - started:.0f} s")
    # The image this build replaced and its build stage would otherwise pile up, about 80 MB a run.
    for image in unnamed_images() - unnamed_before:
        subprocess.run(["podman", "rmi", image], capture_output=True)


def unnamed_images() -> set[str]:
    listing = ["podman", "images", "--quiet", "--filter", "dangling=true"]
    return set(subprocess.run(listing, capture_output=True, text=True).stdout.split())


def check_image() -> int:
    """pytest on check_image.py in a fresh network namespace with its loopback up."""
    checks = Path(__file__).with_name("check_image.py")
    pytest = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-o", "addopts=", str(checks)]
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(["unshare", "--net", "sh", "-c", script, "sh", *pytest], cwd=ROOT).returncode


def main() -> int:
    started = time.monotonic()
    reason = why_podman_cannot_run()
    if reason is not None:
        say(f"SKIPPED, nothing was tested: podman cannot run here: {reason}")
        return 1 if os.environ.get("HOOKBOT_REQUIRE_CONTAINER_TEST") == "1" else 0
    with tempfile.TemporaryDirectory(prefix="hookbot-podman-") as scratch:
        conf = Path(scratch) / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        os.environ["CONTAINERS_CONF"] = str(conf)
        os.environ["HOOKBOT_TEST_IMAGE"] = IMAGE
        build_image(ensure_base())
        status = check_image()
    say(f"{'passed' if status == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
