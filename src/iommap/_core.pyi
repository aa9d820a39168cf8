# Types for iommap's C core (src/iommap/_core/). The public names are
# re-exported by iommap/__init__.py; the reference is README.md.
#
# Stubs are never executed, so typing_extensions and _typeshed cost nothing
# at run time: iommap has no runtime dependency.

import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol, SupportsIndex, TypeVar, final, overload

from _typeshed import StrOrBytesPath
from typing_extensions import Buffer, Self, TypeAlias

_Mode: TypeAlias = Literal["read", "write", "read_write"]
_SyncMode: TypeAlias = Literal["sync", "async"]
_Hint: TypeAlias = Literal[
    "normal",
    "random",
    "sequential",
    "willneed",
    "dontneed",
    "hugepage",
    "nohugepage",
    "free",
    "cold",
    "pageout",
    "populate_read",
    "populate_write",
    "dontdump",
    "dodump",
    "dontfork",
    "dofork",
    "remove",
]

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

# What open() maps: a path, a file descriptor, or an object with fileno().
_Source: TypeAlias = StrOrBytesPath | int | _HasFileno

# Any object with the buffer protocol.  typeshed declares __buffer__ on the
# built-in buffers for every version, but numpy's stubs declare it only for
# Python 3.12 and later (PEP 688), so checking for an older version would
# reject every numpy array.  There, the alias also accepts what numpy's stubs
# do declare for its arrays and scalars on every version: `.data`, the
# memoryview of the object's own buffer, beside the array interface.
if sys.version_info >= (3, 12):
    _Buffer: TypeAlias = Buffer
else:
    class _ArrayBuffer(Protocol):
        @property
        def data(self) -> memoryview: ...
        @property
        def __array_interface__(self) -> dict[str, Any]: ...

    _Buffer: TypeAlias = Buffer | _ArrayBuffer

# pwrite's data: a bytes-like object, or lists and tuples of them nested like
# an iolist. Never str or int.
_IOData: TypeAlias = _Buffer | list[_IOData] | tuple[_IOData, ...]

# gather/scatter offsets: a sequence of ints, or a buffer of 64-bit integers
# (numpy int64/uint64, array('q'), array('Q')).
_Offsets: TypeAlias = Sequence[SupportsIndex] | _Buffer

_BufferT = TypeVar("_BufferT", bound=_Buffer)

GIL_RELEASE_BYTES: Final[int]
"""Copies of at least this many bytes release the GIL (64 KiB)."""

PAGE_SIZE: Final[int]
"""The page size the core maps and counts residency with (sysconf)."""

def file_cache_stat(
    path: StrOrBytesPath, offset: int, length: int | None, follow: bool, /
) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int]:
    """Open a file, count its pages in the page cache over a range with
    cachestat(2), close it (internal: iommap.pagecache uses it)."""

@final
class Walker:
    """The directory walk of iommap.pagecache.walk (internal): iterate over
    it for one path's results after start(path)."""

    def start(self, path: str | bytes, /) -> None: ...
    def seen(self, dev: int, ino: int, /) -> bool: ...
    def totals(self) -> tuple[int, int, int, int, int, int, int, int, int]: ...
    def mincore(self) -> bool: ...
    @property
    def current(self) -> str | bytes | None: ...
    def __iter__(self) -> Walker: ...
    def __next__(self) -> Any: ...

def walker(
    action: int,
    offset: int,
    length: int | None,
    follow: bool,
    one_fs: bool,
    ignore: Sequence[str],
    include: Sequence[str],
    max_size: int | None,
    count_links: bool,
    writeback: bool,
    mincore: bool,
    cap_fowner: bool,
    py_match: bool,
    result_type: type,
    make_error: Callable[[str | bytes, int], Any],
    fallback: Callable[[str | bytes, int], Any],
    match: Callable[[int, bytes], bool],
    on_progress: Callable[[str | bytes, int, int], object] | None,
    /,
) -> Walker:
    """The directory walk of iommap.pagecache.walk, in C (internal)."""

@final
class Mapping:
    """One mapped region of a file, alive while a handle or a view refers to it.

    Never made directly: a view's ``memoryview.obj`` is one.
    """

    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...

@final
class MappedFile:
    """A memory-mapped file, made by :func:`iommap.open`."""

    @property
    def closed(self) -> bool: ...
    @property
    def mode(self) -> _Mode: ...
    @property
    def path(self) -> StrOrBytesPath | None: ...
    def pread(self, offset: SupportsIndex, length: SupportsIndex, /) -> bytes: ...
    def readinto(self, offset: SupportsIndex, buffer: _Buffer, /) -> int: ...
    # The second overload lets a list[bytes] variable through: list is
    # invariant, so list[bytes] is not a list[_IOData].
    @overload
    def pwrite(self, offset: SupportsIndex, data: _IOData, /) -> None: ...
    @overload
    def pwrite(self, offset: SupportsIndex, data: Sequence[_Buffer], /) -> None: ...
    def sync(
        self, mode: _SyncMode = "sync", offset: SupportsIndex = 0, length: SupportsIndex = 0
    ) -> None: ...
    def flush(
        self, mode: _SyncMode = "sync", offset: SupportsIndex = 0, length: SupportsIndex = 0
    ) -> None: ...
    def truncate(self, new_size: SupportsIndex, /) -> None: ...
    def remap(self) -> int: ...
    def fileno(self) -> int: ...
    def advise(self, offset: SupportsIndex, length: SupportsIndex, hint: _Hint, /) -> None: ...
    def position(self) -> int: ...
    def close(self) -> None: ...
    def view(
        self, offset: SupportsIndex = 0, length: SupportsIndex | None = None
    ) -> memoryview: ...
    @overload
    def gather(self, offsets: _Offsets, length: SupportsIndex, out: None = None) -> bytearray: ...
    @overload
    def gather(self, offsets: _Offsets, length: SupportsIndex, out: _BufferT) -> _BufferT: ...
    def scatter(self, offsets: _Offsets, length: SupportsIndex, data: _Buffer, /) -> None: ...
    def resident(self, offset: SupportsIndex = 0, length: SupportsIndex = 0) -> int: ...
    def residency(self, offset: SupportsIndex = 0, length: SupportsIndex = 0) -> bytes: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> Literal[True]: ...
    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> bytes: ...
    @overload
    def __setitem__(self, key: SupportsIndex, value: int, /) -> None: ...
    @overload
    def __setitem__(self, key: slice, value: _Buffer, /) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...

def open(
    path: _Source,
    mode: _Mode = "read_write",
    *,
    private: bool = False,
    lock: bool = False,
    populate: bool = False,
    nocache: bool = False,
    create: bool = False,
    truncate: bool = False,
    size: SupportsIndex | None = None,
    offset: SupportsIndex = 0,
    length: SupportsIndex | None = None,
) -> MappedFile:
    """Map the file at `path` (or a descriptor, or a file object), or a window of it."""

def rearm_guard() -> None:
    """Put iommap's SIGBUS handler back in front of the process's handlers."""
