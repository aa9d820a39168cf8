"""iommap: memory-mapped file I/O with positional reads and writes, real
thread safety, resize with remapping, kernel hints, and SIGBUS protection.

    with iommap.open("data.bin", create=True, size=4096) as m:
        m.pwrite(0, b"hello")
        assert m.pread(0, 5) == b"hello"

The reference is docs/api.md, built from the docstrings of this package and
of its stubs (_core.pyi).
"""

from ._core import MappedFile, open, rearm_guard
from ._errors import (
    BadArgumentTypeError,
    BadArgumentValueError,
    ClosedError,
    Error,
    OutOfBoundsError,
    SigbusError,
    SystemCallError,
)
from ._version import __version__

__all__ = [
    "open",
    "rearm_guard",
    "MappedFile",
    "Error",
    "BadArgumentTypeError",
    "BadArgumentValueError",
    "ClosedError",
    "OutOfBoundsError",
    "SigbusError",
    "SystemCallError",
    "__version__",
]
