"""A griffe extension for the API page (mkdocs.yml): methods a stub declares
only as overloads.

A stub has no implementation to follow its overloads, and griffe keeps
overloads aside until one comes, so `pwrite`, `gather` and the subscript
methods of `_core.pyi` would be missing from the page.  This makes the
overload that carries the docstring the method, the others its overloads.
"""

from __future__ import annotations

from typing import Any

import griffe


class StubOverloads(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        for name, overloads in list(cls.overloads.items()):
            if not overloads or name in cls.members:
                continue
            main = next((f for f in reversed(overloads) if f.docstring), overloads[-1])
            main.overloads = [f for f in overloads if f is not main]
            cls.set_member(name, main)
            del cls.overloads[name]
        # In the stub's order, as the other members are.
        ordered = sorted(cls.members.items(), key=lambda item: item[1].lineno or 0)
        cls.members.clear()
        cls.members.update(ordered)
