"""typing.NamedTuple's class syntax, without importing typing.

``iommap info`` imports the page-cache module, whose results are named
tuples; importing ``typing`` for them cost more of the command's start-up
than the rest of that module. Modules write::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ._named import NamedTuple

and ``class Point(NamedTuple): x: int; y: int = 0`` makes, at run time, the
class ``collections.namedtuple`` makes, with the class body's docstring,
methods and properties; type checkers see typing's. Field annotations are
read as written (the modules use ``from __future__ import annotations``),
never evaluated.
"""

from __future__ import annotations

import collections

_SKIPPED = frozenset({"__annotations__", "__module__", "__qualname__", "__dict__", "__weakref__"})


class _NamedTupleMeta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, object]) -> type:
        annotations = ns.get("__annotations__", {})
        assert isinstance(annotations, dict)
        fields = list(annotations)
        defaults = []
        for field in fields:
            if field in ns:
                defaults.append(ns[field])
            elif defaults:
                raise TypeError(f"{name}: field {field!r} without a default follows one with")
        module = str(ns.get("__module__", __name__))
        make = collections.namedtuple  # called by another name: not a definition for mypy
        cls: type = make(name, fields, defaults=tuple(defaults), module=module)
        for key, value in ns.items():
            if key not in _SKIPPED and key not in annotations:
                setattr(cls, key, value)
        cls.__qualname__ = str(ns.get("__qualname__", name))
        cls.__annotations__ = dict(annotations)
        return cls


_Base = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})


class _NamedTuple:
    """What ``class X(NamedTuple)`` names: its base resolves to a class whose
    metaclass builds the named tuple."""

    def __mro_entries__(self, bases: tuple[object, ...]) -> tuple[type]:
        return (_Base,)


NamedTuple = _NamedTuple()
