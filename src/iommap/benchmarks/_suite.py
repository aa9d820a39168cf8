"""What is measured: the contenders, the groups they race in, and the run.

A *group* is one question ("4 KiB reads at random offsets in a hot 256 KiB
region"); its *contenders* answer it side by side, over the same
pre-generated offsets, interleaved for several repeats after one discarded
warm-up round (A B C, B C A, C A B, ...: each round starts one contender
later), so that every contender meets the same caches, page tables and
machine load.  Each group has a reference, the
stdlib ``mmap`` way of doing the same thing, and a limit: the interpreter's
call floor for small operations, memcpy bandwidth for large ones.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import operator
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import iommap

from .._core import PAGE_SIZE
from .._toolkit import Progress, format_size
from ._measure import Buffers, BusyMonitor, LoopArgs, Sampled, make_loop, run_once

#: Where the memcpy limit comes from, for the report.
MEMCPY_METHOD = (
    "ctypes.memmove between two preallocated buffers: libc memmove at C speed, "
    "called with the GIL released (ctypes releases it around foreign calls), "
    "so it measures 1 and 2 threads alike; the source is an anonymous buffer "
    "as large as the file (huge pages asked for, as the page cache may have "
    "them), read at the same random offsets as the file, so its caches are as "
    "cold as the file's. On 2 threads its figure includes ctypes' per-call "
    "work and GIL round trip, like every contender's"
)
CALL_FLOOR_METHOD = (
    "operator.is_(o, n): a METH_FASTCALL builtin taking two arguments, called "
    "in the same loop as every contender; nothing a method call can beat"
)


def size_label(n: int) -> str:
    """64 -> '64 B', 4096 -> '4 KiB', 1048576 -> '1 MiB'."""
    return format_size(n, exact=True)


def size_id(n: int) -> str:
    return size_label(n).replace(" ", "")


@dataclass
class Contender:
    id: str
    name: str
    body: str  # the loop body; names o, n, f, a, b
    setup: Callable[[Env, int, int], tuple[Any, Any, Any]]  # (env, n, thread) -> (f, a, b)
    needs: str | None = None  # "iommap", "numpy", "pyarrow"
    role: str = ""  # "reference", "limit" or ""


@dataclass
class Group:
    id: str
    title: str
    kind: str  # "small" (ns/op) or "large" (GB/s)
    op: str  # "read" or "write"
    size: int
    region: str  # "hot" or "file"
    threads: int
    contenders: list[Contender]
    calls: int | None = None  # calls per measurement, when not --ops (batch groups)

    @property
    def unit(self) -> str:
        return "ns/op" if self.kind == "small" else "GB/s"


@dataclass
class Row(Sampled):
    group: Group
    contender: Contender
    samples: list[float] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.group.kind != "small"


class Env:
    """The file under test, opened every way the contenders need, once."""

    def __init__(self, path: str, size: int, hot: int) -> None:
        self.path = path
        self.size = size
        self.hot = hot
        self.fd = os.open(path, os.O_RDWR)
        self.mm = mmap.mmap(self.fd, size)
        self.mv = memoryview(self.mm)
        self.missing: dict[str, str] = {}
        self.iommap = self._open_iommap()
        self.numpy, self.npm = self._open_numpy()
        self.pa_file = self._open_pyarrow()
        self._buffers: dict[tuple[int, int], bytearray] = {}
        self._views: dict[tuple[int, int], memoryview] = {}
        self._data: dict[object, Any] = {}
        self.buffers = Buffers(size)

    # -- optional contenders -------------------------------------------------
    @property
    def io(self) -> iommap.MappedFile:
        """The iommap handle (rows that need it are skipped when it is missing)."""
        if self.iommap is None:
            raise RuntimeError(self.missing.get("iommap", "iommap unavailable"))
        return self.iommap

    def _open_iommap(self) -> iommap.MappedFile | None:
        try:
            return iommap.open(self.path, "read_write")
        except Exception as exc:  # reported as the iommap rows' skip reason
            self.missing["iommap"] = f"iommap unavailable: {type(exc).__name__}: {exc}"
            return None

    def _open_numpy(self) -> tuple[Any, Any]:
        try:
            import numpy
        except ImportError:
            self.missing["numpy"] = "numpy not installed"
            return None, None
        return numpy, numpy.memmap(self.path, dtype=numpy.uint8, mode="r", shape=(self.size,))

    def _open_pyarrow(self) -> Any:
        try:
            import pyarrow
        except ImportError:
            self.missing["pyarrow"] = "pyarrow not installed"
            return None
        return pyarrow.memory_map(self.path, "r")

    # -- buffers ------------------------------------------------------------
    def dst(self, thread: int, n: int) -> bytearray:
        """The preallocated destination of `n` bytes for one thread (touched)."""
        key = (thread, n)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = bytearray(b"\x01") * n
        return buf

    def dst_view(self, thread: int, n: int) -> memoryview:
        key = (thread, n)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = memoryview(self.dst(thread, n))
        return view

    def address(self, buf: bytearray | mmap.mmap) -> int:
        return self.buffers.address(buf)

    def pool_address(self) -> int:
        """The memcpy limit's source (see Buffers)."""
        return self.buffers.pool_address()

    def records(self, count: int, n: int) -> tuple[list[int], Any, Any]:
        """`count` random record-aligned offsets (multiples of `n`), as a list and
        as a numpy int64 array when numpy is there."""
        key = ("records", count, n)
        got = self._data.get(key)
        if got is None:
            rng = random.Random(f"records/{count}/{n}")
            index = [rng.randrange(self.size // n) for _ in range(count)]
            offsets = [i * n for i in index]
            arrays: tuple[Any, Any] = (None, None)
            if self.numpy is not None:
                arrays = (
                    self.numpy.array(index, dtype=self.numpy.int64),
                    self.numpy.array(offsets, dtype=self.numpy.int64),
                )
            got = self._data[key] = (offsets,) + arrays
        result: tuple[list[int], Any, Any] = got
        return result

    def data(self, n: int) -> bytes:
        d = self._data.get(n)
        if d is None:
            d = self._data[n] = random.Random(n).randbytes(n)
        result: bytes = d
        return result

    def close(self) -> None:
        self.buffers.release()
        self._views.clear()
        self._buffers.clear()
        if self.iommap is not None:
            self.iommap.close()
        if self.pa_file is not None:
            self.pa_file.close()
        if self.npm is not None:
            mm = getattr(self.npm, "_mmap", None)
            self.npm = None
            if mm is not None:
                try:
                    mm.close()
                except BufferError:
                    pass
        self.mv.release()
        self.mm.close()
        os.close(self.fd)


# -- the contenders ------------------------------------------------------------

_CALL_FLOOR = Contender(
    "call_floor",
    "call floor: operator.is_(o, n)",
    "f(o, n)",
    lambda e, n, t: (operator.is_, None, None),
    role="limit",
)

# The readers both read groups compare; a large read names the new bytes
# object a reader makes, which a small one takes for granted.
_IOMMAP_PREAD = Contender(
    "iommap_pread",
    "iommap pread",
    "f(o, n)",
    lambda e, n, t: (e.io.pread, None, None),
    needs="iommap",
)
_IOMMAP_READINTO = Contender(
    "iommap_readinto",
    "iommap readinto",
    "f(o, a)",
    lambda e, n, t: (e.io.readinto, e.dst(t, n), None),
    needs="iommap",
)
_MMAP_SLICE = Contender(
    "mmap_slice",
    "mmap slice mm[o:o+n]",
    "a[o:o+n]",
    lambda e, n, t: (None, e.mm, None),
    role="reference",
)
_MEMORYVIEW_COPY = Contender(
    "memoryview_copy",
    "memoryview copy dst[:] = mv[o:o+n]",
    "a[:] = b[o:o+n]",
    lambda e, n, t: (None, e.dst_view(t, n), e.mv),
)
_OS_PREAD = Contender("os_pread", "os.pread", "f(a, n, o)", lambda e, n, t: (os.pread, e.fd, None))
_OS_PREADV = Contender(
    "os_preadv",
    "os.preadv into a buffer",
    "f(a, b, o)",
    lambda e, n, t: (os.preadv, e.fd, [e.dst(t, n)]),
)
_PYARROW_READ_AT = Contender(
    "pyarrow_read_at",
    "pyarrow read_at (zero-copy Buffer)",
    "f(n, o)",
    lambda e, n, t: (e.pa_file.read_at, None, None),
    needs="pyarrow",
)


def _new_bytes(c: Contender) -> Contender:
    return replace(c, name=f"{c.name} (new bytes)")


SMALL_READS = [
    _IOMMAP_PREAD,
    _IOMMAP_READINTO,
    _MMAP_SLICE,
    _MEMORYVIEW_COPY,
    _OS_PREAD,
    _OS_PREADV,
    Contender(
        "numpy_memmap",
        "numpy.memmap m[o:o+n].tobytes()",
        "a[o:o+n].tobytes()",
        lambda e, n, t: (None, e.npm, None),
        needs="numpy",
    ),
    _PYARROW_READ_AT,
    _CALL_FLOOR,
]

LARGE_READS = [
    _IOMMAP_READINTO,
    _new_bytes(_IOMMAP_PREAD),
    _new_bytes(_MMAP_SLICE),
    _MEMORYVIEW_COPY,
    _OS_PREADV,
    _new_bytes(_OS_PREAD),
    Contender(
        "numpy_copyto",
        "numpy.copyto(dst, memmap[o:o+n])",
        "f(a, b[o:o+n])",
        lambda e, n, t: (
            e.numpy.copyto,
            e.numpy.frombuffer(e.dst(t, n), dtype=e.numpy.uint8),
            e.npm,
        ),
        needs="numpy",
    ),
    _PYARROW_READ_AT,
    # ctypes.memmove(dst, src, count): from the pool at the offset into the buffer.
    Contender(
        "memcpy",
        "memcpy: ctypes.memmove",
        "f(b, a + o, n)",
        lambda e, n, t: (ctypes.memmove, e.pool_address(), e.address(e.dst(t, n))),
        role="limit",
    ),
]

SMALL_WRITES = [
    Contender(
        "iommap_pwrite",
        "iommap pwrite",
        "f(o, a)",
        lambda e, n, t: (e.io.pwrite, e.data(n), None),
        needs="iommap",
    ),
    Contender(
        "mmap_slice_assign",
        "mmap slice assignment mm[o:o+n] = d",
        "a[o:o+n] = b",
        lambda e, n, t: (None, e.mm, e.data(n)),
        role="reference",
    ),
    Contender(
        "memoryview_assign",
        "memoryview slice assignment mv[o:o+n] = d",
        "a[o:o+n] = b",
        lambda e, n, t: (None, e.mv, e.data(n)),
    ),
    Contender("os_pwrite", "os.pwrite", "f(a, b, o)", lambda e, n, t: (os.pwrite, e.fd, e.data(n))),
    _CALL_FLOOR,
]


#: gather: records per call (fewer on a file too small for them), calls per measurement.
GATHER_RECORDS = 100_000
GATHER_CALLS = 5


def gather_records(size: int, n: int) -> int:
    return min(GATHER_RECORDS, size // (2 * n))


def _gather_setup(kind: str) -> Callable[[Env, int, int], tuple[Any, Any, Any]]:
    def setup(e: Env, n: int, t: int) -> tuple[Any, Any, Any]:
        count = gather_records(e.size, n)
        offsets, index, offsets_np = e.records(count, n)
        out = e.dst(t, count * n)
        if kind == "numpy_offsets":
            return e.io.gather, offsets_np, out
        if kind == "list_offsets":
            return e.io.gather, offsets, out
        if kind == "pread_loop":
            return e.io.pread, offsets, None
        if kind == "fancy":
            rows = e.npm[: e.size // n * n].reshape(-1, n)
            return None, rows, index
        # The limit: as many bytes in one contiguous copy from the pool (as
        # large as the file) into the same buffer; the lambda's call is noise
        # beside a copy of megabytes.
        total, memmove = count * n, ctypes.memmove
        return (lambda dst, src: memmove(dst, src, total)), e.address(out), e.pool_address()

    return setup


GATHER = [
    Contender(
        "iommap_gather_numpy",
        "iommap gather(int64 array, n, out)",
        "f(a, n, b)",
        _gather_setup("numpy_offsets"),
        needs="numpy",
    ),
    Contender(
        "iommap_gather_list",
        "iommap gather(list of ints, n, out)",
        "f(a, n, b)",
        _gather_setup("list_offsets"),
        needs="iommap",
    ),
    Contender(
        "pread_loop",
        "Python loop [pread(o, n) for o in offsets]",
        "[f(i, n) for i in a]",
        _gather_setup("pread_loop"),
        needs="iommap",
    ),
    Contender(
        "numpy_fancy",
        "numpy fancy indexing memmap2d[idx]",
        "a[b]",
        _gather_setup("fancy"),
        needs="numpy",
        role="reference",
    ),
    Contender(
        "memcpy",
        "memcpy of the same bytes: ctypes.memmove",
        "f(a, b)",
        _gather_setup("memcpy"),
        role="limit",
    ),
]

VIEWS = [
    Contender(
        "iommap_view_1",
        "iommap view(o, 1)",
        "f(o, 1)",
        lambda e, n, t: (e.io.view, None, None),
        needs="iommap",
    ),
    Contender(
        "iommap_view_file",
        "iommap view() of the whole file",
        "f()",
        lambda e, n, t: (e.io.view, None, None),
        needs="iommap",
    ),
    Contender(
        "iommap_view_rest",
        "iommap view(1, size - 1)",
        "f(1, a)",
        lambda e, n, t: (e.io.view, e.size - 1, None),
        needs="iommap",
    ),
    Contender(
        "memoryview_slice",
        "memoryview(mmap)[o:o+1]",
        "a[o:o+1]",
        lambda e, n, t: (None, e.mv, None),
        role="reference",
    ),
    _CALL_FLOOR,
]


def build_groups(
    size: int, hot: int, small_sizes: list[int], large_sizes: list[int], threads: int
) -> list[Group]:
    groups: list[Group] = []
    for n in small_sizes:
        for region in ("hot", "file"):
            where = (
                (f"random in a hot {size_label(hot)} region")
                if region == "hot"
                else (f"random over the {size_label(size)} file")
            )
            groups.append(
                Group(
                    f"read/{size_id(n)}/{region}",
                    f"read {size_label(n)}, {where}",
                    "small",
                    "read",
                    n,
                    region,
                    1,
                    SMALL_READS,
                )
            )
    for n in large_sizes:
        for t in sorted({1, threads}):
            groups.append(
                Group(
                    f"read/{size_id(n)}/{t}t",
                    f"read {size_label(n)}, {t} thread{'s' if t > 1 else ''}",
                    "large",
                    "read",
                    n,
                    "file",
                    t,
                    LARGE_READS,
                )
            )
    for n in small_sizes:
        groups.append(
            Group(
                f"write/{size_id(n)}/hot",
                f"write {size_label(n)}, random in a hot {size_label(hot)} region",
                "small",
                "write",
                n,
                "hot",
                1,
                SMALL_WRITES,
            )
        )
    groups.append(
        Group(
            "gather/64B",
            f"gather {gather_records(size, 64)} records of 64 B at random offsets (ns per call)",
            "small",
            "gather",
            64,
            "file",
            1,
            GATHER,
            calls=GATHER_CALLS,
        )
    )
    groups.append(
        Group("view", "view creation (ns per view)", "small", "view", 1, "file", 1, VIEWS)
    )
    return groups


def _loop_args(
    c: Contender, env: Env, group: Group, offsets: list[list[int]]
) -> list[tuple[Any, ...]]:
    """The arguments of `c`'s loop in each thread of `group`."""
    return [
        (offsets[t], group.size) + tuple(c.setup(env, group.size, t)) for t in range(group.threads)
    ]


def _offsets(rng: random.Random, group: Group, size: int, hot: int, count: int) -> list[int]:
    n = group.size
    if group.kind == "large":
        # Page-aligned, as a reader of large blocks would ask for them.
        slots = (size - n) // PAGE_SIZE + 1
        return [rng.randrange(slots) * PAGE_SIZE for _ in range(count)]
    span = hot if group.region == "hot" else size
    return [rng.randrange(span - n + 1) for _ in range(count)]


def run_group(
    env: Env,
    group: Group,
    *,
    ops: int,
    large_bytes: int,
    repeats: int,
    seed: str,
    progress: Progress,
    label: str,
    monitor: BusyMonitor | None = None,
) -> tuple[list[Row], dict[str, Any] | None]:
    """Measures every contender of `group`; returns its rows and the busy figure."""
    rng = random.Random(f"{seed}/{group.id}")
    count = group.calls or (ops if group.kind == "small" else max(2, large_bytes // group.size))
    offsets = [_offsets(rng, group, env.size, env.hot, count) for _ in range(group.threads)]

    rows: list[Row] = []
    runs: list[tuple[Row, Any, list[LoopArgs]]] = []
    for c in group.contenders:
        row = Row(group, c)
        rows.append(row)
        per_thread = row.set_up(c.needs, env.missing, _loop_args, c, env, group, offsets)
        if per_thread is not None:
            runs.append((row, make_loop(c.body), per_thread))

    total_bytes = group.threads * count * group.size
    monitor = monitor or BusyMonitor()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    monitor.start()
    try:
        # Round 0 warms caches and page tables and is thrown away.  Each
        # round starts one contender later (A B C, B C A, ...), so no
        # contender always follows the same neighbour.
        for r in range(repeats + 1):
            shift = r % len(runs) if runs else 0
            for row, loop, per_thread in runs[shift:] + runs[:shift]:
                if row.error:
                    continue
                progress.status(
                    "{} {}: {} ({})".format(
                        label,
                        group.title,
                        row.contender.name,
                        "warm-up" if r == 0 else f"repeat {r}/{repeats}",
                    )
                )
                try:
                    elapsed = run_once(loop, per_thread)
                except Exception as exc:
                    row.error = f"{type(exc).__name__}: {exc}"
                    row.samples.clear()
                    continue
                if r == 0:
                    continue
                elapsed = max(elapsed, 1)
                if group.kind == "small":
                    row.samples.append(elapsed / count)
                else:
                    row.samples.append(total_bytes / elapsed)  # bytes per ns = GB/s
    finally:
        busy = monitor.stop()
        if gc_was_enabled:
            gc.enable()
    return rows, busy
