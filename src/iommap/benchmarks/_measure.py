"""How one figure is measured: the timed loop, threads, busy detection.

Every contender runs in the same loop, compiled from one template in which
only the loop body differs (``f(o, n)``, ``a[o:o+n]``, ...).  The objects the
body uses are hoisted into local variables (``f``, ``a``, ``b``) before the
clock starts, so the loop itself costs every contender the same: one
``FOR_ITER``, a few local loads, the call or subscript being measured, and a
``POP_TOP``.  A wrapper function per contender would add a Python call to
every iteration and drown a 60 ns operation.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._toolkit import MiB

T = TypeVar("T")


class Sampled:
    """What a table row of samples answers: is it usable, its median, its best.

    A dataclass deriving from it declares `samples`, `skipped` and `error`,
    and says through `higher_is_better` which end of its samples is best.
    """

    samples: list[float]
    skipped: str | None
    error: str | None

    @property
    def higher_is_better(self) -> bool:
        raise NotImplementedError

    def set_up(
        self, needs: str | None, missing: dict[str, str], setup: Callable[..., T], *args: Any
    ) -> T | None:
        """What `setup(*args)` returns, or None with the row skipped (`needs`
        is missing) or failed (`setup` raised), saying why."""
        if needs and needs in missing:
            self.skipped = missing[needs]
            return None
        try:
            return setup(*args)
        except Exception as exc:
            self.error = f"setup failed: {type(exc).__name__}: {exc}"
            return None

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.error is None and bool(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.ok else None

    @property
    def best(self) -> float | None:
        if not self.ok:
            return None
        return max(self.samples) if self.higher_is_better else min(self.samples)


_LOOP_TEMPLATE = """\
def loop(offsets, n, f, a, b, clock):
    t0 = clock()
    for o in offsets:
        {body}
    return t0, clock()
"""

#: The loop's arguments: offsets, n, f, a, b, clock; it returns (t0, t1).
Loop = Callable[..., tuple[int, int]]
#: One thread's arguments of the loop: (offsets, n, f, a, b).
LoopArgs = tuple[Sequence[int], int, Any, Any, Any]

_loops: dict[str, Loop] = {}


def make_loop(body: str) -> Loop:
    """The timed loop for one loop body; returns ``(t0, t1)`` in nanoseconds."""
    loop = _loops.get(body)
    if loop is None:
        namespace: dict[str, Any] = {}
        code = compile(_LOOP_TEMPLATE.format(body=body), f"<bench loop: {body}>", "exec")
        exec(code, namespace)
        loop = _loops[body] = namespace["loop"]
    return loop


def run_once(loop: Loop, per_thread: Sequence[LoopArgs]) -> int:
    """Runs ``loop`` once per entry of ``per_thread`` (its arguments), all at once.

    One entry runs on the calling thread.  Several run on as many threads
    released together by a barrier; the span is from the first start to the
    last end, so the figure is the aggregate the threads achieved together.
    Returns the elapsed nanoseconds.
    """
    clock = time.perf_counter_ns
    if len(per_thread) == 1:
        offsets, n, f, a, b = per_thread[0]
        t0, t1 = loop(offsets, n, f, a, b, clock)
        return t1 - t0

    barrier = threading.Barrier(len(per_thread))
    spans: list[tuple[int, int]] = []

    def worker(i: int) -> None:
        offsets, n, f, a, b = per_thread[i]
        try:
            barrier.wait()
            spans.append(loop(offsets, n, f, a, b, clock))
        except BaseException:
            barrier.abort()  # the other threads stop waiting for this one
            raise

    run_in_threads(worker, len(per_thread))
    return overall_span(spans)


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """Runs ``work(0)`` to ``work(count - 1)`` on a thread each, at once, and
    waits for them all; the first exception one raised is raised again here,
    on the calling thread."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # re-raised on the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def overall_span(spans: Sequence[tuple[int, int]]) -> int:
    """From the first start to the last end of (start, end) pairs."""
    return max(end for _, end in spans) - min(start for start, _ in spans)


class BusyMonitor:
    """How much CPU other processes used while we measured, from /proc/stat.

    The figures are only meaningful as ratios between contenders measured
    side by side, and even those shift when another process takes a core
    in the middle of one contender's turn.  /proc/stat counts every CPU's
    busy time (steal included: on a VM the host taking the core is the
    same disturbance); our own process's CPU time (os.times) is
    subtracted, and what remains, divided by the wall time, is how many
    CPUs something else kept busy.  Where /proc/stat is missing the
    monitor reports nothing.
    """

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        try:
            self.tick = 1.0 / os.sysconf("SC_CLK_TCK")
        except (ValueError, OSError, AttributeError):
            self.tick = 0.01
        self.available = self._read() is not None
        self._start: tuple[float, tuple[int, int] | None, float] | None = None

    def _read(self) -> tuple[int, int] | None:
        try:
            with open(self.path, "rb") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != b"cpu":
            return None
        # user nice system idle iowait irq softirq steal (guest is inside user)
        values = [int(v) for v in fields[1:9]] + [0] * (9 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
        return user + nice + system + irq + softirq + steal, steal

    def start(self) -> None:
        t = os.times()
        self._start = (time.perf_counter(), self._read(), t.user + t.system)

    def stop(self) -> dict[str, Any] | None:
        """Returns a dict (others_cpus, steal_cpus, seconds, slack_cpus) or None."""
        if self._start is None:
            return None
        wall0, stat0, own0 = self._start
        self._start = None
        stat1 = self._read()
        t = os.times()
        wall = time.perf_counter() - wall0
        if stat0 is None or stat1 is None or wall <= 0:
            return None
        busy = (stat1[0] - stat0[0]) * self.tick
        steal = (stat1[1] - stat0[1]) * self.tick
        own = (t.user + t.system) - own0
        others = max(0.0, busy - own) / wall
        # Both counters move in ticks: allow for a few ticks of rounding.
        slack = 4 * self.tick / wall
        return {
            "others_cpus": round(others, 3),
            "steal_cpus": round(steal / wall, 3),
            "seconds": round(wall, 3),
            "slack_cpus": round(slack, 3),
        }


class Buffers:
    """Buffers that ctypes.memmove reads or writes by address, kept alive together.

    The memcpy limit copies from a *pool*: an anonymous buffer as large as
    the file, filled, read at the same offsets as the file.  It is private
    anonymous memory with transparent huge pages asked for where the
    platform has them: the page cache behind a file mapping may be mapped
    with 2 MiB folios, and a limit made of 4 KiB pages would be the slower of
    the two.  (A MAP_SHARED anonymous map is shmem, which usually gets no
    huge pages.)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._keep: list[object] = []
        self._pool: mmap.mmap | None = None
        self._pool_address = 0

    def address(self, buf: bytearray | mmap.mmap) -> int:
        """The address of a writable buffer's bytes, for ctypes.memmove."""
        cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
        self._keep.append(cbuf)
        return ctypes.addressof(cbuf)

    def pool_address(self) -> int:
        """The address of the pool, made and filled on first use."""
        if self._pool is None:
            pool = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    pool.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
            block = bytes(range(1, 256)) * (MiB // 255 + 1)
            for start in range(0, self.size, MiB):
                end = min(self.size, start + MiB)
                pool[start:end] = block[: end - start]
            self._pool = pool
            self._pool_address = self.address(pool)
        return self._pool_address

    def release(self) -> None:
        self._keep.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
