"""`hookbot package`: the AWS Lambda deployment zip, built from manylinux wheels and written reproducibly.

Two steps, kept apart so the second can be tested without a network:

1. ``install_into``: pip installs hookbot and its dependencies into a staging directory as the Lambda Python 3.12
   runtime needs them (``--platform manylinux2014_<arch> --only-binary=:all:``), whatever machine builds it. The
   libraries the runtime already ships (boto3 and its own dependencies) are removed again, using each one's RECORD
   so that packages whose import name differs from their distribution name go too.
2. ``compile_bytecode``: with a Python 3.12 interpreter at hand (``python3.12`` on PATH, or ``--python``), every
   module is compiled ahead, as ``unchecked-hash`` .pyc files naming /var/task paths. Lambda's /var/task is
   read-only, so without them every cold start compiles every module it imports, and caches nothing: about 120 ms
   for hookbot's imports (BENCHMARKS.md). Same sources and the same interpreter give the same bytes.
3. ``write_zip``: a pure function over a directory. Entries are sorted, stamped with one fixed time and given fixed
   permissions, so the same tree always gives a byte-identical zip (and the same CodeSha256 in Lambda, which
   lets CloudFormation see that nothing changed). Files that only make the zip differ from build to build or that
   Lambda never uses (bytecode of any other Python, pip's RECORD/INSTALLER/direct_url.json, console scripts with
   this machine's interpreter in their shebang) are left out.

Lambda refuses a directly uploaded zip over 50 MB and any function over 250 MB unpacked; checking here turns a
failed deploy minutes later into one clear line now.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PYTHON_VERSION = "3.12"
BYTECODE_TAG = "cpython-312"  # the .pyc files Lambda's Python 3.12 loads: __pycache__/<module>.cpython-312.pyc
TASK_ROOT = "/var/task"  # where Lambda unpacks the zip; compiled in as the modules' file names
# Wheels Lambda's Python 3.12 runtime (Amazon Linux 2023, glibc 2.34) can load; the first is preferred.
PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}
# Shipped by the Lambda Python runtime itself (boto3 and what it pulls in); bundling them only makes the zip bigger
# and shadows the runtime's own copies. One is kept when something else in the package still requires it.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
MAX_ZIPPED_BYTES = 50 * 1024 * 1024  # direct upload (CreateFunction / UpdateFunctionCode with ZipFile)
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # the function's code and layers, unpacked
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
BUNDLED_CONFIG_NAME = "hookbot.toml"  # at the zip's root: /var/task/hookbot.toml (template: BundledConfig)
# Settings that must come from SSM or Secrets Manager, never from a file inside the zip.
SECRET_KEYS = {"github": ("webhook_secret", "previous_secrets", "token", "private_key")}

REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Left out of the copy of the source tree the wheel is built from.
SOURCE_IGNORE = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hookbot",
    "tests",
    "*.zip",
)
# pip's bookkeeping: RECORD and direct_url.json name this machine's paths or the temporary wheel.
PIP_NOISE = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class PackageError(Exception):
    """The package cannot be built as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ZipSummary:
    path: Path
    files: int
    zipped_bytes: int
    unzipped_bytes: int
    sha256: str

    def describe(self) -> str:
        return (
            f"wrote {self.path}: {_megabytes(self.zipped_bytes)} zipped, {_megabytes(self.unzipped_bytes)} unzipped, "
            f"{self.files} files, sha256 {self.sha256}"
        )


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def is_excluded(path: PurePosixPath) -> bool:
    """True for files that Lambda never uses or that would make two builds of the same tree differ."""
    parts = path.parts
    if "__pycache__" in parts or path.suffix in {".pyc", ".pyo"}:
        if parts[-2:-1] != ("__pycache__",) or not path.name.endswith(f".{BYTECODE_TAG}.pyc"):
            return True  # another Python's bytecode, or a stray legacy .pyc
        # Lambda's bytecode goes wherever its source goes.
        return is_excluded(PurePosixPath(*parts[:-2], path.name.removesuffix(f".{BYTECODE_TAG}.pyc") + ".py"))
    if parts[0] == "bin":  # console scripts: their shebang names the build machine's interpreter
        return True
    if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in PIP_NOISE:
        return True
    # Test suites some libraries ship inside their package; entry points and metadata stay.
    return any(part in {"tests", "test"} for part in parts[1:-1])


def collect_files(root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for every file to include, sorted by name."""
    entries = []
    for file in root.rglob("*"):
        if file.is_symlink() or not file.is_file():
            continue
        name = PurePosixPath(file.relative_to(root).as_posix())
        if not is_excluded(name):
            entries.append((str(name), file))
    return sorted(entries)


def write_zip(
    root: Path,
    output: Path,
    *,
    max_zipped: int = MAX_ZIPPED_BYTES,
    max_unzipped: int = MAX_UNZIPPED_BYTES,
) -> ZipSummary:
    """Zip ``root`` into ``output`` reproducibly; PackageError (and no zip left behind) past Lambda's limits."""
    entries = collect_files(root)
    if not entries:
        raise PackageError(f"nothing to package in {root}")
    unzipped = sum(path.stat().st_size for _, path in entries)
    if unzipped > max_unzipped:
        raise PackageError(
            f"the package would be {_megabytes(unzipped)} unzipped, over Lambda's {_megabytes(max_unzipped)} limit; "
            "leave out optional dependencies or move them to a layer"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so that the permission bits below are honoured
            mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    zipped = partial.stat().st_size
    if zipped > max_zipped:
        partial.unlink()
        raise PackageError(
            f"the package is {_megabytes(zipped)} zipped, over Lambda's {_megabytes(max_zipped)} limit for a direct "
            "upload; leave out optional dependencies or move them to a layer"
        )
    partial.replace(output)
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    return ZipSummary(output, len(entries), zipped, unzipped, digest)


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _requirement_names(dist_info: Path) -> set[str]:
    """Every distribution named in Requires-Dist, whatever its markers (keeping too much is the safe mistake)."""
    metadata = dist_info / "METADATA"
    if not metadata.is_file():
        return set()
    names = set()
    for line in metadata.read_text(errors="replace").splitlines():
        if line.startswith("Requires-Dist:"):
            match = REQUIREMENT_NAME.match(line.removeprefix("Requires-Dist:").strip())
            if match:
                names.add(_normalise(match.group(0)))
    return names


def _dist_name(dist_info: Path) -> str:
    return dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0]


def unneeded(root: Path, candidates: Iterable[str], roots: Iterable[str]) -> set[str]:
    """The candidates that nothing else installed in ``root`` requires (``roots`` are the ones to drop anyway)."""
    removable = {_normalise(name) for name in candidates}
    forced = {_normalise(name) for name in roots}
    requires = {_normalise(_dist_name(info)): _requirement_names(info) for info in root.glob("*.dist-info")}
    removable &= set(requires)
    changed = True
    while changed:
        kept_needs = set().union(*(needs for name, needs in requires.items() if name not in removable))
        still = {name for name in removable if name in forced or name not in kept_needs}
        changed = still != removable
        removable = still
    return removable


def remove_distributions(root: Path, names: Iterable[str]) -> list[str]:
    """Delete the named distributions installed in ``root`` (every file their RECORD lists); returns their names."""
    wanted = {_normalise(name) for name in names}
    removed = []
    for info in sorted(root.glob("*.dist-info")):
        dist_name = _dist_name(info)
        if _normalise(dist_name) not in wanted:
            continue
        record = info / "RECORD"
        if not record.is_file():
            raise PackageError(f"{info.name} has no RECORD, so its files cannot be told apart; remove it by hand")
        with record.open(newline="") as fh:
            files = [row[0] for row in csv.reader(fh) if row]
        for relative in files:
            target = (root / relative).resolve()
            if target.is_relative_to(root.resolve()) and target.is_file():
                target.unlink()
        shutil.rmtree(info, ignore_errors=True)
        removed.append(dist_name)
    for directory in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def check_bundled_config(config: Path) -> None:
    """Refuse a config file that carries secrets: anyone who may read the function's code could read them."""
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackageError(f"cannot bundle {config}: {exc}") from None
    for section, keys in SECRET_KEYS.items():
        table = data.get(section, {})
        found = [key for key in keys if isinstance(table, dict) and key in table]
        if found:
            raise PackageError(
                f"{config} sets [{section}] {', '.join(found)}: secrets do not belong in the package; keep them in "
                "SSM Parameter Store (see deploy/README.md) and remove them from the file"
            )


def find_project_root(start: Path | None = None) -> Path:
    """The hookbot source tree to package: the checkout this copy of hookbot runs from, else the working dir."""
    candidates = [start] if start else [Path(__file__).resolve().parent.parent, Path.cwd()]
    for candidate in candidates:
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and 'name = "hookbot"' in pyproject.read_text():
            return candidate
    raise PackageError("cannot find hookbot's source tree (pyproject.toml); run from a checkout or pass --project")


Runner = Callable[[Sequence[str]], None]


def python_version_of(python: str) -> str | None:
    """``3.12`` for a working Python 3.12 interpreter; None when it does not run (a pyenv shim may only complain)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
    except OSError:
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def find_lambda_python() -> str | None:
    """A working interpreter of Lambda's Python version: ``python3.12`` on PATH, or one installed beside this one
    (pyenv keeps each version in a sibling directory)."""
    name = f"python{PYTHON_VERSION}"
    siblings = sorted(Path(sys.base_prefix).parent.glob(f"{PYTHON_VERSION}*/bin/{name}"), reverse=True)
    for candidate in (shutil.which(name), *map(str, siblings)):
        if candidate and python_version_of(candidate) == PYTHON_VERSION:
            return candidate
    return None


def compile_bytecode(target: Path, python: str) -> str | None:
    """Compile every module under ``target`` with ``python`` (Lambda's Python version); None, or why it could not.

    Only a missing or wrong interpreter stops it; a file that does not compile (some libraries ship Python 2
    leftovers) just has no .pyc, as on Lambda it would not import either.
    """
    version = python_version_of(python)
    if version != PYTHON_VERSION:
        return f"{python} is not a working Python {PYTHON_VERSION} ({version or 'it does not run'})"
    compileall = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run(
        [python, *compileall, "-s", str(target), "-p", TASK_ROOT, str(target)], capture_output=True, check=False
    )
    return None


def run_pip(args: Sequence[str]) -> None:
    """Run this interpreter's pip; its own output explains a failure, this adds which step failed."""
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise PackageError(f"pip failed (exit {result.returncode}): {' '.join(command)}")


def pip_install_args(requirements: Sequence[str], target: Path, arch: str) -> list[str]:
    """pip arguments that install ``requirements`` as Lambda's Python 3.12 on ``arch`` needs them."""
    platforms = [arg for platform in PLATFORMS[arch] for arg in ("--platform", platform)]
    return [
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(target),
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        *requirements,
    ]


def install_into(
    target: Path,
    *,
    project: Path,
    arch: str,
    include_boto3: bool,
    extra_requirements: Sequence[str] = (),
    pip: Runner = run_pip,
    progress: Callable[[str], None] = lambda step: None,
) -> None:
    """Install hookbot (built into a wheel first: a source tree is not a binary) and its dependencies."""
    if arch not in PLATFORMS:
        raise PackageError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(PLATFORMS))}")
    with tempfile.TemporaryDirectory(prefix="hookbot-wheel-") as scratch:
        # Built from a clean copy: setuptools reuses a build/ folder it finds, stale modules and all.
        source = Path(scratch) / "source"
        shutil.copytree(project, source, ignore=shutil.ignore_patterns(*SOURCE_IGNORE))
        wheel_dir = Path(scratch) / "wheel"
        progress(f"building the hookbot wheel from {project}")
        pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheel_dir), str(source)])
        wheels = sorted(wheel_dir.glob("hookbot-*.whl"))
        if not wheels:
            raise PackageError(f"pip built no hookbot wheel from {project}")
        progress(f"resolving and downloading dependencies: Python {PYTHON_VERSION} manylinux wheels for {arch}")
        pip(pip_install_args([str(wheels[0]), *extra_requirements], target, arch))
    if not include_boto3:
        progress("leaving out boto3 and botocore (the Lambda runtime provides them)")
        remove_distributions(target, unneeded(target, RUNTIME_PROVIDED, roots=("boto3",)))


def build_package(
    output: Path,
    *,
    arch: str = "arm64",
    include_boto3: bool = False,
    project: Path | None = None,
    config: Path | None = None,
    extra_requirements: Sequence[str] = (),
    python: str | None = None,
    pip: Runner = run_pip,
    progress: Callable[[str], None] = lambda step: None,
) -> ZipSummary:
    """The whole `hookbot package`: stage, prune, compile, optionally bundle a config file, zip.

    ``python`` is the interpreter to compile with (default: find_lambda_python()); without one the zip has no
    bytecode and a note on stderr says what that costs.
    """
    if config is not None:
        check_bundled_config(config)
    root = find_project_root(project)
    with tempfile.TemporaryDirectory(prefix="hookbot-package-") as staging:
        target = Path(staging)
        install_into(
            target,
            project=root,
            arch=arch,
            include_boto3=include_boto3,
            extra_requirements=extra_requirements,
            pip=pip,
            progress=progress,
        )
        interpreter = python or find_lambda_python()
        if interpreter:
            progress(f"compiling bytecode with {interpreter}")
        problem = compile_bytecode(target, interpreter) if interpreter else f"no Python {PYTHON_VERSION} found"
        if problem:
            print(
                f"hookbot package: no bytecode in the zip ({problem}); every cold start will compile the modules it"
                f" imports. Pass --python with a Python {PYTHON_VERSION} interpreter to include it.",
                file=sys.stderr,
            )
        if config is not None:
            progress(f"bundling {config} as {BUNDLED_CONFIG_NAME}")
            shutil.copyfile(config, target / BUNDLED_CONFIG_NAME)
        progress(f"zipping into {output}")
        return write_zip(target, output)
