"""Immutable value objects with ``__slots__``: attribute reads at slot speed, no assignment after construction.

A class derives from :class:`Immutable` and sets its slots once, in its constructor, through
:func:`slot_setters` (the slots' own descriptors: no ``__init__`` call, no ``object.__setattr__``
lookup). Afterwards assigning or deleting any attribute raises :class:`AttributeError`, and copies
and pickles go through the class's ``__reduce__`` (the wire types re-parse their bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["Immutable", "slot_setters"]


class Immutable:
    """Base of the immutable value types (no instance ``__dict__``, no attribute assignment)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot delete {name!r})")


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The ``__set__`` of each named slot of ``cls``, in order (for its trusted constructors only)."""
    return tuple(vars(cls)[n].__set__ for n in names)
