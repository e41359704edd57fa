"""Dataclasses a cold start can afford: ``@frozen`` for objects made per delivery, ``@record`` for those made at start.

``@dataclass`` writes the source of ``__init__``, ``__repr__`` and ``__eq__`` for every class and compiles it
whenever the class statement runs (a module's bytecode cannot cache it); ``frozen=True`` adds a ``__setattr__`` and
a ``__delattr__`` that refuse changes, compiled the same way. On Python 3.12 that is about 0.5 ms per frozen class,
and a Lambda cold start made some 30 dataclasses (BENCHMARKS.md). Both decorators make ``slots=True`` dataclasses
that ``mypy --strict`` checks as frozen (``dataclass_transform(frozen_default=True)``: assigning to a field is an
error), on which ``dataclasses.replace``, ``fields`` and value equality work as before, without the run-time guards,
which only ever refused what mypy refuses:

- ``@frozen`` keeps the compiled ``__init__``, ``__repr__`` and ``__eq__``: the fastest to make instances of;
- ``@record`` compiles nothing: its ``__init__``, ``__repr__`` and ``__eq__`` are the shared functions below, which
  read the class's fields. Making the class costs a sixth of ``@frozen``'s, making an instance a few microseconds
  more, so it is for what is made a few times at start: settings, declarations, the loaded plugins.

Instances of neither are hashable (nothing hashes them).
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    """A ``slots=True`` dataclass that the type checker treats as frozen."""
    return dataclass(slots=True)(cls)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """A ``slots=True`` dataclass that the type checker treats as frozen, with nothing compiled to make it."""
    made = dataclass(slots=True, init=False, repr=False, eq=False)(cls)
    made.__init__ = _init  # type: ignore[method-assign]
    made.__repr__ = _repr  # type: ignore[method-assign]
    made.__eq__ = _eq  # type: ignore[assignment, method-assign]
    made.__hash__ = None  # type: ignore[assignment]  # as @dataclass(eq=True) leaves it
    return made


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    declared: tuple[Field[Any], ...] = fields(self)
    if len(args) > len(declared):
        raise TypeError(f"{type(self).__name__}() takes {len(declared)} arguments, {len(args)} given")
    for item, value in zip(declared, args, strict=False):
        if item.name in kwargs:
            raise TypeError(f"{type(self).__name__}() got multiple values for argument {item.name!r}")
        object.__setattr__(self, item.name, value)
    for item in declared[len(args) :]:
        if item.name in kwargs:
            value = kwargs.pop(item.name)
        elif item.default is not MISSING:
            value = item.default
        elif item.default_factory is not MISSING:
            value = item.default_factory()
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {item.name!r}")
        object.__setattr__(self, item.name, value)
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got an unexpected argument {next(iter(kwargs))!r}")


def _repr(self: Any) -> str:
    shown = ", ".join(f"{item.name}={getattr(self, item.name)!r}" for item in fields(self) if item.repr)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> object:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(getattr(self, item.name) == getattr(other, item.name) for item in fields(self))
