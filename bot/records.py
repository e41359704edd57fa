"""``@frozen``: a frozen dataclass as the type checker sees it, at the price of a plain one at import.

``@dataclass(frozen=True)`` compiles, from generated source, a ``__setattr__`` and a ``__delattr__`` that refuse
changes, besides the ``__init__``, ``__repr__``, ``__eq__`` and ``__hash__`` every such dataclass gets: some 0.5 ms
per class on Python 3.12, whenever the class statement runs (a module's bytecode cannot cache it), and a Lambda cold
start builds some 30 dataclasses (BENCHMARKS.md). The guards only ever refuse what mypy already refuses: with
``@frozen`` a class is a ``slots=True`` dataclass that ``mypy --strict`` checks as frozen (assigning to a field is an
error), ``dataclasses.replace`` and ``fields`` work as before, equality is by value, and the two run-time guards,
which cost more than the rest of the class, are not made. Instances are not hashable (nothing hashes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    """A ``slots=True`` dataclass that the type checker treats as frozen."""
    return dataclass(slots=True)(cls)
