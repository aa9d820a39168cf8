"""Calls the stubs must reject: `mypy --strict` checks this file too.

Each line below is wrong and carries the `# type: ignore[code]` that mypy's
error needs. Strict mode warns about unused ignores, so if a stub ever
starts accepting one of these calls, `make lint` fails. Never run.
"""

from __future__ import annotations

import iommap


def misuse(m: iommap.MappedFile) -> None:
    iommap.open("f", "append")  # type: ignore[arg-type]
    iommap.open("f", "read", True)  # type: ignore[call-arg]
    iommap.open(3.5)  # type: ignore[arg-type]
    m.pread(0.0, 1)  # type: ignore[arg-type]
    m.pread(offset=0, length=1)  # type: ignore[call-arg]
    m.pwrite(0, "text")  # type: ignore[arg-type]
    m.pwrite(0, [b"ok", "text"])  # type: ignore[list-item]
    m.pwrite(0, [1, 2])  # type: ignore[list-item]
    m.readinto(0, "text")  # type: ignore[arg-type]
    m.sync("later")  # type: ignore[arg-type]
    m.advise(0, 0, "soon")  # type: ignore[arg-type]
    m.truncate(None)  # type: ignore[arg-type]
    m.gather(["0"], 1)  # type: ignore[list-item]
    m.scatter([0], 1, "a")  # type: ignore[arg-type]
    m.mode = "read"  # type: ignore[misc]
    m.closed = True  # type: ignore[misc]
