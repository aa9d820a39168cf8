"""``iommap bench-cli``: iommap's page commands against vmtouch and fincore.

Builds the test data once (trees of small files, 10,000 and 100,000 by
default, a large file, a 1 TiB sparse file), then runs each case's commands
alternately, ``--repeats`` times, as separate processes, measuring each
one's wall time, CPU time and peak memory (its maximum resident set size).
On each tree: the totals (``info -s`` against ``vmtouch`` and ``fincore``
over ``xargs``), a line per file (``info`` against the same two), ``evict``
and ``warm`` (against ``vmtouch -e`` and ``vmtouch -t``: fincore only
counts). And the start-up: ``info`` of one small file against ``python -c
pass`` with the same interpreter. It prints the medians, the ratio iommap /
peer (below 1.0x, iommap is faster) and, for each target, whether it is met,
or the gap and what limits it. A peer that is not installed is skipped, and
the report says so.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _toolkit, pagecache
from .._toolkit import GiB, MiB, TiB, format_size
from ._cli import parse_size

# A target: iommap's median wall time at most RATIO x the peer's, and its
# peak memory at most MEMORY bytes. The tree cases' ids end with the tree's
# size ("info-tree-10k"); they share the target of their kind.
TARGETS = {
    "info-tree": (0.8, 64 * MiB),
    "lines-tree": (0.8, 64 * MiB),
    "evict-tree": (1.0, 64 * MiB),
    "warm-tree": (1.0, 64 * MiB),
    "info-large": (1.0, 32 * MiB),
    "info-sparse": (1.0, 32 * MiB),
    "warm-cold": (1.0, None),
    "evict": (1.0, None),
    "startup": (1.5, None),
}


def target_of(case_id: str) -> tuple[float, int | None]:
    if case_id in TARGETS:
        return TARGETS[case_id]
    return TARGETS[case_id.rsplit("-", 1)[0]]


def count_label(n: int) -> str:
    """10000 -> "10k": the tree's size in a case id."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


@dataclass
class Run:
    seconds: float
    max_rss: int  # bytes; -1 unknown
    status: int
    cpu: float = -1.0  # user + system seconds; -1 unknown


@dataclass
class Contender:
    name: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    missing: str | None = None

    @property
    def median(self) -> float | None:
        ok = [r.seconds for r in self.runs if r.status == 0]
        return statistics.median(ok) if ok else None

    @property
    def cpu(self) -> float | None:
        ok = [r.cpu for r in self.runs if r.status == 0 and r.cpu >= 0]
        return statistics.median(ok) if ok else None

    @property
    def rss(self) -> int | None:
        ok = [r.max_rss for r in self.runs if r.status == 0 and r.max_rss >= 0]
        return max(ok) if ok else None

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if r.status != 0)


@dataclass
class Case:
    id: str
    title: str
    contenders: list[Contender]
    before: Callable[[], None] | None = None


def iommap_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "iommap")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "iommap"]


TIME = shutil.which("time", path="/usr/bin:/bin")


def measure(argv: Sequence[str]) -> Run:
    """Run ``argv`` with its output discarded; wall time and peak RSS.

    The peak RSS comes from GNU time (``/usr/bin/time -f %M``), which starts
    the command from its own small process: a child started straight from
    this interpreter inherits the interpreter's high-water mark, and
    ``ru_maxrss`` would report that instead. Without GNU time, no RSS."""
    rss_file = None
    command = list(argv)
    if TIME is not None:
        fd, rss_file = tempfile.mkstemp(prefix="iommap-rss-")
        os.close(fd)
        command = [TIME, "-f", "%M %U %S", "-o", rss_file, *command]
    started = time.perf_counter()
    status = subprocess.call(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - started
    rss, cpu = -1, -1.0
    if rss_file is not None:
        try:
            with open(rss_file) as f:
                words = f.read().split()
            # The last line: "KiB user system" (a first line may say the
            # command exited with a non-zero status).
            if len(words) >= 3 and words[-3].isdigit():
                rss = int(words[-3]) * 1024
                cpu = float(words[-2]) + float(words[-1])
        except ValueError:
            pass
        finally:
            os.unlink(rss_file)
    return Run(seconds, rss, status, cpu)


# ---- the test data ----------------------------------------------------------------


def make_tree(root: str, files: int, size: int, progress: _toolkit.Progress) -> None:
    per_dir = 100
    block = os.urandom(size + 256)
    for i in range(files):
        d = os.path.join(root, f"d{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
            progress.status(f"creating the tree: {i}/{files} files")
        with open(os.path.join(d, f"f{i % per_dir:03d}.bin"), "wb") as f:
            f.write(block[i % 256 : i % 256 + size])


def make_file(path: str, size: int, progress: _toolkit.Progress) -> None:
    block = os.urandom(4 * MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < size:
            progress.bar("creating " + os.path.basename(path), done, size)
            n = min(len(block), size - done)
            os.pwrite(fd, block[:n], done)
            done += n
        os.fsync(fd)  # clean pages: evict can drop them all
    finally:
        os.close(fd)


def drop(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def tree_of(work: str, files: int) -> str:
    return os.path.join(work, f"tree-{files}")


def list_files(root: str, out: str) -> None:
    """Every file of the tree, sorted, NUL-separated: xargs -0's input."""
    names: list[str] = []
    for parent, dirs, files in os.walk(root):
        dirs.sort()
        names.extend(os.path.join(parent, f) for f in sorted(files))
    with open(out, "wb") as f:
        f.write(b"\0".join(os.fsencode(n) for n in names) + b"\0")


def drop_tree(root: str) -> None:
    from iommap import pagecache

    # The files were written back once (prepare): a writeback per file
    # (fdatasync) would take minutes over 100,000 files.
    for _ in pagecache.walk([root], "evict"):
        pass


def load_tree(root: str) -> None:
    from iommap import pagecache

    for _ in pagecache.walk([root], "warm"):
        pass


def load(path: str) -> None:
    import iommap

    with iommap.open(path, "read") as m:
        pagecache.warm_range(m)


# ---- the run ------------------------------------------------------------------------


def build_cases(work: str, args: argparse.Namespace) -> list[Case]:
    me = iommap_command()
    large = os.path.join(work, "large.bin")
    sparse = os.path.join(work, "sparse.bin")
    vmtouch = shutil.which("vmtouch")
    fincore = shutil.which("fincore")

    def peer(name: str, exe: str | None, *argv: str) -> Contender:
        if exe is None:
            return Contender(name, [], missing=f"{name.split()[0]} is not installed")
        return Contender(name, [exe, *argv])

    size = format_size(args.size, exact=True)
    small = os.path.join(work, "small.bin")
    cases = [
        Case(
            "startup",
            "start-up: info of one 4 KiB file",
            [
                Contender("iommap info", [*me, "info", small]),
                Contender("python -c pass", [sys.executable, "-c", "pass"]),
            ],
        ),
    ]
    for files in args.files:
        tree = tree_of(work, files)
        listed = tree + ".list"
        label = count_label(files)
        of = f"a tree of {files:,} files of {format_size(args.file_size)}"

        def over_xargs(name: str, listed: str = listed) -> Contender:
            if fincore is None:
                return Contender(name, [], missing="fincore is not installed")
            return Contender(name, ["xargs", "-0", "-a", listed, fincore])

        cases += [
            Case(
                f"info-tree-{label}",
                f"totals, {of}",
                [
                    Contender("iommap info -s", [*me, "info", "-s", tree]),
                    peer("vmtouch", vmtouch, tree),
                    over_xargs("xargs fincore"),
                ],
            ),
            Case(
                f"lines-tree-{label}",
                f"a line per file, {of}",
                [
                    Contender("iommap info", [*me, "info", tree]),
                    over_xargs("xargs fincore"),
                    peer("vmtouch -v", vmtouch, "-v", tree),
                ],
            ),
            Case(
                f"evict-tree-{label}",
                f"evict, {of}, cached",
                [
                    Contender("iommap evict -s", [*me, "evict", "-s", tree]),
                    peer("vmtouch -e", vmtouch, "-e", tree),
                ],
                before=functools.partial(load_tree, tree),
            ),
            Case(
                f"warm-tree-{label}",
                f"warm, {of}, cold",
                [
                    Contender("iommap warm -s", [*me, "warm", "-s", "--no-progress", tree]),
                    peer("vmtouch -t", vmtouch, "-t", tree),
                ],
                before=functools.partial(drop_tree, tree),
            ),
        ]
    cases += [
        Case(
            "info-large",
            f"info, one {size} file",
            [
                Contender("iommap info", [*me, "info", large]),
                peer("fincore", fincore, large),
                peer("vmtouch", vmtouch, large),
            ],
        ),
        Case(
            "info-sparse",
            "info, one 1 TiB sparse file",
            [
                Contender("iommap info", [*me, "info", sparse]),
                peer("fincore", fincore, sparse),
                # vmtouch skips files over its -m limit (500 MiB by default).
                peer("vmtouch -m 4096G", vmtouch, "-m", "4096G", sparse),
            ],
        ),
        Case(
            "warm-cold",
            f"warm, one {size} file, cold",
            [
                Contender("iommap warm", [*me, "warm", "--no-progress", large]),
                peer("vmtouch -t", vmtouch, "-t", "-m", "4096G", large),
            ],
            before=lambda: drop(large),
        ),
        Case(
            "evict",
            f"evict, one {size} file, all cached",
            [
                Contender("iommap evict", [*me, "evict", large]),
                peer("vmtouch -e", vmtouch, "-e", "-m", "4096G", large),
            ],
            before=lambda: load(large),
        ),
    ]
    if args.only:
        cases = [c for c in cases if args.only in c.id]
    return cases


def prepare(work: str, args: argparse.Namespace, progress: _toolkit.Progress) -> None:
    for files in args.files:
        make_tree(tree_of(work, files), files, args.file_size, progress)
        list_files(tree_of(work, files), tree_of(work, files) + ".list")
    make_file(os.path.join(work, "small.bin"), 4096, progress)
    os.sync()  # clean pages: evict can drop every file of the trees
    make_file(os.path.join(work, "large.bin"), args.size, progress)
    with open(os.path.join(work, "sparse.bin"), "wb") as f:
        f.truncate(TiB)
    progress.clear()


def run_cases(cases: list[Case], repeats: int, progress: _toolkit.Progress) -> None:
    for case in cases:
        live = [c for c in case.contenders if c.missing is None]
        for r in range(repeats + 1):  # one warm-up round, not counted
            # Alternate, and rotate who goes first, so neither side always
            # meets the machine in the same state.
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            for c in order:
                progress.status(f"{case.id}: {c.name} ({r}/{repeats})")
                if case.before is not None:
                    case.before()
                got = measure(c.argv)
                if r:
                    c.runs.append(got)
    progress.clear()


def startup_floor(repeats: int) -> float:
    """The wall time of ``iommap info`` on an empty directory: the
    interpreter's start and the imports, which no per-file work can cut."""
    with tempfile.TemporaryDirectory() as empty:
        runs = [measure([*iommap_command(), "info", "-s", empty]) for _ in range(repeats)]
    return statistics.median(r.seconds for r in runs)


def verdict(case: Case, floor: float) -> dict[str, Any]:
    mine = case.contenders[0]
    ratio_target, memory_target = target_of(case.id)
    peers = [c for c in case.contenders[1:] if c.missing is None and c.median]
    out: dict[str, Any] = {"case": case.id, "ratio_target": ratio_target}
    if mine.median is None:
        return {**out, "met": False, "note": f"iommap failed ({mine.failed} runs)"}
    if not peers:
        missing = "; ".join(c.missing or "failed" for c in case.contenders[1:])
        return {**out, "met": None, "note": f"no peer to compare with ({missing})"}
    ratio = max(mine.median / p.median for p in peers if p.median)
    rss_ok = memory_target is None or (mine.rss or 0) <= memory_target
    met = ratio <= ratio_target and rss_ok
    notes = []
    if ratio > ratio_target:
        best = min(peers, key=lambda p: p.median or 0.0)
        gap = mine.median - (best.median or 0.0)
        share = (
            "more than the whole gap"
            if floor >= gap
            else f"{100 * floor / gap:.0f}% of the gap"
            if gap > 0
            else "-"
        )
        note = (
            f"{(ratio - 1) * 100:.0f}% slower ({gap * 1000:.0f} ms); iommap's start-up "
            f"(interpreter and imports: info on an empty directory) takes "
            f"{floor * 1000:.0f} ms, {share}"
        )
        if mine.cpu is not None and best.cpu is not None:
            note += f"; CPU {mine.cpu * 1000:.0f} ms against {best.cpu * 1000:.0f} ms"
        notes.append(note)
    if not rss_ok:
        notes.append(
            f"peak memory {format_size(mine.rss or 0)} over {format_size(memory_target or 0)}"
        )
    return {**out, "ratio": round(ratio, 3), "met": met, "note": "; ".join(notes)}


def report(cases: list[Case], floor: float, out: Any) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        mine = case.contenders[0]
        for c in case.contenders:
            if c.missing is not None:
                rows.append(
                    [case.title if c is mine else "", c.name, "-", "-", "-", "-", c.missing]
                )
                continue
            med = c.median
            ratio = "" if c is mine or med is None or not mine.median else mine.median / med
            rows.append(
                [
                    case.title if c is mine else "",
                    c.name,
                    "-" if med is None else f"{med * 1000:.1f}",
                    "-" if c.cpu is None else f"{c.cpu * 1000:.0f}",
                    "-" if c.rss is None else format_size(c.rss),
                    "" if ratio == "" else f"{ratio:.2f}x",
                    f"{c.failed} failed runs" if c.failed else "",
                ]
            )
    header = ["case", "command", "wall ms", "cpu ms", "peak RSS", "iommap/this", "note"]
    for line in _toolkit.render_table(header, rows, align="llrrrrl"):
        out.write(line + "\n")
    out.write(f"\nstart-up floor of iommap (info on an empty directory): {floor * 1000:.1f} ms\n")
    out.write(
        "\nwall ms and cpu ms (user + system, from GNU time) are medians; iommap/this is the"
        " ratio of wall-time medians.\n"
        "Targets (iommap's median wall time / each peer's, the largest ratio; memory: peak RSS):\n"
    )
    verdicts = []
    for case in cases:
        v = verdict(case, floor)
        verdicts.append(v)
        status = "n/a " if v["met"] is None else ("met " if v["met"] else "MISS")
        ratio = f"{v['ratio']:.2f}x" if "ratio" in v else "-"
        memory = target_of(case.id)[1]
        target = f"<= {v['ratio_target']:.1f}x" + (
            f", <= {format_size(memory, exact=True)}" if memory else ""
        )
        line = f"  {status} {case.id:<12} {ratio:>6}  (target {target})"
        if v.get("note"):
            line += f"  {v['note']}"
        out.write(line + "\n")
    return verdicts


def main(args: argparse.Namespace) -> int:
    progress = _toolkit.Progress(enabled=False if args.no_progress else None)
    work = tempfile.mkdtemp(prefix="iommap-bench-cli-", dir=args.dir)
    try:
        prepare(work, args, progress)
        cases = build_cases(work, args)
        started = time.monotonic()
        run_cases(cases, args.repeats, progress)
        floor = startup_floor(max(3, args.repeats))
        out = sys.stdout
        out.write(
            f"iommap bench-cli: {args.repeats} interleaved runs per command (+1 warm-up), "
            f"medians; {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}, {time.monotonic() - started:.0f} s\n\n"
        )
        for case in cases:
            for c in case.contenders:
                if c.missing:
                    out.write(f"skipped: {c.name}: {c.missing}\n")
        verdicts = report(cases, floor, out)
        out.flush()
        if args.json:
            doc = {
                "cases": [
                    {
                        "id": case.id,
                        "title": case.title,
                        "contenders": [
                            {
                                "name": c.name,
                                "argv": c.argv,
                                "missing": c.missing,
                                "seconds": [r.seconds for r in c.runs],
                                "max_rss": [r.max_rss for r in c.runs],
                                "cpu": [r.cpu for r in c.runs],
                                "status": [r.status for r in c.runs],
                                "median": c.median,
                            }
                            for c in case.contenders
                        ],
                    }
                    for case in cases
                ],
                "startup_floor": floor,
                "targets": verdicts,
                "loadavg": os.getloadavg(),
            }
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
        return 0
    finally:
        if args.keep:
            sys.stderr.write(f"kept the test data in {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)


def counts_arg(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("each tree needs at least one file")
    return counts


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bench-cli",
        help="iommap info/warm/evict against vmtouch and fincore, side by side",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--files",
        type=counts_arg,
        default=[10_000, 100_000],
        help="files in each tree, comma-separated (10000,100000)",
    )
    parser.add_argument(
        "--file-size", type=parse_size, default=10 * 1024, help="size of each (10K)"
    )
    parser.add_argument("--size", type=parse_size, default=GiB, help="size of the large file (1G)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (5)")
    parser.add_argument("--only", metavar="CASE", help="run only the cases whose id has CASE")
    parser.add_argument("--dir", help="where to build the test data (a temporary directory)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--keep", action="store_true", help="keep the test data")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.set_defaults(run=main, parser=parser)
