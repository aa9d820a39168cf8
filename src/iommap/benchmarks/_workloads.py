"""Real workloads, side by side: the code people write today, and iommap's way.

Five jobs users run, each as a *case* (one size of one job) whose *ways* do
the same work and must produce the same result:

1. training batches from a token file (the ``get_batch`` of small GPT
   training scripts);
2. fixed-size records by id (an embedding or feature table);
3. scanning a file from start to end in chunks, with a checksum;
4. many worker processes reading random records of one cached file;
5. appending records to a file that grows in steps.

Every case first runs each way once untimed and compares the results (a
way whose result differs is reported as an error, not timed), then times
the ways interleaved over several rounds, each round starting one way
later, like the rest of the suite.  The figures are medians with the best
and the spread beside them.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import mmap
import os
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import iommap

from .._toolkit import KiB, MiB, Progress, format_size, render_table
from . import _readers
from ._measure import Buffers, BusyMonitor, Sampled

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess


clock = time.perf_counter_ns


@dataclass
class Sample:
    """One run of one way: its time and, when checked, its result as bytes."""

    ns: int
    digest: bytes | None = None
    extra: dict[str, float] = field(default_factory=dict)


#: A way, ready to run: ``runner(check)``.  With ``check`` it returns the
#: result to compare (its ``ns`` is not used); without, the timed run.
Runner = Callable[[bool], Sample]


@dataclass
class Way:
    id: str
    name: str
    side: str  # "today", "iommap" or "limit"
    make: Callable[[Ctx], Runner]
    needs: str | None = None  # "numpy" or "pyarrow"


@dataclass
class Case:
    id: str
    title: str
    unit: str
    rate: bool  # True: value = scale / ns, higher is better; False: value = ns * scale
    scale: float
    ways: list[Way]
    repeats: int
    note: str = ""
    extra: Callable[[dict[str, float]], str] | None = None  # the row's extra column
    # The busy-machine check counts other processes' CPU time: off where the
    # case's own worker processes are those others.
    busy_check: bool = True

    def value(self, ns: int) -> float:
        ns = max(ns, 1)
        return self.scale / ns if self.rate else ns * self.scale


@dataclass
class WorkRow(Sampled):
    case: Case
    way: Way
    samples: list[float] = field(default_factory=list)
    extras: dict[str, list[float]] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.case.rate

    @property
    def spread(self) -> float | None:
        """Half the range of the samples, as a fraction of the median."""
        median = self.median
        if median is None or median <= 0:
            return None
        return (max(self.samples) - min(self.samples)) / 2 / median

    def extra_medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.extras.items() if v}


def speed(row: WorkRow | None, other: WorkRow | None) -> float | None:
    """How many times as fast `row` is as `other`, from medians (None if either is missing)."""
    if row is None or other is None or not row.ok or not other.ok:
        return None
    a, b = row.median, other.median
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return a / b if row.case.rate else b / a


def fastest_today(rows: Sequence[WorkRow]) -> WorkRow | None:
    """The fastest of today's ways that ran (by median)."""
    best: WorkRow | None = None
    for row in rows:
        if row.way.side == "today" and row.ok and (best is None or (speed(row, best) or 0) > 1):
            best = row
    return best


class Ctx:
    """What the ways share: the test file, the optional packages, scratch space."""

    def __init__(self, path: str, size: int, scratch: str, seed: str) -> None:
        self.path = path
        self.size = size
        self.scratch = scratch
        self.seed = seed
        self.missing: dict[str, str] = {}
        try:
            import numpy
        except ImportError:
            self.missing["numpy"] = "numpy not installed"
        else:
            del numpy
        try:
            import pyarrow
        except ImportError:
            self.missing["pyarrow"] = "pyarrow not installed"
        else:
            del pyarrow
        self.buffers = Buffers(size)
        self.cleanups: list[Callable[[], None]] = []
        self.cache: dict[tuple[object, ...], Any] = {}

    def rng_seed(self, what: str) -> int:
        """A seed for `what` that is the same in every run with the same --seed."""
        return zlib.crc32((f"{self.seed}/{what}").encode())

    def address(self, buf: bytearray | mmap.mmap) -> int:
        return self.buffers.address(buf)

    def pool_address(self) -> int:
        """The memcpy line's source: the suite's memcpy limit's (see Buffers)."""
        return self.buffers.pool_address()

    def release(self) -> None:
        """Runs the cleanups and frees the pool (between cases)."""
        while self.cleanups:
            self.cleanups.pop()()
        self.buffers.release()


def as_bytes(result: Any) -> bytes:
    """A way's result as bytes, to compare: ints, lists, or anything with the
    buffer protocol (arrays, bytes, pyarrow buffers)."""
    if isinstance(result, int):
        return result.to_bytes(8, "little")
    if isinstance(result, list):
        return b"".join(as_bytes(r) for r in result)
    return bytes(memoryview(result))


def _np() -> Any:
    """numpy, imported where a way needs it (it is optional)."""
    import numpy

    return numpy


def _xor_words(np: Any, data: Any, words: int, step: int) -> Any:
    """The XOR of the first `words` words of the array `data`, `step` words a slice."""
    xor = np.bitwise_xor.reduce
    acc = np.uint64(0)
    for o in range(0, words, step):
        acc ^= xor(data[o : o + step])
    return acc


def _items_runner(items: Sequence[Any], get: Callable[[Any], object]) -> Runner:
    """A way that processes `items` one call of `get` each (a batch, a query)."""

    def run(check: bool) -> Sample:
        if check:
            digest = b"".join(as_bytes(get(item)) for item in items[:3])
            for item in items:  # the rest: a warm-up
                get(item)
            return Sample(0, digest)
        t0 = clock()
        for item in items:
            get(item)
        return Sample(clock() - t0)

    return run


# -- 1. training batches from a token file -------------------------------------


def _batches(ctx: Ctx, batch: int, block: int, count: int) -> list[Any]:
    """The batches' window starts (token indices), the same for every way."""
    key = ("batches", batch, block, count)
    if key not in ctx.cache:
        np = _np()
        tokens = ctx.size // 2
        rng = np.random.default_rng(ctx.rng_seed(f"batches/{batch}/{block}"))
        ctx.cache[key] = [
            rng.integers(0, tokens - block, size=batch, dtype=np.int64) for _ in range(count)
        ]
    result: list[Any] = ctx.cache[key]
    return result


def batch_ways(batch: int, block: int, count: int) -> list[Way]:
    """Ways to make (batch, block) int64 batches of random windows of a uint16 token file."""

    def per_batch_memmap(ctx: Ctx) -> Runner:
        np = _np()
        path = ctx.path

        # The pattern of small GPT training scripts (nanoGPT's get_batch): a new
        # np.memmap on every call, because a memmap kept open grows the
        # process's memory, then one slice per window, each widened to int64,
        # stacked into the batch.
        def get_batch(ix: Any) -> Any:
            data = np.memmap(path, dtype=np.uint16, mode="r")
            return np.stack([data[i : i + block].astype(np.int64) for i in ix])

        return _items_runner(_batches(ctx, batch, block, count), get_batch)

    def kept_memmap(ctx: Ctx) -> Runner:
        np = _np()
        data = np.memmap(ctx.path, dtype=np.uint16, mode="r")

        # The same with the memmap made once and kept.
        def get_batch(ix: Any) -> Any:
            return np.stack([data[i : i + block].astype(np.int64) for i in ix])

        return _items_runner(_batches(ctx, batch, block, count), get_batch)

    def fancy(ctx: Ctx) -> Runner:
        np = _np()
        data = np.memmap(ctx.path, dtype=np.uint16, mode="r")
        steps = np.arange(block, dtype=np.int64)

        # No Python loop: a (batch, block) array of token indices, and numpy's
        # advanced indexing fetches them all at once.
        def get_batch(ix: Any) -> Any:
            return data[ix[:, None] + steps].astype(np.int64)

        return _items_runner(_batches(ctx, batch, block, count), get_batch)

    def gather(ctx: Ctx) -> Runner:
        np = _np()
        m = iommap.open(ctx.path, "read")
        ctx.cleanups.append(m.close)
        windows = np.empty((batch, block), dtype=np.uint16)  # reused by every batch
        length = block * 2

        # One gather copies every window into the reused uint16 array (byte
        # offsets are token indices times 2); astype makes the int64 batch.
        def get_batch(ix: Any) -> Any:
            m.gather(ix * 2, length, windows)
            return windows.astype(np.int64)

        return _items_runner(_batches(ctx, batch, block, count), get_batch)

    return [
        Way(
            "memmap_per_batch",
            "np.memmap per batch + stack of slices",
            "today",
            per_batch_memmap,
            "numpy",
        ),
        Way("memmap_kept", "np.memmap kept open + stack of slices", "today", kept_memmap, "numpy"),
        Way("memmap_fancy", "np.memmap fancy indexing", "today", fancy, "numpy"),
        Way("iommap_gather", "gather into a reused array + astype", "iommap", gather, "numpy"),
    ]


# -- 2. fixed-size records by id -----------------------------------------------


def _queries(ctx: Ctx, records: int, ids: int, count: int) -> list[Any]:
    """`count` queries of `ids` random record ids: numpy int64 arrays."""
    key = ("queries", records, ids, count)
    if key not in ctx.cache:
        np = _np()
        rng = np.random.default_rng(ctx.rng_seed(f"queries/{records}/{ids}"))
        ctx.cache[key] = [rng.integers(0, records, size=ids, dtype=np.int64) for _ in range(count)]
    result: list[Any] = ctx.cache[key]
    return result


def record_ways(record: int, records: int, ids: int, count: int) -> list[Way]:
    """Ways to fetch `ids` records of `record` bytes by id from a table of `records`."""

    def listed(ctx: Ctx) -> list[list[int]]:
        # The loops take plain Python ints, as ids arrive from a request.
        return [q.tolist() for q in _queries(ctx, records, ids, count)]

    def fancy(ctx: Ctx) -> Runner:
        np = _np()
        table = np.memmap(ctx.path, dtype=np.uint8, mode="r", shape=(records, record))

        # The table as a 2-D memmap, one row per record; indexing it with the
        # array of ids copies those rows into a new array.
        def query(q: Any) -> Any:
            return table[q]

        return _items_runner(_queries(ctx, records, ids, count), query)

    def mmap_loop(ctx: Ctx) -> Runner:
        with open(ctx.path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        ctx.cleanups.append(mm.close)
        n = record

        # The standard library's mapping, one slice (a new bytes) per record.
        def query(q: list[int]) -> list[bytes]:
            return [mm[i * n : i * n + n] for i in q]

        return _items_runner(listed(ctx), query)

    def pread_loop(ctx: Ctx) -> Runner:
        fd = os.open(ctx.path, os.O_RDONLY)
        ctx.cleanups.append(lambda: os.close(fd))
        n, pread = record, os.pread

        # No mapping: one pread system call per record.
        def query(q: list[int]) -> list[bytes]:
            return [pread(fd, n, i * n) for i in q]

        return _items_runner(listed(ctx), query)

    def arrow_loop(ctx: Ctx) -> Runner:
        import pyarrow

        f = pyarrow.memory_map(ctx.path, "r")
        ctx.cleanups.append(f.close)
        n, read_at = record, f.read_at

        # pyarrow's memory-mapped file: read_at returns a zero-copy Buffer
        # over the mapping, one per record.
        def query(q: list[int]) -> list[Any]:
            return [read_at(n, i * n) for i in q]

        return _items_runner(listed(ctx), query)

    def gather(ctx: Ctx) -> Runner:
        np = _np()
        m = iommap.open(ctx.path, "read")
        ctx.cleanups.append(m.close)
        out = np.empty((ids, record), dtype=np.uint8)  # reused by every query

        # One call: the ids times the record size are the byte offsets, and
        # gather copies every record into the reused array, in order.
        def query(q: Any) -> Any:
            return m.gather(q * record, record, out)

        return _items_runner(_queries(ctx, records, ids, count), query)

    return [
        Way("memmap_fancy", "np.memmap 2-D, table[ids]", "today", fancy, "numpy"),
        Way("mmap_loop", "mmap slice per record", "today", mmap_loop, "numpy"),
        Way("pread_loop", "os.pread per record", "today", pread_loop, "numpy"),
        Way(
            "pyarrow_loop", "pyarrow memory_map read_at per record", "today", arrow_loop, "pyarrow"
        ),
        Way("iommap_gather", "gather into a reused array", "iommap", gather, "numpy"),
    ]


# -- 3. scanning a file in chunks ----------------------------------------------


def scan_ways(chunk: int) -> list[Way]:
    """Ways to read the whole file in `chunk`-byte pieces, xor-ing its uint64 words."""

    def readinto(ctx: Ctx) -> Runner:
        np = _np()
        buf = bytearray(chunk)
        words = np.frombuffer(buf, dtype=np.uint64)
        xor = np.bitwise_xor.reduce
        path = ctx.path

        # A file opened unbuffered, read into one reused buffer until EOF.
        def run(check: bool) -> Sample:
            acc = np.uint64(0)
            t0 = clock()
            with open(path, "rb", buffering=0) as f:
                while True:
                    got = f.readinto(buf)
                    if not got:
                        break
                    acc ^= xor(words[: got // 8])
            return Sample(clock() - t0, as_bytes(int(acc)))

        return run

    def mmap_slices(ctx: Ctx) -> Runner:
        np = _np()
        xor, frombuffer, u64 = np.bitwise_xor.reduce, np.frombuffer, np.uint64
        path, size = ctx.path, ctx.size

        # The standard library's mapping, sliced chunk by chunk (each slice a
        # new bytes object), viewed as words by numpy.
        def run(check: bool) -> Sample:
            acc = np.uint64(0)
            t0 = clock()
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                for o in range(0, size, chunk):
                    acc ^= xor(frombuffer(mm[o : o + chunk], dtype=u64))
            finally:
                mm.close()
            return Sample(clock() - t0, as_bytes(int(acc)))

        return run

    def memmap(ctx: Ctx) -> Runner:
        np = _np()
        path, words, step = ctx.path, ctx.size // 8, chunk // 8

        # np.memmap of the file as words; each chunk is a slice of it, no copy.
        def run(check: bool) -> Sample:
            t0 = clock()
            data = np.memmap(path, dtype=np.uint64, mode="r")
            acc = _xor_words(np, data, words, step)
            del data  # unmapped with its last reference
            return Sample(clock() - t0, as_bytes(int(acc)))

        return run

    def iommap_view(ctx: Ctx) -> Runner:
        np = _np()
        path, words, step = ctx.path, ctx.size // 8, chunk // 8

        # A numpy array over the mapped pages (no copy); chunks are slices.
        def run(check: bool) -> Sample:
            t0 = clock()
            with iommap.open(path, "read") as m:
                data = np.frombuffer(m.view(), dtype=np.uint64)
                acc = _xor_words(np, data, words, step)
                del data
            return Sample(clock() - t0, as_bytes(int(acc)))

        return run

    def iommap_readinto(ctx: Ctx) -> Runner:
        np = _np()
        buf = np.empty(chunk // 8, dtype=np.uint64)  # reused
        xor = np.bitwise_xor.reduce
        path, size = ctx.path, ctx.size

        # Copies into one reused array: the way that survives a file shrunk
        # underneath it (a SigbusError instead of a crash).
        def run(check: bool) -> Sample:
            acc = np.uint64(0)
            t0 = clock()
            with iommap.open(path, "read") as m:
                read = m.readinto
                for o in range(0, size, chunk):
                    read(o, buf)
                    acc ^= xor(buf)
            return Sample(clock() - t0, as_bytes(int(acc)))

        return run

    def memcpy(ctx: Ctx) -> Runner:
        buf = bytearray(chunk)
        dst, src = ctx.address(buf), ctx.pool_address()
        size = ctx.size
        memmove: Callable[[int, int, int], object] = ctypes.memmove

        # The line: the same bytes copied chunk by chunk from memory into a
        # buffer, with no checksum.
        def run(check: bool) -> Sample:
            t0 = clock()
            for o in range(0, size, chunk):
                memmove(dst, src + o, chunk)
            return Sample(clock() - t0)

        return run

    return [
        Way("readinto", "f.readinto a reused buffer", "today", readinto, "numpy"),
        Way("mmap_slices", "mmap slices (new bytes each)", "today", mmap_slices, "numpy"),
        Way("memmap", "np.memmap slices", "today", memmap, "numpy"),
        Way("iommap_view", "view() as a numpy array", "iommap", iommap_view, "numpy"),
        Way("iommap_readinto", "readinto a reused array", "iommap", iommap_readinto, "numpy"),
        Way("memcpy", "memcpy line: ctypes.memmove, no checksum", "limit", memcpy),
    ]


# -- 4. many readers of one file -----------------------------------------------


class _Pool:
    """`workers` processes reading one way, alive for the whole case."""

    def __init__(self, way: str, path: str, record: int, count: int, workers: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for index in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_readers.worker,
                args=(child, way, path, record, count, index),
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def round(self, seed: str) -> tuple[int, bytes, list[tuple[int, int]]]:
        """One round: (ns from "go" to the last worker done, checksums, memory)."""
        for conn in self.conns:
            conn.send(seed)
        digests = []
        for conn in self.conns:
            kind, value = conn.recv()
            if kind == "error":
                raise RuntimeError(value)
            digests.append(int(value).to_bytes(4, "little"))
        t0 = clock()
        for conn in self.conns:
            conn.send("go")
        memory = []
        for conn in self.conns:
            kind, value = conn.recv()
            if kind == "error":
                raise RuntimeError(value)
            if value is not None:
                memory.append((int(value[0]), int(value[1])))
        return clock() - t0, b"".join(digests), memory

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


def reader_ways(record: int, count: int, workers: int) -> list[Way]:
    """`workers` processes, each reading `count` random `record`-byte records its way."""

    def make(way: str) -> Callable[[Ctx], Runner]:
        def setup(ctx: Ctx) -> Runner:
            pool = _Pool(way, ctx.path, record, count, workers)
            ctx.cleanups.append(pool.close)
            rounds = [0]

            # Every round, all ways read the same records (the seed is the
            # round's), so their checksums must match.
            def run(check: bool) -> Sample:
                rounds[0] += 1
                seed = f"{ctx.seed}/readers/{rounds[0]}"
                ns, digest, memory = pool.round(seed)
                extra: dict[str, float] = {}
                if memory:
                    extra["rss"] = statistics.median(m[0] for m in memory)
                    extra["pss"] = statistics.median(m[1] for m in memory)
                return Sample(ns, digest, extra)

            return run

        return setup

    return [
        Way("os_pread", "os.pread, a descriptor per process", "today", make("os_pread")),
        Way("mmap_slice", "stdlib mmap slices, a map per process", "today", make("mmap_slice")),
        Way("iommap_pread", "pread, a handle per process", "iommap", make("iommap_pread")),
    ]


def _memory_text(extra: dict[str, float]) -> str:
    if "rss" not in extra:
        return ""
    return "RSS {}, PSS {} per process".format(_mib(extra["rss"]), _mib(extra["pss"]))


def _mib(n: float) -> str:
    return "%.0f MiB" % (n / MiB) if n >= 10 * MiB else "%.1f MiB" % (n / MiB)


# -- 5. appending to a growing file --------------------------------------------


@dataclass
class AppendPlan:
    record: int
    per_step: int  # records per growth step
    steps: int
    sync_every: int = 0  # records between syncs; 0: no sync

    @property
    def step(self) -> int:
        return self.record * self.per_step

    @property
    def total(self) -> int:
        return self.step * self.steps


def _pool_records(record: int) -> list[bytes]:
    """64 distinct records, cycled through by every way."""
    seed = hashlib.sha256(b"records/%d" % record).digest()
    return [
        (hashlib.sha256(seed + bytes([i])).digest() * (record // 32 + 1))[:record]
        for i in range(64)
    ]


def append_ways(plan: AppendPlan) -> list[Way]:
    """Ways to append `plan.steps * plan.per_step` records, growing the file step by step."""
    n = plan.record

    def plan_for(check: bool) -> AppendPlan:
        # The check: the same code on a small file (3 growth steps), compared byte for byte.
        if not check:
            return plan
        per_step = max(1, min(plan.per_step, 64 * KiB // n))
        sync = min(plan.sync_every, per_step) if plan.sync_every else 0
        return AppendPlan(n, per_step, 3, sync)

    def chunks(p: AppendPlan) -> tuple[list[bytes], int]:
        """The records between two syncs (or of one step), and how many such bursts a step has."""
        pool = _pool_records(n)
        burst = p.sync_every or p.per_step
        return [pool[i % len(pool)] for i in range(burst)], p.per_step // burst

    def finish(path: str, check: bool, t0: int, extra: dict[str, float]) -> Sample:
        ns = clock() - t0
        digest = None
        if check:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
        os.unlink(path)
        return Sample(ns, digest, extra)

    def file_write(ctx: Ctx) -> Runner:
        path = os.path.join(ctx.scratch, "append-write.bin")

        # The usual log writer: a buffered file opened for writing, one
        # write per record; the file grows by itself; with syncing, flush
        # then os.fsync.
        def run(check: bool) -> Sample:
            p = plan_for(check)
            recs, bursts = chunks(p)
            t0 = clock()
            with open(path, "wb") as f:
                w = f.write
                for _ in range(p.steps):
                    for _ in range(bursts):
                        for rec in recs:
                            w(rec)
                        if p.sync_every:
                            f.flush()
                            os.fsync(f.fileno())
            return finish(path, check, t0, {})

        return run

    def mmap_resize(ctx: Ctx) -> Runner:
        path = os.path.join(ctx.scratch, "append-mmap.bin")

        # The standard library's mapping: size the file to one step, map it,
        # assign records into slices; when full, mm.resize grows the file and
        # the mapping; with syncing, mm.flush of what was written.
        def run(check: bool) -> Sample:
            p = plan_for(check)
            recs, bursts = chunks(p)
            remap = 0
            t0 = clock()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, p.step)
                mm = mmap.mmap(fd, p.step)
                pos = 0
                for k in range(p.steps):
                    if k:
                        t = clock()
                        mm.resize((k + 1) * p.step)
                        remap += clock() - t
                    for _ in range(bursts):
                        start = pos
                        for rec in recs:
                            mm[pos : pos + n] = rec
                            pos += n
                        if p.sync_every:
                            mm.flush(start, pos - start)
                mm.close()
            finally:
                os.close(fd)
            return finish(path, check, t0, {"remap": remap / max(1, p.steps - 1)})

        return run

    def iommap_truncate(ctx: Ctx) -> Runner:
        path = os.path.join(ctx.scratch, "append-iommap.bin")

        # iommap: open with one step reserved, pwrite each record at its
        # offset; when full, truncate grows the file and remaps; with
        # syncing, sync of the range just written.
        def run(check: bool) -> Sample:
            p = plan_for(check)
            recs, bursts = chunks(p)
            remap = 0
            t0 = clock()
            with iommap.open(path, create=True, truncate=True, size=p.step) as m:
                pwrite, pos = m.pwrite, 0
                for k in range(p.steps):
                    if k:
                        t = clock()
                        m.truncate((k + 1) * p.step)
                        remap += clock() - t
                    for _ in range(bursts):
                        start = pos
                        for rec in recs:
                            pwrite(pos, rec)
                            pos += n
                        if p.sync_every:
                            m.sync("sync", start, pos - start)
            return finish(path, check, t0, {"remap": remap / max(1, p.steps - 1)})

        return run

    return [
        Way("file_write", "f.write per record (buffered)", "today", file_write),
        Way("mmap_resize", "stdlib mmap slice assignment + resize", "today", mmap_resize),
        Way("iommap_truncate", "pwrite + truncate to grow", "iommap", iommap_truncate),
    ]


def _remap_text(extra: dict[str, float]) -> str:
    if "remap" not in extra:
        return ""
    return "remap %.0f us" % (extra["remap"] / 1000)


# -- the cases -----------------------------------------------------------------

#: Workers of the many-readers case; record sizes; scan chunk sizes.
READERS = 4
RECORD_SIZES = (128, 512)
SCAN_CHUNKS = (64 * KiB, MiB, 8 * MiB)
APPEND_SIZES = (64, KiB, 4 * KiB)


def _label(n: int) -> str:
    return format_size(n, exact=True)


def build_cases(size: int, ops: int, repeats: int, workers: int = READERS) -> list[Case]:
    """The workload cases for a test file of `size` bytes.

    `ops` sets the amount of work per measurement (100000 by default): the
    number of batches, queries, reads per worker and appended records scale
    with it.  Many readers and appending move a gigabyte or start processes
    per run: they run at most 5 timed rounds."""
    heavy = max(1, min(repeats, 5))
    cases: list[Case] = []
    for batch, block in ((12, 256), (64, 1024)):
        if size // 2 <= 2 * block:
            continue
        count = max(10, ops // 50) if batch * block <= 4096 else max(4, ops // 500)
        cases.append(
            Case(
                f"workloads/batches/{batch}x{block}",
                f"training batches ({batch}, {block}) from a {_label(size)} uint16 token file, "
                f"{count} batches",
                "us/batch",
                False,
                1 / (count * 1000),
                batch_ways(batch, block, count),
                repeats,
            )
        )
    ids = 10_000
    for record in RECORD_SIZES:
        records = min(1_000_000, size // record)
        queries = max(2, ops // 10_000)
        cases.append(
            Case(
                f"workloads/records/{record}B",
                f"{ids} random ids of {records} records of {record} B, {queries} queries",
                "us/query",
                False,
                1 / (queries * 1000),
                record_ways(record, records, ids, queries),
                repeats,
            )
        )
    for chunk in SCAN_CHUNKS:
        if chunk > size or size % chunk:
            continue
        cases.append(
            Case(
                "workloads/scan/{}".format(_label(chunk).replace(" ", "")),
                f"scan of a {_label(size)} file in {_label(chunk)} chunks, xor of its uint64 words",
                "GB/s",
                True,
                float(size),
                scan_ways(chunk),
                repeats,
            )
        )
    record = 4 * KiB
    cases.append(
        Case(
            "workloads/readers",
            f"{workers} processes, {ops} random {_label(record)} reads each "
            f"of a cached {_label(size)} file",
            "GB/s",
            True,
            float(workers * ops * record),
            reader_ways(record, ops, workers),
            heavy,
            note="all workers together; memory is each worker's median after its reads",
            extra=_memory_text,
            busy_check=False,
        )
    )
    cap = 1 << max(0, (10 * ops).bit_length() - 1)  # a power of two: whole steps, round sizes
    for record in APPEND_SIZES:
        count = min(size // record, cap)
        per_step = max(1, count // 16)
        plan = AppendPlan(record, per_step, max(1, count // per_step))
        cases.append(
            Case(
                "workloads/append/{}".format(_label(record).replace(" ", "")),
                f"append {_label(record)} records up to {_label(plan.total)} "
                f"in {plan.steps} steps of {_label(plan.step)}",
                "GB/s",
                True,
                float(plan.total),
                append_ways(plan),
                heavy,
                note="remap: the mean time of one grow (truncate or resize), file and mapping",
                extra=_remap_text,
            )
        )
    record = 4 * KiB
    count = min(size, 64 * MiB) // record
    sync_every = max(1, min(256, count // 16))
    per_step = max(sync_every, count // 16 // sync_every * sync_every)
    plan = AppendPlan(record, per_step, max(1, count // per_step), sync_every)
    cases.append(
        Case(
            "workloads/append/4KiB+sync",
            f"append {_label(record)} records up to {_label(plan.total)}, synced to disk "
            f"every {sync_every} records ({_label(sync_every * record)})",
            "GB/s",
            True,
            float(plan.total),
            append_ways(plan),
            heavy,
            note="f.flush + os.fsync; mm.flush(range); iommap sync('sync', range)",
            extra=_remap_text,
        )
    )
    return cases


# -- the run -------------------------------------------------------------------


def _check(rows: list[tuple[WorkRow, Sample]]) -> bytes | None:
    """Marks the rows whose result differs from the others'; returns the agreed result."""
    counts: dict[bytes, int] = {}
    for row, sample in rows:
        if row.way.side != "limit" and sample.digest is not None:
            counts[sample.digest] = counts.get(sample.digest, 0) + 1
    if not counts:
        return None
    agreed = max(counts, key=lambda d: counts[d])
    majority = [row.way for row, s in rows if s.digest == agreed]
    names = ", ".join(w.name for w in rows[0][0].case.ways if w in majority)
    for row, sample in rows:
        if row.way.side != "limit" and sample.digest not in (None, agreed):
            row.error = "result differs from that of " + names
    return agreed


def run_case(
    ctx: Ctx, case: Case, progress: Progress, label: str, monitor: BusyMonitor
) -> tuple[list[WorkRow], dict[str, Any] | None]:
    """Checks and measures every way of `case`; returns the rows and the busy figure."""
    rows: list[WorkRow] = []
    runs: list[tuple[WorkRow, Runner]] = []
    try:
        for way in case.ways:
            row = WorkRow(case, way)
            rows.append(row)
            runner = row.set_up(way.needs, ctx.missing, way.make, ctx)
            if runner is not None:
                runs.append((row, runner))

        # The check, which is also the warm-up: every way once, results compared.
        checked: list[tuple[WorkRow, Sample]] = []
        for row, runner in runs:
            progress.status(f"{label} {case.title}: {row.way.name} (check)")
            try:
                checked.append((row, runner(True)))
            except Exception as exc:
                row.error = f"{type(exc).__name__}: {exc}"
        _check(checked)

        gc_was_enabled = gc.isenabled()
        gc.disable()
        if case.busy_check:
            monitor.start()
        try:
            for r in range(1, case.repeats + 1):
                live = [(row, runner) for row, runner in runs if row.error is None]
                shift = r % len(live) if live else 0
                round_samples: list[tuple[WorkRow, Sample]] = []
                for row, runner in live[shift:] + live[:shift]:
                    progress.status(
                        f"{label} {case.title}: {row.way.name} (repeat {r}/{case.repeats})"
                    )
                    try:
                        sample = runner(False)
                    except Exception as exc:
                        row.error = f"{type(exc).__name__}: {exc}"
                        row.samples.clear()
                        continue
                    row.samples.append(case.value(sample.ns))
                    for key, value in sample.extra.items():
                        row.extras.setdefault(key, []).append(value)
                    round_samples.append((row, sample))
                _check(round_samples)
                for row, _sample in round_samples:
                    if row.error:
                        row.samples.clear()
        finally:
            busy = monitor.stop()
            if gc_was_enabled:
                gc.enable()
    finally:
        runs.clear()
        ctx.release()
    return rows, busy


def limit_row(rows: Sequence[WorkRow]) -> WorkRow | None:
    for row in rows:
        if row.way.side == "limit":
            return row
    return None


# -- the report ----------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(done: Sequence[tuple[Case, list[WorkRow], dict[str, Any] | None]]) -> str:
    """Per case: its title, then every way's median, best, spread and ratios, aligned."""
    lines: list[str] = []
    for case, rows, busy in done:
        fastest, limit = fastest_today(rows), limit_row(rows)
        lines.append(case.title)
        header = ["", case.unit + " med", "best", "spread", "vs today"]
        if limit is not None:
            header.append("vs line")
        table = []
        for row in rows:
            name = {"today": "today  ", "iommap": "iommap ", "limit": "line   "}[row.way.side]
            name += row.way.name
            if not row.ok:
                why = "skipped: " + row.skipped if row.skipped else "error: " + str(row.error)
                table.append([name] + [""] * (len(header) - 1) + [why])
                continue
            spread = row.spread
            cells = [
                name,
                _fmt(row.median),
                _fmt(row.best),
                "-" if spread is None else f"+-{100 * spread:.0f}%",
                _ratio(speed(row, fastest)) if row.way.side != "limit" else "",
            ]
            if limit is not None:
                cells.append(_ratio(speed(row, limit)) if row.way.side != "limit" else "")
            table.append(cells + [case.extra(row.extra_medians()) if case.extra else ""])
        align = "l" + "r" * (len(header) - 1) + "l"
        lines += ["  " + line for line in render_table(header + [""], table, align=align)]
        if case.note:
            lines.append(f"  ({case.note})")
        if busy and busy.get("warning"):
            lines.append("  ! " + busy["warning"])
        lines.append("")
    lines.append(
        "vs today: speed ratio of medians to the fastest of today's ways (above 1: faster); "
        "spread: half the range of the samples, over the median."
    )
    return "\n".join(lines)


def to_document(
    done: Sequence[tuple[Case, list[WorkRow], dict[str, Any] | None]],
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for case, rows, busy in done:
        fastest, limit = fastest_today(rows), limit_row(rows)
        out.append(
            {
                "id": case.id,
                "title": case.title,
                "unit": case.unit,
                "higher_is_better": case.rate,
                "repeats": case.repeats,
                "note": case.note or None,
                "busy": busy,
                "rows": [
                    {
                        "id": row.way.id,
                        "name": row.way.name,
                        "side": row.way.side,
                        "unit": case.unit,
                        "median": row.median,
                        "best": row.best,
                        "spread": row.spread,
                        "samples": list(row.samples) if row.ok else [],
                        "vs_fastest_today": speed(row, fastest),
                        "vs_limit": speed(row, limit),
                        "extra": row.extra_medians() if row.ok else {},
                        "skipped": row.skipped,
                        "error": row.error,
                    }
                    for row in rows
                ],
            }
        )
    return out
