"""Files in the page cache, by path: residency, warming, eviction, locking.

What ``iommap info``, ``warm``, ``evict`` and ``lock`` do, as a library::

    from iommap import pagecache

    r = pagecache.residency("data.bin")
    print(r.resident_pages, "of", r.total_pages, "pages in memory")

    walk = pagecache.walk(["/var/lib/db"], ignore=["*.tmp"])
    for result in walk:              # results come as the walk goes
        if isinstance(result, pagecache.FileError):
            print("skipped", result.path, result.message)
    print(walk.totals.resident_bytes, "bytes cached")

Counts come from ``cachestat(2)`` where the kernel has it (Linux 6.5 and
later), which also gives the dirty, writeback, evicted and recently evicted
counts; elsewhere from ``mincore(2)`` on an iommap mapping of the file,
queried in chunks, so memory stays bounded whatever the file's size.

Linux tells the page cache of a file only to its owner, to who may write
it, and to holders of ``CAP_FOWNER``; for other files the counts are
``None`` and ``known`` is false, never a false 100%.
"""

from __future__ import annotations

import errno as _errno
import operator
import os
import stat as _stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import _core
from ._core import MappedFile
from ._core import open as _open
from ._errors import BadArgumentTypeError, BadArgumentValueError, Error

# typing only for the type checker: `iommap info` starts faster without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple
else:
    from ._named import NamedTuple

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]

__all__ = [
    "PAGE_SIZE",
    "FileResidency",
    "FileError",
    "Totals",
    "Walk",
    "Locked",
    "residency",
    "warm",
    "evict",
    "lock",
    "walk",
    "residency_map",
    "resident_ranges",
    "memory_filesystem",
    "cachestat_available",
]

PAGE_SIZE: Final[int] = _core.PAGE_SIZE
"""The system's page size in bytes: the unit of every page count here, as the
core maps with it (sysconf): 4 KiB on most machines, 16 KiB on Apple silicon
and some arm64 kernels, 64 KiB on some ppc64 ones."""

# mincore is asked about ranges of at most this many bytes of file: its
# vector takes 64 KiB whatever the file's size, and Ctrl-C is seen between
# two ranges (one takes about 20 ms on a sparse range, where the kernel looks
# up every page).
_CHUNK: Final[int] = 256 << 20

# warm_range touches the file a chunk at a time; the progress callback runs
# after each chunk, and Ctrl-C is seen between two.
_WARM_CHUNK: Final[int] = 8 << 20


class FileResidency(NamedTuple):
    """One file's pages in memory (a range of it, with ``offset``/``length``).

    Counts are of whole pages over the range examined. Those that the system
    does not tell are ``None``: all of them when ``known`` is false (Linux
    hides the page cache of files the caller neither owns nor may write),
    and the ``cachestat`` counts (dirty, writeback, evicted, recently
    evicted) where the kernel lacks ``cachestat(2)``.
    """

    path: str | bytes
    """The path as given (``os.fspath`` of it: ``str`` or ``bytes``), or as found
    under a directory given."""
    size: int
    """The file's size in bytes."""
    offset: int
    """Start of the range examined, in bytes (page-aligned)."""
    length: int
    """Bytes of the file in the range examined (the whole file: ``size``)."""
    total_pages: int
    """Pages in the range examined (the last one may be partial)."""
    known: bool
    """Whether the system told this file's residency."""
    resident_pages: int | None
    """Pages in the page cache now (fincore's PAGES)."""
    resident_bytes: int | None
    """``resident_pages`` times the page size: whole pages, as fincore's RES and
    ``MappedFile.resident()`` count (so a partly used last page counts whole)."""
    dirty_pages: int | None = None
    """Resident pages not yet written back."""
    writeback_pages: int | None = None
    """Pages being written back now."""
    evicted_pages: int | None = None
    """Pages that were cached and were evicted."""
    recently_evicted_pages: int | None = None
    """Evicted pages that would still be in memory had there been room."""
    resident_pages_before: int | None = None
    """For :func:`warm` and :func:`evict`: resident pages before they ran."""

    @property
    def percent(self) -> float | None:
        """Resident pages as a percentage of the range's pages (2 decimals)."""
        if self.resident_pages is None:
            return None
        if not self.total_pages:
            return 0.0
        return round(100.0 * self.resident_pages / self.total_pages, 2)


class FileError(NamedTuple):
    """A path that could not be processed; a walk goes on after it."""

    path: str | bytes
    reason: str
    """The lowercase errno name (``"enoent"``, ``"eacces"``...), ``"enodev"``
    for a file that cannot be mapped (``"enxio"`` for a socket, ``"eisdir"``
    for a directory), ``"sigbus"`` for one that shrank while it was read."""
    message: str
    """What went wrong, for people."""
    errno: int | None = None

    @classmethod
    def from_exception(cls, path: str | bytes, exc: OSError) -> FileError:
        """The error an ``OSError`` (or ``iommap.Error``) means for ``path``."""
        if isinstance(exc, Error):
            reason = exc.reason
        else:
            reason = _errno.errorcode.get(exc.errno or 0, "oserror").lower()
        message = os.strerror(exc.errno) if exc.errno else str(exc)
        if isinstance(exc, Error) and reason in ("enodev", "enxio") and exc.strerror:
            # iommap.open names the type of file it cannot map.
            message = exc.strerror[6:] if exc.strerror.startswith("open: ") else exc.strerror
        if reason == "sigbus":
            message = "the file shrank (or an I/O error struck) while it was being read"
        return cls(path, reason, message, exc.errno)


class Totals(NamedTuple):
    """What a :class:`Walk` has seen so far."""

    files: int
    """Files processed (each inode once unless hard links are counted)."""
    directories: int
    """Directories entered."""
    errors: int
    """Paths that could not be processed."""
    skipped: int
    """Files left out: ignored, over ``max_size``, not regular, a link seen."""
    size: int
    """Bytes of the ranges examined."""
    total_pages: int
    """Pages of the ranges examined."""
    resident_pages: int
    """Resident pages, over the files whose residency is known."""
    resident_bytes: int
    unknown: int
    """Files whose residency the system did not tell."""
    seconds: float
    """Time since the walk started."""

    @property
    def percent(self) -> float:
        """Resident pages as a percentage of all pages (2 decimals)."""
        if not self.total_pages:
            return 0.0
        return round(100.0 * self.resident_pages / self.total_pages, 2)


# ---- counting one file ---------------------------------------------------------

# Set once the kernel has said it has no cachestat(2): from then on, counts
# come from mincore(2) on a mapping.
_cachestat_missing = not sys.platform.startswith("linux")

# _CacheStat.status.
_COUNTED, _HIDDEN, _UNSUPPORTED, _NOT_REGULAR = 0, 1, 2, 3


class _CacheStat(NamedTuple):
    """What the core's ``file_cache_stat`` found for one file, named here,
    at the one place it is called (:func:`_cache_stat`)."""

    status: int
    """_COUNTED, _HIDDEN (the kernel hides the counts), _UNSUPPORTED (no
    cachestat(2)) or _NOT_REGULAR (then only ``mode`` is set)."""
    mode: int
    size: int
    dev: int
    ino: int
    start: int
    """The range counted, [start, end) in bytes, start on a page."""
    end: int
    cached: int
    dirty: int
    writeback: int
    evicted: int
    recently_evicted: int


_new_tuple = tuple.__new__


def _cache_stat(path: PathLike, offset: int, length: int | None, follow: bool) -> _CacheStat:
    """One file's page-cache counts over a range, in one call (open, fstat,
    cachestat, close). Named with tuple.__new__, as _CacheStat._make would
    be, without its checks: a walk makes one per file."""
    stat: _CacheStat = _new_tuple(_CacheStat, _core.file_cache_stat(path, offset, length, follow))
    return stat


def cachestat_available() -> bool:
    """Whether this kernel has ``cachestat(2)`` (Linux 6.5 and later), so
    results carry the dirty, writeback and evicted counts."""
    global _cachestat_missing
    if not _cachestat_missing:
        try:
            # Any regular file tells: this module's own. (Refused for a file
            # the caller may not see is an answer too: the call exists.)
            status = _cache_stat(__file__, 0, 1, True).status
        except OSError:
            return True  # cannot tell from here; the first real file will
        if status == _UNSUPPORTED:
            _cachestat_missing = True
    return not _cachestat_missing


def _has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


_fowner: bool | None = None


def _fowner_capability() -> bool:
    """Whether this process holds CAP_FOWNER (asked once)."""
    global _fowner
    if _fowner is None:
        _fowner = _has_capability(3)
    return _fowner


def _mincore_visible(path: PathLike, st: os.stat_result) -> bool:
    """Whether mincore(2) tells this process the truth about the file's pages.

    Linux (since 5.0) reveals the page cache only for files the caller owns,
    could open for writing, or holds CAP_FOWNER over; for any other file it
    reports every page resident, which would read as a false 100%.
    """
    if not sys.platform.startswith("linux") or st.st_uid == os.geteuid():
        return True
    effective = os.access in os.supports_effective_ids
    try:
        if os.access(path, os.W_OK, effective_ids=effective):
            return True
    except OSError:
        return False
    return _fowner_capability()


def _page_range(size: int, offset: int, length: int | None) -> tuple[int, int]:
    """[start, end) in bytes: the bytes of the range inside the file, the
    start moved down to its page; a range with no byte of the file (empty,
    or past the end) is empty, at the page of min(offset, size).  The core's
    file_cache_stat counts the same range (counted_range in pagecache.c)."""
    lo = min(offset, size)
    hi = size if length is None else min(size, lo + length)
    start = lo - lo % PAGE_SIZE
    return start, hi if hi > lo else start


def _pages(nbytes: int) -> int:
    return -(-nbytes // PAGE_SIZE)


class _NotRegular(OSError):
    pass


def _not_regular(mode: int) -> OSError:
    if _stat.S_ISDIR(mode):
        return IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR))
    return _NotRegular(_errno.ENODEV, "not a regular file")


def _counted(given: str | bytes, t: _CacheStat, before: int | None = None) -> FileResidency:
    """The result of a _CacheStat whose status is counted or hidden.

    Built with tuple.__new__, as FileResidency._make is: the walk makes one
    per file, and the generated __new__ costs more than the system calls."""
    size, start = t.size, t.start
    length = t.end - start
    total = -(-length // PAGE_SIZE)
    if t.status == _HIDDEN:
        fields: tuple[object, ...] = (
            given, size, start, length, total, False, None, None, None, None, None, None, before
        )  # fmt: skip
    else:
        resident = t.cached if t.cached < total else total
        fields = (
            given, size, start, length, total, True, resident, resident * PAGE_SIZE,
            t.dirty, t.writeback, t.evicted, t.recently_evicted, before,
        )  # fmt: skip
    result: FileResidency = _new_tuple(FileResidency, fields)
    return result


if TYPE_CHECKING:
    _Counted = tuple[_CacheStat | None, int, int | None]


def _count(path: PathLike, offset: int, length: int | None, follow: bool = True) -> _Counted:
    """Count one file: (its _CacheStat, size, None) with cachestat;
    (None, size, resident pages or None if hidden) with mincore."""
    if not _cachestat_missing:
        t = _cache_stat(path, offset, length, follow)
        if t.status == _NOT_REGULAR:
            return _count_mapped(path, offset, length)
        if t.status != _UNSUPPORTED:
            return t, t.size, None
        _mark_cachestat_missing()
    if _stat.S_ISDIR(os.stat(path, follow_symlinks=follow).st_mode):
        raise IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR), path)
    return _count_mapped(path, offset, length)


def _count_mapped(path: PathLike, offset: int, length: int | None) -> _Counted:
    """Count one file by mincore(2) on a mapping of it, in chunks (the
    vector for 1 GiB of file is 256 KiB, whatever the file's size).
    iommap.open decides what can be mapped (a block device can, at its
    size), as it decides for file_cache_stat: a FIFO, a socket, a character
    device or a pseudo-file is its iommap.Error naming the type, never
    blocking, however empty the range."""
    with _open(path, "read") as m:
        size = len(m)
        if not _mincore_visible(path, os.fstat(m.fileno())):
            return None, size, None
        pos, end = _page_range(size, offset, length)
        cached = 0
        while pos < end:
            n = min(_CHUNK, end - pos)
            cached += m.resident(pos, n) // PAGE_SIZE
            pos += n
    return None, size, cached


def _mark_cachestat_missing() -> None:
    global _cachestat_missing
    _cachestat_missing = True


def _result(
    given: str | bytes,
    counted: _Counted,
    offset: int,
    length: int | None,
    before: int | None = None,
) -> FileResidency:
    t, size, resident = counted
    if t is not None:
        return _counted(given, t, before)
    start, end = _page_range(size, offset, length)
    total = _pages(end - start)
    if resident is None:
        return FileResidency(
            given, size, start, end - start, total, False, None, None,
            resident_pages_before=before,
        )  # fmt: skip
    resident = min(resident, total)
    return FileResidency(
        given,
        size,
        start,
        end - start,
        total,
        True,
        resident,
        resident * PAGE_SIZE,
        resident_pages_before=before,
    )


def _resident_of(counted: _Counted) -> int | None:
    t, _, resident = counted
    if t is not None:
        return None if t.status == _HIDDEN else t.cached
    return resident


# ---- one file ----------------------------------------------------------------------


def _check_range(offset: int, length: int | None) -> tuple[int, int | None]:
    """offset and length as ints, checked as the core checks its numbers:
    badarg (``TypeError``) for what is not an int, badarg (``ValueError``)
    for a negative one; any other int, however large, is a position (past
    the end of a file, it counts nothing)."""
    return _number("offset", offset), None if length is None else _number("length", length)


def _number(name: str, value: object) -> int:
    if not hasattr(type(value), "__index__"):
        raise BadArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    n = operator.index(value)  # type: ignore[arg-type]  # what __index__ raises passes
    if n < 0:
        raise BadArgumentValueError(f"{name} must not be negative")
    return n


def _residency(
    path: PathLike, offset: int, length: int | None, follow: bool = True
) -> FileResidency:
    """The residency of one file, ``path`` a regular file (else OSError)."""
    return _result(_as_given(path), _count(path, offset, length, follow), offset, length)


def _evict(
    path: PathLike,
    offset: int,
    length: int | None,
    follow: bool = True,
    writeback: bool = False,
) -> FileResidency:
    """Evict one file's range; its residency after, with the count before."""
    before = _count(path, offset, length, follow)
    start, end = _page_range(before[1], offset, length)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not (_stat.S_ISREG(mode) or _stat.S_ISBLK(mode)):
            raise _not_regular(mode)  # swapped since it was counted
        if writeback:
            os.fdatasync(fd)
        if hasattr(os, "posix_fadvise") and end > start:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return _after(path, before, start, end, follow)


def _warm(
    path: PathLike,
    offset: int,
    length: int | None,
    follow: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileResidency:
    """Warm one file's range; its residency after, with the count before."""
    before = _count(path, offset, length, follow)
    start, end = _page_range(before[1], offset, length)
    if end > start:
        with _open(path, "read") as m:
            total = end - start

            def progress(done: int) -> None:
                if on_progress is not None:
                    on_progress(done, total)

            warm_range(m, start, total, on_progress=progress)
    return _after(path, before, start, end, follow)


def _after(path: PathLike, before: _Counted, start: int, end: int, follow: bool) -> FileResidency:
    """The residency of [start, end) once warmed or evicted."""
    after = _count(path, start, end - start, follow)
    return _result(_as_given(path), after, start, end - start, _resident_of(before))


def warm_range(
    m: MappedFile,
    offset: int = 0,
    length: int | None = None,
    *,
    chunk: int = _WARM_CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Bring ``[offset, offset + length)`` of a mapped file into the page cache.

    A range that ends at the end of the file gets a sequential-access hint
    (the kernel then reads ahead in large steps as the pages are touched).
    One that ends before gets the range and nothing more: read ahead would
    run past its end (a warm of 1 MiB in the middle of a file read 5 MiB),
    so each chunk is asked for exactly (a will-need hint over the chunk)
    and touched with read-ahead off. Then, a chunk at a time, one byte
    of each page copied out with ``m.gather``: SIGBUS-guarded, so a file that
    shrinks meanwhile raises ``iommap.SigbusError`` instead of killing the
    process. Touching a byte per page waits for each page without copying
    the data, as ``vmtouch -t`` does. (Measured on a cold 256 MiB file: about
    a third of the time of a will-need hint per chunk, which reads in the
    caller's system time, chunk after chunk.) ``length=None`` means to the
    end. ``on_progress(bytes_done)`` runs after each chunk; Ctrl-C
    (``KeyboardInterrupt``) is seen between chunks. Returns the bytes
    covered.
    """
    from array import array

    size = len(m)
    end = size if length is None else min(size, offset + length)
    chunk = max(PAGE_SIZE, chunk - chunk % PAGE_SIZE)
    start = offset - offset % PAGE_SIZE
    if start >= end:
        return 0
    exact = end < size
    m.advise(start, end - start, "random" if exact else "sequential")
    try:
        pos = start
        while pos < end:
            n = min(chunk, end - pos)
            if exact:
                m.advise(pos, n, "willneed")
            m.gather(array("q", range(pos, pos + n, PAGE_SIZE)), 1)
            pos += n
            if on_progress is not None:
                on_progress(pos - start)
    finally:
        m.advise(start, end - start, "normal")
    return end - start


def residency(path: PathLike, *, offset: int = 0, length: int | None = None) -> FileResidency:
    """How much of a file (or of ``[offset, offset + length)``) is in memory.

    Nothing is read. Raises ``OSError`` (``FileNotFoundError``,
    ``IsADirectoryError``, ...) for a path that cannot be read, and the
    ``iommap.Error`` naming the type for a file that cannot be mapped (a
    FIFO, a socket, a pseudo-file...), as ``iommap.open`` does; badarg
    (``TypeError``, ``ValueError``) for an offset or length that is not an
    int or is negative. A range with no byte of the file counts nothing.
    """
    offset, length = _check_range(offset, length)
    return _residency(path, offset, length)


def warm(
    path: PathLike,
    *,
    offset: int = 0,
    length: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileResidency:
    """Read a file (or a range of it) into the page cache; its residency after.

    A sequential-access hint, then a byte of each page is read, a chunk at a
    time, through iommap's SIGBUS-guarded copies, so the pages are in memory when
    it returns, as far as memory allows. ``on_progress(done, total)`` gets
    the bytes covered after each chunk. A file that shrinks meanwhile raises
    ``iommap.SigbusError``; Ctrl-C raises ``KeyboardInterrupt`` between two
    chunks. ``resident_pages_before`` is set in the result.
    """
    offset, length = _check_range(offset, length)
    return _warm(path, offset, length, on_progress=on_progress)


def evict(
    path: PathLike, *, offset: int = 0, length: int | None = None, writeback: bool = False
) -> FileResidency:
    """Drop a file's clean pages (or a range's) from the page cache.

    As ``vmtouch -e``: ``posix_fadvise(POSIX_FADV_DONTNEED)``. Dirty pages
    cannot go at once: the call starts their write-back, without waiting,
    and they stay cached until it completes (right after, they count as
    ``writeback_pages``, not ``dirty_pages``; no data is lost).
    ``writeback=True`` waits for the write first (``fdatasync``), so they
    go too. Pages another process has mapped or locked stay, and
    so does everything on a file system that lives in memory (tmpfs; see
    :func:`memory_filesystem`): the residency after tells.
    ``resident_pages_before`` is set in the result.
    """
    offset, length = _check_range(offset, length)
    return _evict(path, offset, length, writeback=writeback)


def residency_map(
    path: PathLike, cells: int = 64, *, offset: int = 0, length: int | None = None
) -> str:
    """A picture of where a file's resident pages are, one character a cell.

    Each cell stands for an equal share of the range's pages (one page each
    when there are no more pages than cells): ``O`` all resident, ``o``
    some, a space none, ``?`` unknown. Memory stays bounded: one count per
    cell.
    """
    offset, length = _check_range(offset, length)
    whole = residency(path, offset=offset, length=length)
    start, end = whole.offset, whole.offset + whole.length
    pages = whole.total_pages
    n = min(cells, pages)
    if not whole.known:
        return "?" * n
    out = []
    for i in range(n):
        first = start + (i * pages // n) * PAGE_SIZE
        last = min(end, start + ((i + 1) * pages // n) * PAGE_SIZE)
        got = _resident_of(_count(path, first, last - first))
        if got is None:
            return "?" * n
        want = _pages(last - first)
        out.append(" " if got == 0 else "O" if got >= want else "o")
    return "".join(out)


def resident_ranges(
    path: PathLike, *, offset: int = 0, length: int | None = None
) -> Iterator[tuple[int, int]]:
    """``(first, end)`` page numbers of each run of resident pages, in order.

    Pages are numbered from the start of the file. With ``cachestat(2)``,
    the work follows what is resident, not the file's size: a part that
    cachestat counts empty is skipped, one it counts full is one run, and
    only the rest is read with ``mincore`` (a terabyte file with a few
    resident pages takes a few dozen calls). Without it, ``mincore`` reads
    the whole range, in chunks. Memory stays bounded either way; yields
    nothing when the system hides the file's residency (see
    :func:`residency`).
    """
    offset, length = _check_range(offset, length)
    whole = residency(path, offset=offset, length=length)
    if not whole.known or not whole.resident_pages:
        return
    start, end = whole.offset, whole.offset + whole.length
    run: list[int] = []  # [first, end) of the run being gathered
    with _open(path, "read") as m:
        end = min(end, len(m))
        for first, last, vec in _resident_parts(path, m, start, end):
            if vec is None:
                pieces: Iterable[tuple[int, int]] = ((first, last),)
            else:
                pieces = _runs_in(vec, first)
            for a, b in pieces:
                if run and run[1] == a:
                    run[1] = b
                    continue
                if run:
                    yield (run[0], run[1])
                run = [a, b]
    if run:
        yield (run[0], run[1])


def _resident_parts(
    path: PathLike, m: MappedFile, start: int, end: int
) -> Iterator[tuple[int, int, bytes | None]]:
    """The parts of [start, end) (bytes, start on a page) that hold resident
    pages, in order, as (first page, end page, mincore vector or None when
    every page of the part is resident).  With cachestat, a part is split in
    two until cachestat says it is empty, full, or small enough for one
    mincore call; an explicit stack, no recursion."""
    stack = [(start, end)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo > _CHUNK and not _cachestat_missing:
            cached = _resident_of(_count(path, lo, hi - lo))
            pages = _pages(hi - lo)
            if cached == 0:
                continue
            if cached is not None and cached >= pages:
                yield (lo // PAGE_SIZE, lo // PAGE_SIZE + pages, None)
                continue
            if cached is not None:
                mid = lo + (hi - lo) // 2
                mid -= mid % PAGE_SIZE
                stack += [(mid, hi), (lo, mid)]
                continue
        pos = lo
        while pos < hi:
            n = min(_CHUNK, hi - pos)
            yield (pos // PAGE_SIZE, _pages(pos + n), m.residency(pos, n))
            pos += n


def _runs_in(vec: bytes, base: int) -> Iterator[tuple[int, int]]:
    """The runs of resident pages (1 bytes) in a mincore vector, as page
    numbers from `base`."""
    i = 0
    while True:
        j = vec.find(1, i)
        if j < 0:
            return
        k = vec.find(0, j)
        if k < 0:
            yield (base + j, base + len(vec))
            return
        yield (base + j, base + k)
        i = k


def memory_filesystem(path: PathLike) -> str | None:
    """``"tmpfs"`` or ``"ramfs"`` when the file lives on a file system kept
    in memory, whose pages cannot be evicted; otherwise ``None`` (also where
    the system cannot tell)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        buf = ctypes.create_string_buffer(256)  # struct statfs, f_type first
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.statfs(os.fsencode(path), buf) != 0:
            return None
        magic = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    except (OSError, AttributeError, ValueError):
        return None
    return {0x01021994: "tmpfs", 0x858458F6: "ramfs"}.get(magic)


def _as_given(path: PathLike) -> str | bytes:
    return path if isinstance(path, (str, bytes)) else os.fspath(path)


# ---- locking -----------------------------------------------------------------------


class Locked:
    """Files mapped and locked in memory (``mlock``), until :meth:`close`.

    Made by :func:`lock`; a context manager. ``files`` holds each file's
    residency once locked.
    """

    def __init__(self, handles: list[MappedFile], files: list[FileResidency]) -> None:
        self._handles = handles
        self.files = files

    @property
    def locked_bytes(self) -> int:
        """Bytes locked, over all files: each file's range (``length``)."""
        return sum(f.length for f in self.files)

    def close(self) -> None:
        """Unlock and unmap every file. Idempotent."""
        handles, self._handles = self._handles, []
        for m in handles:
            m.close()

    def __enter__(self) -> Locked:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lock(paths: Iterable[PathLike], *, offset: int = 0, length: int | None = None) -> Locked:
    """Map each file (or its range ``offset``/``length``) and lock its pages
    in memory, all or none.

    Only the range is mapped, read and locked: the pages of the range are
    read first, exactly (a will-need hint over the range), so locking reads
    nothing around it. Raises the first file's error (``OSError``,
    ``iommap.Error``) after unlocking what was locked. Locking needs a
    locked-memory limit (``ulimit -l``) as large as the ranges, or
    ``CAP_IPC_LOCK``.
    """
    offset, length = _check_range(offset, length)
    handles: list[MappedFile] = []
    files: list[FileResidency] = []
    try:
        for path in paths:
            if _stat.S_ISDIR(os.stat(path).st_mode):
                raise IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR), path)
            with _open(path, "read") as whole:  # it decides what can be mapped
                start, end = _page_range(len(whole), offset, length)
                if end > start:
                    whole.advise(start, end - start, "willneed")
                    # A window of the range alone: mlock touches nothing else.
                    handles.append(_open(path, "read", lock=True, offset=start, length=end - start))
            # Counted, not assumed: mlock brought every page of the range in.
            counted = _count(path, start, end - start)
            files.append(_result(_as_given(path), counted, start, end - start))
    except BaseException:
        for m in handles:
            m.close()
        raise
    return Locked(handles, files)


# ---- many files --------------------------------------------------------------------


Result = FileResidency | FileError


class Walk:
    """Files under paths, each processed as the walk reaches it.

    Iterate over it (once) for a :class:`FileResidency` or a
    :class:`FileError` per file; :attr:`totals` counts as it goes. Made by
    :func:`walk`, which documents the options.
    """

    def __init__(
        self,
        paths: Iterable[PathLike],
        action: str,
        *,
        offset: int,
        length: int | None,
        follow_symlinks: bool,
        one_filesystem: bool,
        ignore: Sequence[str],
        include: Sequence[str],
        max_size: int | None,
        count_hard_links: bool,
        writeback: bool,
        on_progress: Callable[[str | bytes, int, int], None] | None,
    ) -> None:
        if action not in ("residency", "warm", "evict"):
            raise ValueError(f"unknown action: {action!r} (residency, warm or evict)")
        offset, length = _check_range(offset, length)
        self._paths = paths
        self._action = ("residency", "warm", "evict").index(action)
        self._counts_only = action == "residency"
        self._process: Callable[[str | bytes, bool], FileResidency] = {
            "residency": self._residency,
            "warm": self._warm,
            "evict": self._evict,
        }[action]
        self._offset = offset
        self._length = length
        self._follow = follow_symlinks
        self._one_fs = one_filesystem
        self._ignore = list(ignore)
        self._include = list(include)
        self._max_size = max_size
        self._count_links = count_hard_links
        self._writeback = writeback
        self._on_progress = on_progress
        self._walker: Any = None
        self._started = time.monotonic()
        self._counts = [0] * 9
        self._current: str | bytes | None = None
        self._used = False

    @property
    def totals(self) -> Totals:
        """What the walk has counted so far (a snapshot)."""
        c = self._counts
        if self._walker is not None:
            c = [a + b for a, b in zip(c, self._walker.totals(), strict=False)]
        seconds = round(time.monotonic() - self._started, 6)
        return Totals(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], seconds)

    @property
    def current(self) -> str | bytes | None:
        """The path being processed now (to report an interrupted walk)."""
        if self._current is None and self._walker is not None:
            current: str | bytes | None = self._walker.current
            return current
        return self._current

    def __iter__(self) -> Iterator[Result]:
        if self._used:
            raise RuntimeError("a Walk can be iterated over once")
        self._used = True
        self._started = time.monotonic()
        # The walk, the filters and each file's system calls run in the C
        # core (walk.c), a batch of files at a time with the GIL released;
        # what it cannot decide comes back here: _fallback, _match.
        patterns = self._ignore + self._include
        py_match = any("[" in p for p in patterns) or sys.getfilesystemencoding() != "utf-8"
        mincore = _cachestat_missing
        walker = _core.walker(
            self._action,
            self._offset,
            self._length,
            self._follow,
            self._one_fs,
            self._ignore,
            self._include,
            self._max_size,
            self._count_links,
            self._writeback,
            mincore,
            mincore and _fowner_capability(),
            py_match,
            FileResidency,
            self._made_error,
            self._fallback,
            self._match,
            self._on_progress,
        )
        self._walker = walker
        try:
            for path in self._paths:
                given = _as_given(path)
                try:
                    walker.start(given)
                except ValueError:  # a name no system call can take
                    self._counts[2] += 1
                    yield FileError(given, "einval", "the path contains a NUL byte", _errno.EINVAL)
                    continue
                yield from walker
        finally:
            if walker.mincore():
                _mark_cachestat_missing()

    # what the C walk hands back -----------------------------------------------------

    def _made_error(self, path: str | bytes, code: int) -> FileError:
        """The error for a file the C walk could not process (already counted)."""
        if code == -1:
            return FileError(
                path,
                "sigbus",
                "the file shrank (or an I/O error struck) while it was being read",
                _errno.EFAULT,
            )
        return FileError.from_exception(path, OSError(code, os.strerror(code)))

    def _fallback(self, path: str | bytes, named: int) -> Result | None:
        """A file the C walk leaves to the library (a device or a FIFO named
        in the paths, a pseudo-file, a file swapped since its directory was
        read): it decides, as for any other file it is asked to map."""
        return self._file(path, True if named else self._follow, bool(named))

    def _match(self, which: int, name: bytes) -> bool:
        """Whether a name matches an ignore (0) or include (1) pattern, by
        fnmatch's rules (those the C walk does not follow itself)."""
        from fnmatch import fnmatchcase

        patterns = self._include if which else self._ignore
        text = os.fsdecode(name)
        return any(fnmatchcase(text, p) for p in patterns)

    # files -----------------------------------------------------------------------

    def _name_of(self, path: str | bytes) -> str:
        return os.path.basename(os.fsdecode(path))

    def _excluded(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        return bool(self._include) and not any(fnmatchcase(name, p) for p in self._include)

    def _error(self, path: str | bytes, exc: OSError) -> FileError:
        self._counts[2] += 1
        if isinstance(exc, _NotRegular):
            return FileError(path, "enodev", "not a regular file", _errno.ENODEV)
        return FileError.from_exception(path, exc)

    def _file(self, path: str | bytes, follow: bool, named: bool = False) -> Result | None:
        """The result for one regular file, or None when it is left out.

        A file that cannot be mapped (``iommap.open``'s one decision: a
        pseudo-file of /proc or /sys, a FIFO or device swapped in) is left
        out when met in a directory, as a FIFO met there is, and an error
        when ``named`` in the paths given."""
        counts = self._counts
        if self._include and self._excluded(self._name_of(path)):
            counts[3] += 1
            return None
        self._current = path
        try:
            t: _CacheStat | None = None
            if self._counts_only and not _cachestat_missing:
                # The common case in one call: open, fstat, cachestat, close.
                t = _cache_stat(path, self._offset, self._length, follow)
                status, size = t.status, t.size
                if status == _NOT_REGULAR and _stat.S_ISDIR(t.mode):
                    raise _not_regular(t.mode)
                if status == _NOT_REGULAR:
                    t = None  # a block device: counted through a mapping
                elif status == _UNSUPPORTED:
                    _mark_cachestat_missing()
                    return self._file(path, follow, named)
                else:
                    key = t.dev << 64 | t.ino
            if t is None:
                st = os.stat(path, follow_symlinks=follow)
                if _stat.S_ISDIR(st.st_mode):
                    raise _not_regular(st.st_mode)
                size, key = st.st_size, st.st_dev << 64 | st.st_ino
            if self._max_size is not None and size > self._max_size:
                counts[3] += 1
                self._current = None
                return None
            if not self._count_links and self._walker is not None:
                if self._walker.seen(key >> 64, key & (1 << 64) - 1):
                    counts[3] += 1
                    self._current = None
                    return None
            if t is not None:
                result = _counted(path, t)
            else:
                result = self._process(path, follow)
        except OSError as exc:
            self._current = None
            if not named and isinstance(exc, Error) and exc.reason in ("enodev", "enxio"):
                counts[3] += 1
                return None
            return self._error(path, exc)
        # Left set when Ctrl-C interrupts the file, to say which it was.
        self._current = None
        counts[0] += 1
        counts[4] += result.length
        counts[5] += result.total_pages
        if result.resident_pages is None:
            counts[8] += 1
        else:
            counts[6] += result.resident_pages
            counts[7] += result.resident_bytes or 0
        return result

    def _residency(self, path: str | bytes, follow: bool) -> FileResidency:
        return _residency(path, self._offset, self._length, follow)

    def _warm(self, path: str | bytes, follow: bool) -> FileResidency:
        return _warm(path, self._offset, self._length, follow, self._progress_for(path))

    def _evict(self, path: str | bytes, follow: bool) -> FileResidency:
        return _evict(path, self._offset, self._length, follow, self._writeback)

    def _progress_for(self, path: str | bytes) -> Callable[[int, int], None] | None:
        callback = self._on_progress
        if callback is None:
            return None

        def progress(done: int, total: int) -> None:
            assert callback is not None
            callback(path, done, total)

        return progress


def walk(
    paths: Iterable[PathLike],
    action: str = "residency",
    *,
    offset: int = 0,
    length: int | None = None,
    follow_symlinks: bool = False,
    one_filesystem: bool = False,
    ignore: Sequence[str] = (),
    include: Sequence[str] = (),
    max_size: int | None = None,
    count_hard_links: bool = False,
    writeback: bool = False,
    on_progress: Callable[[str | bytes, int, int], None] | None = None,
) -> Walk:
    """Process every regular file named in ``paths`` or found under them.

    ``action`` is ``"residency"`` (count only), ``"warm"`` or ``"evict"``,
    each as the function of that name does it, over the range ``offset`` /
    ``length`` of each file. ``paths`` may be any iterable (a generator
    reading a file list, say): it is consumed as the walk goes, and results
    come out as they are made, so memory does not grow with the tree (but
    for one entry per inode, to count hard links once).

    - Directories are walked recursively. A symlink named in ``paths`` is
      followed; one met inside a directory is not, unless
      ``follow_symlinks`` (loops are detected).
    - ``one_filesystem``: do not enter a directory on another file system
      than the path given.
    - ``ignore``: shell patterns (``fnmatch``) of names of files and
      directories to leave out; ``include``: if given, only files whose
      name matches one are processed. Both match the last part of the path.
    - ``max_size``: leave out files larger than this many bytes.
    - A file reached twice (a hard link, a path given twice) counts once,
      unless ``count_hard_links``.
    - Files that cannot be mapped (FIFOs, sockets, character devices,
      pseudo-files of /proc or /sys) met in a directory are left out; named
      in ``paths`` they are a :class:`FileError` naming the type.

    Left-out files count in ``totals.skipped``.
    """
    return Walk(
        paths,
        action,
        offset=offset,
        length=length,
        follow_symlinks=follow_symlinks,
        one_filesystem=one_filesystem,
        ignore=ignore,
        include=include,
        max_size=max_size,
        count_hard_links=count_hard_links,
        writeback=writeback,
        on_progress=on_progress,
    )
