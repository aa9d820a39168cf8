"""The project's speed targets, judged on the JSON of `python -m iommap bench --json`.

    python tools/bench_targets.py bench.json

`make bench` runs the benchmark and then this.  The targets are the
project's own goals, not something a user of the wheel runs: the wheel's
`iommap bench` prints the figures and ratios; this prints each target as
met, MISS, or n/a (not measured in that run), judged on the ratio of
medians, with the ratio of bests beside it.  Exit status 0 whatever the
verdicts (a loaded machine moves them); 2 on a file that is not a bench
document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

#: (target, measured, compared with, required speed ratio).  In the
#: suite's groups a row is "group id:row id".  In the workloads,
#: "case id:way id", where the way may be "iommap" (the fastest of
#: iommap's ways), "today" (the fastest of today's) or "limit"; a case id
#: ending in "*" means the case among those ids where iommap's fastest way
#: did best.
TARGETS: list[tuple[str, str, str, float]] = [
    (
        "pread 64 B, hot: >= 0.9x mmap slice",
        "read/64B/hot:iommap_pread",
        "read/64B/hot:mmap_slice",
        0.9,
    ),
    ("pread 64 B, hot: >= 5x os.pread", "read/64B/hot:iommap_pread", "read/64B/hot:os_pread", 5.0),
    (
        "pread 4 KiB, hot: >= 0.9x mmap slice",
        "read/4KiB/hot:iommap_pread",
        "read/4KiB/hot:mmap_slice",
        0.9,
    ),
    (
        "pread 4 KiB, hot: >= 5x os.pread",
        "read/4KiB/hot:iommap_pread",
        "read/4KiB/hot:os_pread",
        5.0,
    ),
    (
        "pread 64 B, whole file: >= 0.95x mmap slice",
        "read/64B/file:iommap_pread",
        "read/64B/file:mmap_slice",
        0.95,
    ),
    (
        "readinto 4 KiB, hot: >= 1.0x memoryview copy",
        "read/4KiB/hot:iommap_readinto",
        "read/4KiB/hot:memoryview_copy",
        1.0,
    ),
    (
        "readinto 1 MiB, 1 thread: >= 0.9x memcpy",
        "read/1MiB/1t:iommap_readinto",
        "read/1MiB/1t:memcpy",
        0.9,
    ),
    (
        "readinto 64 MiB, 1 thread: >= 0.9x memcpy",
        "read/64MiB/1t:iommap_readinto",
        "read/64MiB/1t:memcpy",
        0.9,
    ),
    (
        "readinto 1 MiB, 2 threads: aggregate >= 1.5x 1 thread",
        "read/1MiB/2t:iommap_readinto",
        "read/1MiB/1t:iommap_readinto",
        1.5,
    ),
    (
        "pwrite 64 B, hot: >= 0.9x mmap slice assignment",
        "write/64B/hot:iommap_pwrite",
        "write/64B/hot:mmap_slice_assign",
        0.9,
    ),
    (
        "pwrite 4 KiB, hot: >= 0.9x mmap slice assignment",
        "write/4KiB/hot:iommap_pwrite",
        "write/4KiB/hot:mmap_slice_assign",
        0.9,
    ),
    (
        "pread 64 MiB, 1 thread: >= 0.95x mmap slice",
        "read/64MiB/1t:iommap_pread",
        "read/64MiB/1t:mmap_slice",
        0.95,
    ),
    (
        "gather 100k x 64 B: >= 10x a Python loop of pread",
        "gather/64B:iommap_gather_numpy",
        "gather/64B:pread_loop",
        10.0,
    ),
    (
        "gather 100k x 64 B: >= 1.0x numpy fancy indexing",
        "gather/64B:iommap_gather_numpy",
        "gather/64B:numpy_fancy",
        1.0,
    ),
    (
        "view of the whole file: >= 0.9x a view of 1 B",
        "view:iommap_view_file",
        "view:iommap_view_1",
        0.9,
    ),
    # -- the workloads
    (
        "batches (12, 256): >= 10x np.memmap per batch",
        "workloads/batches/12x256:iommap",
        "workloads/batches/12x256:memmap_per_batch",
        10.0,
    ),
    (
        "batches (12, 256): >= 3x fancy indexing",
        "workloads/batches/12x256:iommap",
        "workloads/batches/12x256:memmap_fancy",
        3.0,
    ),
    (
        "batches (64, 1024): >= 10x np.memmap per batch",
        "workloads/batches/64x1024:iommap",
        "workloads/batches/64x1024:memmap_per_batch",
        10.0,
    ),
    (
        "batches (64, 1024): >= 3x fancy indexing",
        "workloads/batches/64x1024:iommap",
        "workloads/batches/64x1024:memmap_fancy",
        3.0,
    ),
    (
        "records of 128 B by id: >= 1.5x the fastest of today's",
        "workloads/records/128B:iommap",
        "workloads/records/128B:today",
        1.5,
    ),
    (
        "records of 512 B by id: >= 1.5x the fastest of today's",
        "workloads/records/512B:iommap",
        "workloads/records/512B:today",
        1.5,
    ),
    (
        "scan, 64 KiB chunks: >= 1.0x the fastest of today's",
        "workloads/scan/64KiB:iommap",
        "workloads/scan/64KiB:today",
        1.0,
    ),
    (
        "scan, 1 MiB chunks: >= 1.0x the fastest of today's",
        "workloads/scan/1MiB:iommap",
        "workloads/scan/1MiB:today",
        1.0,
    ),
    (
        "scan, 8 MiB chunks: >= 1.0x the fastest of today's",
        "workloads/scan/8MiB:iommap",
        "workloads/scan/8MiB:today",
        1.0,
    ),
    (
        "scan, best chunk: >= 0.9x the memcpy line",
        "workloads/scan/*:iommap",
        "workloads/scan/*:limit",
        0.9,
    ),
    (
        "4 reader processes: >= 1.0x the fastest of today's",
        "workloads/readers:iommap",
        "workloads/readers:today",
        1.0,
    ),
    (
        "append 1 KiB records: >= 1.0x f.write",
        "workloads/append/1KiB:iommap",
        "workloads/append/1KiB:file_write",
        1.0,
    ),
    (
        "append 4 KiB records: >= 1.0x f.write",
        "workloads/append/4KiB:iommap",
        "workloads/append/4KiB:file_write",
        1.0,
    ),
]


class _Row:
    def __init__(self, row: dict[str, Any], higher_is_better: bool) -> None:
        self.median: float | None = row.get("median")
        self.best: float | None = row.get("best")
        self.higher = higher_is_better
        self.side: str | None = row.get("side")

    def faster(self, other: _Row, statistic: str) -> float | None:
        """How many times as fast as `other`, by `statistic` ("median" or "best")."""
        a, b = getattr(self, statistic), getattr(other, statistic)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        ratio: float = a / b if self.higher else b / a
        return ratio


def _index(document: dict[str, Any]) -> dict[str, dict[str, _Row]]:
    """Every row of the document by group or case id, then by row id."""
    rows: dict[str, dict[str, _Row]] = {}
    for group in document.get("groups", []):
        higher = group["unit"] != "ns/op"
        rows[group["id"]] = {r["id"]: _Row(r, higher) for r in group["rows"]}
    for case in document.get("workloads", []):
        by_id = {r["id"]: _Row(r, case["higher_is_better"]) for r in case["rows"]}
        for side in ("iommap", "today"):
            fastest = None
            for row in list(by_id.values()):
                if row.side == side and row.median is not None:
                    if fastest is None or (row.faster(fastest, "median") or 0) > 1:
                        fastest = row
            if fastest is not None:
                by_id[side] = fastest
        for row in list(by_id.values()):
            if row.side == "limit":
                by_id["limit"] = row
        rows[case["id"]] = by_id
    return rows


def _resolve(rows: dict[str, dict[str, _Row]], ref: str) -> tuple[str, _Row | None]:
    where, _, what = ref.rpartition(":")
    if where.endswith("*"):
        # The case among these where iommap's fastest way did best.
        best_case, best_row = where, None
        for case_id, by_id in rows.items():
            row = by_id.get("iommap")
            if case_id.startswith(where[:-1]) and row is not None and row.median is not None:
                if best_row is None or (row.faster(best_row, "median") or 0) > 1:
                    best_case, best_row = case_id, row
        where = best_case
    return where, rows.get(where, {}).get(what)


def evaluate(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its ratio of medians, ratio of bests and verdict (None: not measured)."""
    rows = _index(document)
    out = []
    for name, measured, compared, required in TARGETS:
        where, row = _resolve(rows, measured)
        if compared.rpartition(":")[0].endswith("*"):
            # Compared within the case the measured row was picked from.
            compared = where + ":" + compared.rpartition(":")[2]
        _, other = _resolve(rows, compared)
        ratio = row.faster(other, "median") if row and other else None
        best = row.faster(other, "best") if row and other else None
        out.append(
            {
                "target": name,
                "measured": where + ":" + measured.rpartition(":")[2],
                "compared_with": compared,
                "required": required,
                "ratio": None if ratio is None else round(ratio, 3),
                "ratio_of_bests": None if best is None else round(best, 3),
                "met": None if ratio is None else ratio >= required,
            }
        )
    return out


def format_targets(targets: Sequence[dict[str, Any]]) -> str:
    lines = [
        "Targets (judged on the ratio of medians; the ratio of bests, less exposed to a "
        "busy machine, beside it):"
    ]
    for t in targets:
        status = "n/a " if t["met"] is None else ("met " if t["met"] else "MISS")
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        best = "-" if t["ratio_of_bests"] is None else f"{t['ratio_of_bests']:.2f}x"
        lines.append(f"  {status} {t['target']:<58} {ratio:>7}  (best {best})")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/bench_targets.py BENCH.json", file=sys.stderr)
        return 2
    try:
        with open(argv[0]) as f:
            document = json.load(f)
        targets = evaluate(document)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"{argv[0]}: not a bench document: {exc}", file=sys.stderr)
        return 2
    print(format_targets(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
