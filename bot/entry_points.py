"""The installed distributions' ``hookbot.handlers`` entry points, read without ``importlib.metadata``.

Every start asks which plugins are installed, a Lambda cold start included. ``importlib.metadata`` answers that by
importing itself, ``zipfile``, ``csv`` and ``importlib.resources`` and, to tell hookbot's own plugins from the
others, by parsing a distribution's METADATA with the ``email`` package: some 6 ms of a ~240 ms cold start
(BENCHMARKS.md). The question is narrower than what it answers, so this module reads what the packaging
specifications put on disk: every ``*.dist-info`` (or ``*.egg-info``) directory in each ``sys.path`` directory, its
``entry_points.txt`` if it has one, and the distribution's name from the directory's own name, which a wheel
install writes normalised (``hookbot-0.1.0.dist-info``). As ``importlib.metadata`` does, a distribution found again
further down ``sys.path`` is the shadowed copy and is skipped. A ``sys.path`` entry that is not a directory (a zip
file) is read through ``importlib.metadata``, so a plugin there is found too.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

GROUP = "hookbot.handlers"
METADATA_SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint:
    """One plugin an installed distribution declares: ``name = module[:attribute]`` in its ``entry_points.txt``."""

    __slots__ = ("distribution", "name", "value")

    def __init__(self, name: str, value: str, distribution: str) -> None:
        self.name = name
        self.value = value  # "handlers.greeter", or "package.module:attribute"
        self.distribution = distribution  # the distribution's normalised name: "hookbot", "thirdparty_labeler"

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r}, distribution={self.distribution!r})"

    def load(self) -> Any:
        """Import the module the entry point names (and look up its attribute, when it names one)."""
        module, _, attribute = self.value.partition(":")
        found: Any = importlib.import_module(module.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            found = getattr(found, part)
        return found


def normalise(name: str) -> str:
    """A distribution's name as the wheel specification writes it in file names: ``Hookbot.Labeler`` ->
    ``hookbot_labeler`` (runs of ``-``, ``_`` and ``.`` are one ``_``, lower case)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def group_entries(text: str, group: str) -> Iterator[tuple[str, str]]:
    """``(name, value)`` for each ``name = value`` line under ``[group]`` in an ``entry_points.txt``."""
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group:
            name, equals, value = line.partition("=")
            if equals:
                yield name.strip(), value.strip()


def entry_points(group: str = GROUP, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group`` declared by a distribution on ``path`` (``sys.path``), in path order."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path if path is None else path:
        try:
            names = sorted(os.listdir(entry or "."))
        except NotADirectoryError:
            found += _from_archive(entry, group, seen)
            continue
        except OSError:  # a sys.path entry that does not exist (yet): nothing installed there
            continue
        for name in names:
            if not name.endswith(METADATA_SUFFIXES):
                continue
            distribution = normalise(name.rpartition(".")[0].partition("-")[0])
            if distribution in seen:
                continue
            seen.add(distribution)
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except OSError:  # most distributions declare no entry points (or it is an .egg-info file)
                continue
            found += [EntryPoint(key, value, distribution) for key, value in group_entries(text, group)]
    return found


def _from_archive(entry: str, group: str, seen: set[str]) -> list[EntryPoint]:
    """Entry points of distributions inside a zip file on ``sys.path``, through ``importlib.metadata``."""
    import importlib.metadata

    found = []
    for dist in importlib.metadata.distributions(path=[entry]):
        distribution = normalise(dist.metadata["Name"] or "")
        if distribution in seen:
            continue
        seen.add(distribution)
        found += [EntryPoint(ep.name, ep.value, distribution) for ep in dist.entry_points.select(group=group)]
    return found
