"""`hookbot package`: the reproducible zip writer over a directory, the pruning, and one real build with pip."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bot.cli import main
from bot.package import (
    PYTHON_VERSION,
    TASK_ROOT,
    ZIP_EPOCH,
    PackageError,
    check_bundled_config,
    compile_bytecode,
    find_lambda_python,
    remove_distributions,
    unneeded,
    write_zip,
)
from tests.helpers import ROOT


def make_tree(root: Path) -> Path:
    """A staging directory shaped like `pip install --target` leaves it, noise included."""
    files = {
        "bot/__init__.py": "VERSION = 1\n",
        "bot/__pycache__/__init__.cpython-312.pyc": "bytecode",
        "lib/tests/__pycache__/test_lib.cpython-312.pyc": "a test's bytecode",
        "bin/__pycache__/jp.cpython-312.pyc": "a console script's bytecode",
        "bot/__pycache__/__init__.cpython-311.pyc": "this machine's bytecode",
        "lib/__init__.pyc": "a stray legacy .pyc",
        "handlers/greeter.py": "router = None\n",
        "lib/tests/test_lib.py": "def test(): pass\n",
        "lib/__init__.py": "",
        "lib/_speedups.so": "ELF",
        "six.py": "",
        "bin/hookbot": "#!/home/someone/.venv/bin/python\n",
        "hookbot-0.1.0.dist-info/METADATA": "Name: hookbot\n",
        "hookbot-0.1.0.dist-info/entry_points.txt": "[hookbot.handlers]\ngreeter = handlers.greeter\n",
        "hookbot-0.1.0.dist-info/RECORD": "bot/__init__.py,sha256=x,12\n",
        "hookbot-0.1.0.dist-info/INSTALLER": "pip\n",
        "hookbot-0.1.0.dist-info/direct_url.json": '{"url": "file:///tmp/pip-xyz/hookbot.whl"}',
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "lib/_speedups.so").chmod(0o755)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_tree_gives_a_byte_identical_zip_whenever_and_wherever_it_is_built(tmp_path: Path) -> None:
    first = write_zip(make_tree(tmp_path / "a"), tmp_path / "one.zip")
    again = write_zip(tmp_path / "a", tmp_path / "two.zip")
    copy = make_tree(tmp_path / "b")  # same content, other path, other creation times
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    moved = write_zip(copy, tmp_path / "three.zip")

    assert first.sha256 == again.sha256 == moved.sha256 == sha256(tmp_path / "one.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "three.zip").read_bytes()


def test_zip_is_sorted_stamped_and_free_of_build_noise(tmp_path: Path) -> None:
    summary = write_zip(make_tree(tmp_path / "tree"), tmp_path / "out.zip")

    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == [
        "bot/__init__.py",
        "bot/__pycache__/__init__.cpython-312.pyc",
        "handlers/greeter.py",
        "hookbot-0.1.0.dist-info/METADATA",
        "hookbot-0.1.0.dist-info/entry_points.txt",
        "lib/__init__.py",
        "lib/_speedups.so",
        "six.py",
    ]
    assert {info.date_time for info in infos} == {ZIP_EPOCH}
    modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in infos}
    assert modes["lib/_speedups.so"] == 0o755
    assert {mode for name, mode in modes.items() if name != "lib/_speedups.so"} == {0o644}
    assert summary.files == len(names)
    assert summary.zipped_bytes == (tmp_path / "out.zip").stat().st_size
    assert "zipped" in summary.describe() and summary.sha256 in summary.describe()


LAMBDA_PYTHON = find_lambda_python()


@pytest.mark.skipif(LAMBDA_PYTHON is None, reason=f"needs python{PYTHON_VERSION} on PATH")
def test_bytecode_is_compiled_for_lambdas_python_the_same_every_time(tmp_path: Path) -> None:
    """Lambda's /var/task is read-only: without shipped bytecode every cold start compiles every import."""
    assert LAMBDA_PYTHON is not None
    builds = []
    for name in ("a", "b"):
        tree = tmp_path / name
        (tree / "bot").mkdir(parents=True)
        (tree / "bot/__init__.py").write_text("def where() -> str:\n    return __file__\n")
        (tree / "legacy.py").write_text("print 'python 2'\n")  # does not compile: skipped, not fatal
        assert compile_bytecode(tree, LAMBDA_PYTHON) is None
        builds.append(sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.pyc")))
        assert (tree / "bot/__pycache__/__init__.cpython-312.pyc").exists()
    assert builds[0] == builds[1] == ["bot/__pycache__/__init__.cpython-312.pyc"]
    first, second = (tmp_path / name / "bot/__pycache__/__init__.cpython-312.pyc" for name in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()
    assert f"{TASK_ROOT}/bot/__init__.py".encode() in first.read_bytes()


def test_bytecode_needs_lambdas_python_version(tmp_path: Path) -> None:
    assert "is not a working Python" in (compile_bytecode(tmp_path, sys.executable) or "")
    assert "it does not run" in (compile_bytecode(tmp_path, str(tmp_path / "no-such-python")) or "")


def test_past_lambdas_limits_fails_clearly_and_leaves_no_zip(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "big.bin").write_bytes(os.urandom(64 * 1024))  # random: deflate cannot shrink it

    with pytest.raises(PackageError, match=r"unzipped, over Lambda's .* limit"):
        write_zip(tree, tmp_path / "out.zip", max_unzipped=32 * 1024)
    with pytest.raises(PackageError, match=r"zipped, over Lambda's .* limit for a direct upload"):
        write_zip(tree, tmp_path / "out.zip", max_zipped=32 * 1024)
    assert list(tmp_path.glob("out.zip*")) == []


def test_an_empty_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="nothing to package"):
        write_zip(tmp_path, tmp_path.parent / "empty.zip")


def install_fake_dist(root: Path, name: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\n" + "".join(f"Requires-Dist: {req}\n" for req in requires))
    record = [f"{path},," for path in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_runtime_provided_libraries_go_unless_something_else_needs_them(tmp_path: Path) -> None:
    install_fake_dist(tmp_path, "boto3", {"boto3/__init__.py": ""}, ("botocore (>=1.35)", "s3transfer<1"))
    install_fake_dist(
        tmp_path, "botocore", {"botocore/__init__.py": ""}, ('urllib3<3,>=1.25.4; python_version >= "3.10"',)
    )
    install_fake_dist(tmp_path, "s3transfer", {"s3transfer/__init__.py": ""}, ("botocore",))
    install_fake_dist(tmp_path, "python_dateutil", {"dateutil/__init__.py": "", "dateutil/tz/tz.py": ""})
    install_fake_dist(tmp_path, "urllib3", {"urllib3/__init__.py": ""})
    install_fake_dist(tmp_path, "requests", {"requests/__init__.py": ""}, ("urllib3>=1.21",))
    install_fake_dist(tmp_path, "hookbot", {"bot/__init__.py": ""}, ("boto3>=1.34",))

    drop = unneeded(tmp_path, ["boto3", "botocore", "s3transfer", "python-dateutil", "urllib3"], roots=["boto3"])
    assert drop == {"boto3", "botocore", "s3transfer", "python_dateutil"}  # requests still needs urllib3

    assert sorted(remove_distributions(tmp_path, drop)) == ["boto3", "botocore", "python_dateutil", "s3transfer"]
    left = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert [name for name in left if not name.endswith(("METADATA", "RECORD"))] == [
        "bot/__init__.py",
        "requests/__init__.py",
        "urllib3/__init__.py",
    ]
    assert not (tmp_path / "dateutil").exists()


def test_a_config_file_with_secrets_is_not_bundled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hookbot.toml"
    config.write_text('[github]\ntoken = "ghp_x"\n[greeter]\nissue = "hi"\n')
    with pytest.raises(PackageError, match=r"\[github\] token: secrets do not belong in the package"):
        check_bundled_config(config)

    assert main(["package", "--config", str(config), "--output", str(tmp_path / "x.zip")]) == 1
    assert "secrets do not belong in the package" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_hookbot_package_builds_an_importable_arm64_zip_with_pip(tmp_path: Path) -> None:
    """The real thing: pip fetches manylinux wheels (cached after the first run) and the zip is complete."""
    config = tmp_path / "deploy.toml"
    config.write_text('[greeter]\nissue_comment = "Thanks, @{author}!"\n')
    output = tmp_path / "hookbot-lambda.zip"
    compile_with = ["--python", LAMBDA_PYTHON] if LAMBDA_PYTHON else []
    result = subprocess.run(
        [sys.executable, "-m", "bot", "package", "--output", str(output), "--config", str(config), *compile_with],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}:" in result.stdout and "MB zipped" in result.stdout
    # not silent for the many seconds it takes: each step as it starts, the size at the end
    steps = result.stdout.splitlines()
    assert steps[0].startswith("building the hookbot wheel from ")
    assert steps[1] == "resolving and downloading dependencies: Python 3.12 manylinux wheels for arm64 ..."
    assert f"zipping into {output} ..." in steps and steps[-1].startswith(f"wrote {output}:")
    assert ("no bytecode in the zip" in result.stderr) == (LAMBDA_PYTHON is None)

    with zipfile.ZipFile(output) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.startswith("hookbot-") and n.endswith("entry_points.txt"))
        assert "greeter = handlers.greeter" in archive.read(entry_points).decode()
        assert archive.read("hookbot.toml") == config.read_bytes()
    shipped = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "bot").glob("*.py"))
    assert set(shipped) <= names  # bot/aws_lambda.py included, once it exists
    assert "handlers/greeter.py" in names
    assert not any(name.startswith(("boto3/", "botocore/", "s3transfer/", "jmespath/", "bin/")) for name in names)
    assert not any(name.endswith("/RECORD") for name in names)
    bytecode = {name for name in names if "__pycache__" in name}
    assert all(name.endswith(".cpython-312.pyc") for name in bytecode)
    assert ("bot/__pycache__/aws_lambda.cpython-312.pyc" in bytecode) == (LAMBDA_PYTHON is not None)
    native = [name for name in names if name.endswith(".so")]
    assert native and all("x86_64" not in name for name in native)
    assert any("aarch64" in name for name in native)

    probe = (
        "import importlib.metadata, sys; sys.path.insert(0, sys.argv[1]); import bot; "
        "assert bot.__file__.startswith(sys.argv[1]), bot.__file__; "
        "eps = importlib.metadata.entry_points(group='hookbot.handlers'); print(sorted(ep.name for ep in eps))"
    )
    imported = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(output)], capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    assert "greeter" in imported.stdout
