# Types for iommap's C core (src/iommap/_core/). The public names are
# re-exported by iommap/__init__.py; the API reference (docs/api.md) is built
# from these docstrings, so they say all a user needs.
#
# Stubs are never executed, so typing_extensions and _typeshed cost nothing
# at run time: iommap has no runtime dependency.

import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol, SupportsIndex, TypeAlias, TypeVar, final, overload

from _typeshed import StrOrBytesPath
from typing_extensions import Buffer, Self

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
    """A memory-mapped file, made by [`iommap.open`][iommap.open].

    Only `iommap.open()` makes one: `iommap.MappedFile()` is a `TypeError`. The type
    is immutable, as `mmap.mmap` is.

    **Bounds.** An access is in bounds when `0 <= offset`, `0 <= length` and
    `offset + length <= len(m)`. Any non-negative `int` is accepted however large:
    past the end it is `out_of_bounds` (an `IndexError`), never an `OverflowError`.
    A negative offset or length is `badarg`.

    **Lifecycle.** `with iommap.open(...) as m:` closes on exit. A handle
    garbage-collected unclosed is closed with a `ResourceWarning`, as Python files
    are. A handle cannot be pickled (`TypeError`); each process opens the file
    itself. Handles take weak references, so a `weakref.WeakKeyDictionary` can
    key on them. `bool(m)` is `True`, open or closed, empty or not, as for a file
    object.

    **Threads.** One read-write lock per handle: `pread`, `readinto`, `advise`,
    `sync` and `position` share it; `pwrite`, `truncate` and `close` take it
    exclusively, so a read never sees half of a write on the same handle. Copies
    of 64 KiB and more release the GIL. [Threads](threading.md) has the rules.

    **Failures.** A failed call leaves the handle usable and as it was; the one
    exception is a `sigbus` during `pwrite` or `scatter`, which may have written a
    prefix of its data.
    """

    @property
    def closed(self) -> bool:
        """`True` once `close()` has been called; readable after close."""
    @property
    def mode(self) -> _Mode:
        """`"read"`, `"write"` or `"read_write"`, as given to `open()`."""
    @property
    def path(self) -> StrOrBytesPath | None:
        """The path as given to `open()`; `None` for a handle opened from a descriptor."""
    def pread(self, offset: SupportsIndex, length: SupportsIndex, /) -> bytes:
        """Return a copy of `length` bytes of the file at `offset`, as bytes.

        `pread(len(m), 0)` is `b""`. Past the end: `OutOfBoundsError`. If the file
        shrank under the range (another process, `os.truncate`): `SigbusError`, and
        the handle stays usable. A `"write"` handle refuses with `PermissionError`
        (reason `eacces`).
        """
    def readinto(self, offset: SupportsIndex, buffer: _Buffer, /) -> int:
        """Fill `buffer` with the file's bytes from `offset`; return how many bytes were
        copied: `memoryview(buffer).nbytes`.

        `buffer` is any writable C-contiguous buffer (`bytearray`, `memoryview`,
        `array.array`, a numpy array): nothing is allocated. Errors as for `pread`.
        """
    # The second overload lets a list[bytes] variable through: list is
    # invariant, so list[bytes] is not a list[_IOData].
    @overload
    def pwrite(self, offset: SupportsIndex, data: _IOData, /) -> None: ...
    @overload
    def pwrite(self, offset: SupportsIndex, data: Sequence[_Buffer], /) -> None:
        """Write `data` into the file at `offset`, as one operation under the lock.

        `data` is a bytes-like object, or a list or tuple of bytes-like objects and
        such lists, nested like an Erlang iolist (no `int`, no `str`), written
        contiguously. Nesting deeper than 100, or a list containing itself, is
        `badarg`.

        The work follows the input's size: a list whose sublists are shared
        (`a = [a, a]` thirty times is 31 lists and 2**30 pieces) is measured once
        per list, without expanding it. Longer than the mapping is `out_of_bounds`
        at once (`truncate` grows the file); more pieces than memory could ever hold
        is `badarg`. A `"read"` handle refuses with `PermissionError`. A
        `SigbusError` may leave a prefix of the data written.
        """
    def sync(
        self, mode: _SyncMode = "sync", offset: SupportsIndex = 0, length: SupportsIndex = 0
    ) -> None:
        """Flush the range's changes to the file.

        Only the range is flushed (widened to whole pages); `length=0` means to the
        end. When `sync("sync")` returns:

        - the data written through this handle in the range is on disk (`msync`
          with `MS_SYNC`);
        - the file's size is on disk too, in every state: after any size change
          (`truncate`, or an `open` that created, emptied or extended the file), and
          for an empty mapping, where `msync` has nothing to flush, `sync()` calls
          `fdatasync` (`fsync` where there is none), once per change;
        - for a file this handle's `open(create=True)` created, the directory entry
          is on disk: the first `sync()` calls `fsync` on the parent directory,
          after the file's own data and size, and only that once.

        So a file created, written and synced survives a power cut with its name,
        size and data. `sync("async")` schedules the write-back of the data
        (`MS_ASYNC`) and waits for nothing; the size and the directory entry wait
        for the next `sync("sync")`. A private handle's `sync()` writes no data, but
        makes durable the size its `open` gave the file.
        """
    def flush(
        self, mode: _SyncMode = "sync", offset: SupportsIndex = 0, length: SupportsIndex = 0
    ) -> None:
        """The same as sync(), for code written against mmap.mmap.

        mmap's `flush(offset, size)` is `sync(offset=offset, length=size)` here.
        """
    def truncate(self, new_size: SupportsIndex, /) -> None:
        """Resize the file to `new_size` bytes and remap it.

        Data past `new_size` is lost; growing reserves disk space as `open(size=)`
        does. The current size is allowed: it sets the file back to the mapped size,
        which restores service after a shrink from outside. Views made before keep
        the old mapping; those of this process read zeros past the new end, and
        their writes there go nowhere.

        A failed grow changes nothing: when the disk is full (`enospc`),
        `RLIMIT_FSIZE` is reached (`efbig`), or the mapping or `mlock` is refused,
        the file keeps the size and content it had and no disk space stays reserved;
        the handle is as it was. A `"read"` handle, a private mapping (resizing the
        file would not be private) and a window (it would resize the file under
        every other window: `badarg`) refuse it.
        """
    def remap(self) -> int:
        """Map the file's current size anew, without changing the file; return it.

        Follows growth by another process (a log being appended to) and restores
        service after a shrink from outside: reads past the new end are then
        `OutOfBoundsError`, not `SigbusError`. A window maps as much of its range
        as the file now holds. Views made before keep the old mapping. On a private
        mapping the new mapping shows the file as it is: changes made through the
        handle stay in the old views only. [Following a file](following.md).
        """
    def fileno(self) -> int:
        """Return the handle's file descriptor, for os.fstat, fcntl locks, os.sendfile.

        It belongs to the handle (`open()` duplicates a descriptor it is given) and
        is closed by `close()`: do not close it yourself, and `os.dup()` it to keep
        it longer. `ClosedError` once the handle is closed.
        """
    def advise(self, offset: SupportsIndex, length: SupportsIndex, hint: _Hint, /) -> None:
        """Tell the kernel how the range will be used (madvise).

        `hint` is `"normal"`, `"random"`, `"sequential"`, `"willneed"`,
        `"dontneed"`, `"hugepage"`, `"nohugepage"`, `"free"`, `"cold"`,
        `"pageout"`, `"populate_read"`, `"populate_write"`, `"dontdump"`,
        `"dodump"`, `"dontfork"`, `"dofork"` or `"remove"`
        ([what each does, per platform](platforms.md#advise-hints)). An unknown
        hint is `badarg`; one this platform lacks is an `OSError` naming it
        (`ENOTSUP`, or `EINVAL` from an older kernel).

        `length=0` means to the end; any in-bounds range is accepted, widened to
        whole pages, except for `"free"` and `"remove"`, which discard data: they
        act on the whole pages inside it only. On a private mapping `"dontneed"`
        uses `MADV_COLD` (or nothing where it does not exist): Linux's
        `MADV_DONTNEED` would throw the process's private changes away, and a hint
        must not lose data.
        """
    def position(self) -> int:
        """Return the current mapped size in bytes; len(self) is the same."""
    def close(self) -> None:
        """Unmap the file and close its descriptor.

        Calls in flight on other threads finish first; calls made after it raise
        `ClosedError`. Views stay valid: the pages are unmapped when the last one
        goes. Closing a closed handle does nothing, and a second `close()` racing
        the first returns once the first has finished.
        """
    def view(self, offset: SupportsIndex = 0, length: SupportsIndex | None = None) -> memoryview:
        """Return a memoryview over the mapped pages, without copying; length None
        means to the end.

        Made in O(1). Read-only for a `"read"` handle, writable otherwise (a
        private mapping's writes stay private); a `"write"` handle refuses with
        `PermissionError`.

        **Views outlive the handle's mapping.** The mapping is a reference-counted
        object of its own: the handle holds one reference, and each view (every
        slice of it, every numpy array made from it) holds one. So `close()` and
        `truncate()` never raise `BufferError` (as `mmap.mmap.close()` does while a
        buffer is exported): the old region is unmapped when its last view dies. An
        old view keeps its length and stays a live view of the same file pages
        where they still exist. When a handle of this process shrinks the file with
        `truncate()`, the older mappings read zeros past the new end and their
        writes there go nowhere: your own `truncate()` never kills your own views.

        **A view is not SIGBUS-protected against other processes.** Reading or
        writing it is your code (or numpy's) touching the pages directly; if another
        process (or `os.truncate`, or anything but iommap's own `truncate()`) has
        shrunk the file below them, the process dies of SIGBUS as with any mmap. So
        do views of another open handle's current mapping. `pread`, `readinto` and
        `gather` are the safe path for files others may truncate.
        """
    @overload
    def gather(self, offsets: _Offsets, length: SupportsIndex, out: None = None) -> bytearray: ...
    @overload
    def gather(self, offsets: _Offsets, length: SupportsIndex, out: _BufferT) -> _BufferT:
        """Copy `length` bytes from each offset, in order, into one buffer; return it.

        `out` is any writable buffer of exactly `len(offsets) * length` bytes, or
        `None` for a new `bytearray`. `offsets` is a sequence or iterable of ints,
        or a one-dimensional buffer of 8-byte integers in native byte order (numpy
        `int64`/`uint64`, `array('q')`/`array('Q')`; format `q`, `Q`, `l` or `L`)
        read without a Python int per element; any other buffer (`bytes`, `int32`,
        a 2-D array) is `badarg`, never read as something else. Zero offsets give an
        empty `bytearray` whatever `length`. A `"write"` handle refuses it.

        Batch calls are all-or-nothing on bounds: every range is checked before the
        first byte moves; the first bad offset fails the whole call with
        `out_of_bounds` and its index in the message (`offsets[2]: ...`), and
        nothing is copied. They take the handle lock once, release the GIL when
        the total is 64 KiB or more, and are SIGBUS-protected like `pread`.
        """
    def scatter(self, offsets: _Offsets, length: SupportsIndex, data: _Buffer, /) -> None:
        """Write chunk i of `data` at offsets[i], `length` bytes each, in order.

        `data` holds exactly `len(offsets) * length` bytes; a later overlapping
        chunk wins. Every range is checked before the first byte moves, as for
        `gather`; a `scatter` cut short by a SIGBUS may have written its first
        chunks, as a `pwrite` may have written a prefix. A `"read"` handle refuses
        it.
        """
    def resident(self, offset: SupportsIndex = 0, length: SupportsIndex = 0) -> int:
        """Return how many bytes of the pages the range touches are in memory now
        (mincore), whole pages counted; length 0 means to the end.

        Any mode. [The page cache from Python](pagecache.md) does the same by path.
        """
    def residency(self, offset: SupportsIndex = 0, length: SupportsIndex = 0) -> bytes:
        """Return one byte per page the range touches: 1 resident in memory now, 0 not
        (mincore); length 0 means to the end.
        """
    def __len__(self) -> int:
        """The current mapped size, as `position()`; `ClosedError` once closed."""
    def __bool__(self) -> Literal[True]: ...
    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> bytes:
        """`m[i]` is an `int`, `m[a:b]` is `bytes`: read as `pread` does, SIGBUS-protected.

        A negative index counts from the end; a range outside the mapping is
        `out_of_bounds`, never clamped; a step other than 1 is `badarg`.
        """
    @overload
    def __setitem__(self, key: SupportsIndex, value: int, /) -> None: ...
    @overload
    def __setitem__(self, key: slice, value: _Buffer, /) -> None:
        """`m[i] = byte` and `m[a:b] = data` write as `pwrite` does.

        `data` must have exactly `b - a` bytes (`badarg` otherwise); `byte` is an
        `int` in `range(256)`.
        """
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
    """Map the file at `path`, or a window of it, and return a MappedFile.

    Maps the whole file, or the window `offset=`/`length=` names. An empty file
    is allowed (size 0; `truncate` can grow it).

    - `path`: `str`, `bytes` or `os.PathLike`, and `m.path` returns it as given; or a
      file descriptor (`int`) or an object with `fileno()`, which the handle duplicates
      (closing either side never closes the other), and `m.path` is `None`. The
      descriptor's access mode must allow the mode (`eacces` otherwise); `create` and
      `truncate` need a path (`badarg`). [Details](migrating.md#what-you-hold-already).
    - `mode`: `"read"`, `"write"` or `"read_write"` (default). `"write"` opens the file
      read-write underneath (mmap needs it) but refuses `pread`/`readinto` with
      `eacces`; `"read"` refuses `pwrite`/`truncate` with `eacces`.
    - `private=True`: copy-on-write mapping: writes stay in this process, the file is
      never modified through the handle. The file is opened read-only unless `truncate`
      or `size` need to set it up.
    - `lock=True`: `mlock` the pages; failure (`enomem`, `eperm`) is an error. Pages
      stay locked after `truncate`.
    - `populate=True`: prefault the pages (`MAP_POPULATE` on Linux, a will-need hint
      elsewhere).
    - `nocache=True`: macOS: `F_NOCACHE` / `MAP_NOCACHE`. Linux and the BSDs have no
      uncached mapping: accepted, no effect.
    - `create=True`: create a missing file, mode `0o644` before umask.
    - `truncate=True`: empty an existing file first.
    - `size=N`: extend a shorter file to `N` bytes, reserving disk space (`fallocate`);
      a longer file is left as it is.
    - `offset=`, `length=`: map only the window `[offset, offset + length)` of the file;
      `length=None` (or 0) means to its end. Any offset: iommap maps from the page it
      falls in and hides that. Every position is then relative to the window, and
      nothing outside it can be reached. A window that passes the end of the file (after
      `size=`) is `out_of_bounds`. `truncate` on a window is `badarg`; `remap` maps as
      much of the window as the file holds.

    `"read"` with `create`, `truncate` or `size` is refused (`badarg`, a
    `ValueError`) before the file is touched.

    **What is mapped.** A regular file, at its size, and a block device, at the
    device's size (Linux: `BLKGETSIZE64`; other systems refuse block devices).
    `open()` never blocks: it opens with `O_NONBLOCK` (cleared again for a file
    it maps) and looks at what it opened before mapping anything. Anything else
    is refused with an `iommap.Error` whose message names the file type, with
    the errno the C library gives for a file that cannot be mapped: `ENODEV`
    (reason `"enodev"`) for a FIFO, a character device (`/dev/zero`), and a
    `/proc` or `/sys` pseudo-file, whose `st_size` has nothing to do with its
    content; `ENXIO` for a socket; `EISDIR` for a directory.

    **A failed open leaves the file as it was.** It removes the file it created
    (`create=True`), and `truncate=True` empties the file only once everything
    that can fail has succeeded. A failed grow changes nothing (see
    `MappedFile.truncate`). `open(truncate=True, size=N)` reserves the `N` bytes
    before it empties the file; only another process taking the space freed in
    the instant between emptying and re-reserving can make it fail after that,
    and then the file is left empty at size `N`.
    """

def rearm_guard() -> None:
    """Put iommap's SIGBUS handler back in front of the process's handlers.

    iommap does this itself at import, at every `open()` and at every call that
    releases the GIL (copies of 64 KiB or more, `truncate`, `sync`, ...). Call
    it after installing a SIGBUS handler of your own (or enabling or disabling
    `faulthandler`) once your last `open()` is done, so that small reads and
    writes are guarded again. The handler that was in front is kept and still
    receives every SIGBUS that is not a fault of an iommap copy
    ([Other SIGBUS handlers](truncation.md#other-sigbus-handlers)). Raises
    `OSError` (an `iommap.SystemCallError`) if `sigaction` fails.
    """
