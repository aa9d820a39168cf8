"""Parallel small reads: sub-interpreters with their own GIL against threads.

Python 3.14's ``concurrent.interpreters`` runs each interpreter with its own
GIL, so two of them read in parallel on two cores, where two threads of one
interpreter take turns.  This group measures it: random small reads (64 B
and 4 KiB by default) in the hot region, each worker with its own handle on
the one test file, and reports the throughput of two workers against one,
for two sub-interpreters (against one sub-interpreter) and for two threads
of one interpreter (against one thread).  On two free cores the first should
approach 2x; the second stays near 1x under the GIL.

Every worker runs the same loop, ``for o in offsets: pread(o, n)``, from one
source, over offsets made once per size from one seed.  Workers are told a
start time a little ahead and begin together; a measurement spans from that
start to the last worker's end.  The four ways are interleaved over the
repeats, each round starting one way later, like the rest of the suite.
"""

from __future__ import annotations

import importlib
import random
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from .._toolkit import Progress, format_size, render_table
from ._measure import overall_span, run_in_threads

GROUP_ID = "interpreters"
TITLE = "parallel small reads: 2 sub-interpreters and 2 threads, against 1"

# Set up once in each sub-interpreter, and run the same way in the main
# interpreter for the threads: a handle of its own, and the timed loop.
_SETUP = """\
import time
import iommap

_handle = iommap.open(path, "read")

def timed_reads(offsets, n, passes, start_at):
    pread = _handle.pread
    clock = time.perf_counter_ns
    wait = start_at - clock()
    if wait > 0:
        time.sleep(wait / 1e9)
    t0 = clock()
    for _ in range(passes):
        for o in offsets:
            pread(o, n)
    return max(t0, start_at), clock()
"""

# Run in a sub-interpreter for one measurement (offsets, n, start_at and the
# results queue are in its __main__); sends back its start and end.
_MEASURE = """\
_t0, _t1 = timed_reads(_offsets[n], n, passes, start_at)
results.put(_t0)
results.put(_t1)
"""

# Ahead of the start time, so that every worker is waiting when it comes.
START_DELAY_NS = 30_000_000
# Each worker reads for about this long (at the default 30,000 operations
# or more; proportionally less below), so that starting a few milliseconds
# apart (a loaded machine wakes threads late) costs little.
TARGET_NS = 300_000_000
TARGET_OPS = 30_000


def _interpreters_api() -> Any:
    """concurrent.interpreters (typed Any: the checker may target an older Python)."""
    return importlib.import_module("concurrent.interpreters")


def available() -> str | None:
    """None where the group can run, else why not."""
    if sys.version_info < (3, 14):
        return "sub-interpreters with their own GIL need Python 3.14 (concurrent.interpreters)"
    try:
        _interpreters_api()
    except ImportError as exc:  # a build without it
        return f"concurrent.interpreters is not available: {exc}"
    return None


def offsets_for(hot: int, size: int, ops: int, seed: str) -> list[int]:
    rng = random.Random(f"{seed}/interpreters/{size}")
    return [rng.randrange(0, hot - size + 1) for _ in range(ops)]


class _Workers:
    """Two sub-interpreters and two main-interpreter handles, set up once."""

    def __init__(self, path: str, offsets: dict[int, list[int]]) -> None:
        interpreters = _interpreters_api()

        self.interps = []
        self.queues = []
        try:
            for _ in range(2):
                interp = interpreters.create()
                self.interps.append(interp)
                queue = interpreters.create_queue()
                self.queues.append(queue)
                interp.prepare_main(path=path, results=queue)
                interp.exec(_SETUP)
                # The offsets go over as one shareable bytes object per size.
                for n, offs in offsets.items():
                    interp.prepare_main(n=n, packed=_pack(offs))
                    interp.exec(
                        "import array\n"
                        "_offsets = globals().setdefault('_offsets', {})\n"
                        "_offsets[n] = array.array('q', packed).tolist()\n"
                    )
            self.thread_ns: list[dict[str, Any]] = []
            for _ in range(2):
                namespace: dict[str, Any] = {"path": path}
                exec(compile(_SETUP, "<interpreters bench setup>", "exec"), namespace)
                self.thread_ns.append(namespace)
            self.offsets = offsets
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for interp in self.interps:
            try:
                interp.exec("_handle.close()")
            except Exception:
                pass
            interp.close()
        self.interps = []
        for namespace in getattr(self, "thread_ns", []):
            namespace["_handle"].close()
        self.thread_ns = []

    def run_interpreters(self, count: int, n: int, passes: int) -> int:
        """Elapsed ns for `count` sub-interpreters reading at once."""
        start_at = time.perf_counter_ns() + START_DELAY_NS

        def run(i: int) -> None:
            self.interps[i].prepare_main(n=n, passes=passes, start_at=start_at)
            self.interps[i].exec(_MEASURE)

        run_in_threads(run, count)
        return overall_span(
            [(_get_int(self.queues[i]), _get_int(self.queues[i])) for i in range(count)]
        )

    def run_threads(self, count: int, n: int, passes: int) -> int:
        """Elapsed ns for `count` threads of this interpreter reading at once."""
        start_at = time.perf_counter_ns() + START_DELAY_NS
        spans: list[tuple[int, int]] = []

        def run(i: int) -> None:
            spans.append(self.thread_ns[i]["timed_reads"](self.offsets[n], n, passes, start_at))

        run_in_threads(run, count)
        return overall_span(spans)


def _get_int(queue: Any) -> int:
    value = queue.get()
    assert isinstance(value, int), value
    return value


def _pack(offsets: Sequence[int]) -> bytes:
    import array

    return array.array("q", offsets).tobytes()


WAYS = (
    ("1 sub-interpreter", "interpreters", 1),
    ("2 sub-interpreters", "interpreters", 2),
    ("1 thread", "threads", 1),
    ("2 threads", "threads", 2),
)


def run(
    path: str,
    hot: int,
    sizes: Sequence[int],
    ops: int,
    repeats: int,
    seed: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measures every way for every size; returns the JSON-ready result."""
    why = available()
    if why is not None:
        return {"id": GROUP_ID, "title": TITLE, "skipped": why}
    offsets = {n: offsets_for(hot, n, ops, seed) for n in sizes}
    workers = _Workers(path, offsets)
    result: dict[str, Any] = {
        "id": GROUP_ID,
        "title": TITLE,
        "ops_per_worker": ops,
        "hot_region": hot,
        "repeats": repeats,
        "sizes": [],
    }
    try:
        for n in sizes:
            # Passes over the offsets that make one worker read for about
            # TARGET_NS, from one timed pass of one thread.
            ns = workers.run_threads(1, n, 1)
            target = TARGET_NS * min(1.0, ops / TARGET_OPS)
            passes = max(1, round(target / max(ns, 1)))
            # Mops/s of each way, per repeat: the ways interleaved, each round
            # starting one way later; one untimed warm-up round first.
            samples: dict[str, list[float]] = {name: [] for name, _, _ in WAYS}
            for r in range(repeats + 1):
                for k in range(len(WAYS)):
                    name, kind, count = WAYS[(k + r) % len(WAYS)]
                    if progress is not None:
                        progress.status(
                            f"[{GROUP_ID}] {format_size(n, exact=True)} reads: {name}, round {r}"
                        )
                    if kind == "interpreters":
                        ns = workers.run_interpreters(count, n, passes)
                    else:
                        ns = workers.run_threads(count, n, passes)
                    if r > 0:
                        samples[name].append(count * ops * passes / max(ns, 1) * 1e3)
            medians = {name: statistics.median(v) for name, v in samples.items()}
            result["sizes"].append(
                {
                    "size": n,
                    "reads_per_worker": ops * passes,
                    "mops_per_s": medians,
                    "samples": samples,
                    "interpreters_scaling": medians["2 sub-interpreters"]
                    / medians["1 sub-interpreter"],
                    "threads_scaling": medians["2 threads"] / medians["1 thread"],
                }
            )
    finally:
        workers.close()
        if progress is not None:
            progress.clear()
    return result


def format_table(result: dict[str, Any]) -> str:
    """The group as text: one line per size, throughputs and the two ratios."""
    if "skipped" in result:
        return f"{TITLE}: skipped ({result['skipped']})"
    header = [
        "size",
        "1 interp",
        "2 interps",
        "interps 2/1",
        "1 thread",
        "2 threads",
        "threads 2/1",
    ]
    rows = []
    for entry in result["sizes"]:
        m = entry["mops_per_s"]
        rows.append(
            [
                format_size(entry["size"], exact=True),
                f"{m['1 sub-interpreter']:.2f}",
                f"{m['2 sub-interpreters']:.2f}",
                f"{entry['interpreters_scaling']:.2f}x",
                f"{m['1 thread']:.2f}",
                f"{m['2 threads']:.2f}",
                f"{entry['threads_scaling']:.2f}x",
            ]
        )
    hot = format_size(result["hot_region"], exact=True)
    lines = [
        f"Parallel small reads: random reads in the hot {hot}, "
        "each worker with its own handle and about 0.3 s of reads; "
        "million reads per second (medians), and 2 workers against 1",
        "",
        *render_table(header, rows, align="r" * len(header)),
        "",
        "2 sub-interpreters run on their own GILs, in parallel; 2 threads share one GIL.",
    ]
    return "\n".join(lines)
