"""Plugin discovery without importlib.metadata (bot/entry_points.py) finds what importlib.metadata finds."""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pytest

from bot.entry_points import EntryPoint, entry_points, group_entries, normalise


def dist_info(site: Path, directory: str, entry_points_txt: str | None, name: str) -> None:
    info = site / directory
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points_txt is not None:
        (info / "entry_points.txt").write_text(entry_points_txt)


def test_it_reads_the_group_from_each_distribution_and_skips_a_shadowed_copy(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(
        first,
        "Acme.Labeler-2.0.dist-info",
        "# a comment\n[console_scripts]\nacme = acme:main\n\n[hookbot.handlers]\nlabeler = acme.labeler\n"
        "triage = acme.plugins:triage\n",
        "Acme.Labeler",
    )
    dist_info(first, "quiet-1.0.dist-info", None, "quiet")  # declares no entry points
    dist_info(second, "acme_labeler-1.0.dist-info", "[hookbot.handlers]\nold = acme.old\n", "acme-labeler")
    dist_info(second, "legacy.egg-info", "[hookbot.handlers]\nlegacy = legacy_plugin\n", "legacy")
    path = [str(first), str(tmp_path / "missing"), str(second)]

    found = [(ep.name, ep.value, ep.distribution) for ep in entry_points("hookbot.handlers", path)]

    assert found == [
        ("labeler", "acme.labeler", "acme_labeler"),
        ("triage", "acme.plugins:triage", "acme_labeler"),
        ("legacy", "legacy_plugin", "legacy"),
    ]


def test_it_finds_the_same_entry_points_as_importlib_metadata_on_this_sys_path() -> None:
    for group in ("hookbot.handlers", "console_scripts"):
        ours = sorted((ep.name, ep.value) for ep in entry_points(group))
        theirs = sorted((ep.name, ep.value) for ep in importlib.metadata.entry_points(group=group))
        assert ours == theirs, group


def test_a_distribution_inside_a_zip_on_sys_path_is_found(tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_plugin-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped-plugin\n")
        zipped.writestr("zipped_plugin-1.0.dist-info/entry_points.txt", "[hookbot.handlers]\nzipped = zp\n")
    [found] = entry_points("hookbot.handlers", [str(archive)])
    assert (found.name, found.value, found.distribution) == ("zipped", "zp", "zipped_plugin")


def test_load_imports_the_module_and_its_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ep_target_module.py").write_text("class Holder:\n    value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert EntryPoint("x", "ep_target_module", "d").load().__name__ == "ep_target_module"
        assert EntryPoint("x", "ep_target_module : Holder.value", "d").load() == 42
    finally:
        sys.modules.pop("ep_target_module", None)


def test_names_and_sections_are_read_as_the_specifications_write_them() -> None:
    assert normalise("Acme.Labeler__x-y") == "acme_labeler_x_y"
    text = "[hookbot.handlers]\n ; comment\na=b\n[other]\nc = d\n[hookbot.handlers]\ne = f:g\n"
    assert list(group_entries(text, "hookbot.handlers")) == [("a", "b"), ("e", "f:g")]
