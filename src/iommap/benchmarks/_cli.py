"""``python -m iommap bench``: the command line around the suite."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, TextIO

import iommap

from .. import _toolkit
from .._toolkit import GiB, KiB, MiB, Progress
from ..pagecache import warm_range
from . import _interpreters, _report, _suite, _workloads
from ._measure import BusyMonitor
from ._suite import size_label

FULL = {"size": GiB, "ops": 100_000, "repeats": 7, "large_bytes": 512 * MiB}
QUICK = {"size": 256 * MiB, "ops": 30_000, "repeats": 5, "large_bytes": 128 * MiB}


def parse_size(text: str) -> int:
    """A size option: '1G', '256MiB', '4k', '65536' -> bytes (binary units)."""
    try:
        return _toolkit.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The bench options, on `parser` (a subcommand's) or on a new parser."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="python -m iommap bench")
    parser.description = (
        "Measures iommap against the standard library's ways of reading and writing a "
        "mapped file, side by side in one run, with the limits (memcpy bandwidth, the "
        "interpreter's call floor) measured in the same run. The figures mean something "
        "only as ratios."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller file (256M) and fewer repeats and operations",
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="test file size (default 1G, 256M with --quick)",
    )
    parser.add_argument(
        "--file",
        default=None,
        help="test file to use and keep (made or resized as needed); "
        "default: a temporary file, removed afterwards",
    )
    parser.add_argument("--dir", default=None, help="directory of the temporary test file")
    parser.add_argument(
        "--hot",
        type=parse_size,
        default=256 * KiB,
        help="size of the hot region for random small reads and writes (default 256K)",
    )
    parser.add_argument(
        "--small-sizes",
        type=parse_sizes,
        default=[64, 4 * KiB],
        help="sizes of the small random reads and writes (default 64,4K)",
    )
    parser.add_argument(
        "--large-sizes",
        type=parse_sizes,
        default=[MiB, 64 * MiB],
        help="sizes of the large reads (default 1M,64M)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for the parallel large reads (default 2)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measured repeats of every contender, after one warm-up (default 7, 5 quick)",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=None,
        help="operations per small-op measurement (default 100000, 30000 quick)",
    )
    parser.add_argument(
        "--large-bytes",
        type=parse_size,
        default=None,
        help="bytes per thread per large-read measurement (default 512M, 128M quick)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="run only the groups whose id contains this text (ids: read/64B/hot, "
        "read/1MiB/2t, write/4KiB/hot, ...; workloads: all five real workloads, "
        "workloads/batches, workloads/records, workloads/scan, workloads/readers, "
        "workloads/append)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_workloads.READERS,
        help=f"worker processes of the many-readers workload (default {_workloads.READERS})",
    )
    parser.add_argument("--seed", default="iommap", help="seed of the random offsets")
    parser.add_argument(
        "--busy-threshold",
        type=float,
        default=0.2,
        help="warn when other processes used more CPUs than this during a group",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="write every number to PATH as JSON"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        default=None,
        help="draw the ratios as a bar chart (needs matplotlib)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress line, even on a terminal"
    )
    return parser


def _resolve(args: argparse.Namespace) -> list[str]:
    mode = QUICK if args.quick else FULL
    for name in ("size", "ops", "repeats", "large_bytes"):
        if getattr(args, name) is None:
            setattr(args, name, mode[name])
    problems = []
    micro = not args.only or any(
        args.only in g.id
        for g in _suite.build_groups(
            args.size, args.hot, args.small_sizes, args.large_sizes, args.threads
        )
    )
    if args.repeats < 1 or args.ops < 1 or args.threads < 1 or args.workers < 1:
        problems.append("--repeats, --ops, --threads and --workers must be at least 1")
    # The workloads read the file as uint16 tokens and uint64 words.
    workloads = not args.only or any(
        args.only in c.id
        for c in _workloads.build_cases(args.size, args.ops, args.repeats, args.workers)
    )
    if workloads and args.size % 8:
        problems.append(f"the workloads need a --size that is a multiple of 8 (not {args.size})")
    if micro and args.hot > args.size:
        problems.append(
            f"--hot ({size_label(args.hot)}) is larger than the file ({size_label(args.size)})"
        )
    if micro and args.small_sizes and max(args.small_sizes) > args.hot:
        problems.append("a small size is larger than the hot region")
    if micro and args.large_sizes and max(args.large_sizes) > args.size:
        problems.append(
            f"a large read size ({size_label(max(args.large_sizes))}) is larger than the "
            f"file ({size_label(args.size)}): raise --size or lower --large-sizes"
        )
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            problems.append("--plot needs matplotlib (pip install 'iommap[plot]')")
    return problems


# -- the test file -------------------------------------------------------------


def prepare_file(path: str, size: int, progress: Progress) -> tuple[float | None, float]:
    """Makes `path` exactly `size` bytes of non-zero data, on disk and in page cache.

    Written (4 MiB of random bytes, rotated by a different amount in every
    4 MiB, so that no two blocks are alike and a read at a wrong offset shows
    in the results), then fsync'ed so that no writeback runs during the
    measurements, then warmed so that every page is cached.  Returns
    (seconds to create or None if reused, seconds to warm).
    """
    created = None
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        t0 = time.perf_counter()
        block = os.urandom(4 * MiB)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < size:
                progress.bar(f"creating {path}", done, size)
                turn = (done // len(block) * 4097) % len(block)
                chunk = min(len(block), size - done)
                os.pwrite(fd, (block[turn:] + block[:turn])[:chunk], done)
                done += chunk
            progress.status(f"creating {path}: fsync")
            os.fsync(fd)
        finally:
            os.close(fd)
        created = time.perf_counter() - t0

    t0 = time.perf_counter()
    with iommap.open(path, "read") as m:
        warm_range(m, on_progress=lambda done: progress.bar("warming the page cache", done, size))
    return created, time.perf_counter() - t0


def resident_fraction(path: str, size: int) -> float | None:
    """Fraction of the file's pages in page cache, or None where the OS will not tell."""
    try:
        with iommap.open(path, "read") as m:
            return min(1.0, m.resident() / size)
    except iommap.Error:
        return None


# -- the run -------------------------------------------------------------------


def _meta(
    args: argparse.Namespace,
    path: str,
    env: _suite.Env,
    created: float | None,
    warmed: float,
    resident: float | None,
) -> dict[str, Any]:
    import iommap

    versions = {"python": platform.python_version(), "iommap": getattr(iommap, "__version__", None)}
    if env.numpy is not None:
        versions["numpy"] = env.numpy.__version__
    if env.pa_file is not None:
        import pyarrow

        versions["pyarrow"] = pyarrow.__version__
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "versions": versions,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "file": path,
        "file_size": args.size,
        "file_created_seconds": created,
        "page_cache_warm_seconds": round(warmed, 3),
        "page_cache_resident_fraction": resident,
        "hot_region": args.hot,
        "small_sizes": args.small_sizes,
        "large_sizes": args.large_sizes,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup_rounds": 1,
        "ops_per_small_measurement": args.ops,
        "bytes_per_thread_per_large_measurement": args.large_bytes,
        "statistic": "median and best of the repeats; ratios are speed ratios of medians",
        "memcpy_limit": _suite.MEMCPY_METHOD,
        "call_floor": _suite.CALL_FLOOR_METHOD,
        "skipped_contenders": dict(env.missing),
    }


def _flag_busy(
    busy: dict[str, Any] | None,
    title: str,
    threshold: float,
    warnings: list[str],
    progress: Progress,
) -> None:
    """Adds a warning to `busy` (and to `warnings`) when other processes used
    more than `threshold` CPUs while `title` was measured."""
    if busy and busy["others_cpus"] > threshold + busy["slack_cpus"]:
        busy["warning"] = (
            f"machine busy during '{title}': other processes used "
            f"{busy['others_cpus']:.2f} of {os.cpu_count()} CPUs (steal "
            f"{busy['steal_cpus']:.2f}) over {busy['seconds']:.1f} s; its figures are less "
            "reliable"
        )
        warnings.append(busy["warning"])
        progress.warn(busy["warning"])


def run(
    args: argparse.Namespace, out: TextIO | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Runs the benchmark for parsed `args`; returns the JSON-ready document."""
    out = out if out is not None else sys.stdout
    progress = progress or Progress(enabled=False if args.no_progress else None)
    temp_dir = None
    path = args.file
    if path is None:
        temp_dir = tempfile.mkdtemp(prefix="iommap-bench-", dir=args.dir)
        path = os.path.join(temp_dir, "bench.bin")
    try:
        created, warmed = prepare_file(path, args.size, progress)
        resident = resident_fraction(path, args.size)
        warnings = []
        if resident is not None and resident < 0.99:
            warnings.append(
                "only %.0f%% of the test file is in page cache: reads may hit the disk"
                % (100 * resident)
            )
            progress.warn(warnings[-1])

        groups = _suite.build_groups(
            args.size, args.hot, args.small_sizes, args.large_sizes, args.threads
        )
        cases = _workloads.build_cases(args.size, args.ops, args.repeats, args.workers)
        if args.only:
            groups = [g for g in groups if args.only in g.id]
            cases = [c for c in cases if args.only in c.id]
        env = _suite.Env(path, args.size, args.hot)
        try:
            meta = _meta(args, path, env, created, warmed, resident)
            progress.clear()
            cached = "?" if resident is None else f"{100 * resident:.0f}% in"
            print(
                f"iommap bench: {size_label(args.size)} file, {cached} page cache, "
                f"{args.repeats} repeat(s) + 1 warm-up, medians; Python "
                f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs",
                file=out,
            )
            for why in sorted(set(env.missing.values())):
                print(f"  (skipping rows: {why})", file=out)
            monitor = BusyMonitor()
            done = []
            for i, group in enumerate(groups, 1):
                rows, busy = _suite.run_group(
                    env,
                    group,
                    ops=args.ops,
                    large_bytes=args.large_bytes,
                    repeats=args.repeats,
                    seed=args.seed,
                    progress=progress,
                    label=f"[{i}/{len(groups)}]",
                    monitor=monitor,
                )
                _flag_busy(busy, group.title, args.busy_threshold, warnings, progress)
                done.append((group, rows, busy))
        finally:
            env.close()
        scratch = tempfile.mkdtemp(prefix="iommap-bench-", dir=os.path.dirname(path))
        ctx = _workloads.Ctx(path, args.size, scratch, args.seed)
        work_done: list[
            tuple[_workloads.Case, list[_workloads.WorkRow], dict[str, Any] | None]
        ] = []
        try:
            for why in sorted(set(ctx.missing.values()) - set(env.missing.values())):
                if cases:
                    print(f"  (skipping workload rows: {why})", file=out)
            for i, case in enumerate(cases, 1):
                work_rows, busy = _workloads.run_case(
                    ctx, case, progress, f"[workload {i}/{len(cases)}]", monitor
                )
                _flag_busy(busy, case.title, args.busy_threshold, warnings, progress)
                work_done.append((case, work_rows, busy))
        finally:
            ctx.release()
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
            os.rmdir(scratch)
        interp_result = None
        if not args.only or args.only in _interpreters.GROUP_ID:
            interp_result = _interpreters.run(
                path, args.hot, args.small_sizes, args.ops, args.repeats, args.seed, progress
            )
        progress.clear()
    finally:
        if temp_dir is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os.rmdir(temp_dir)

    results = _report.Results(done)
    if done:
        print(file=out)
        print(_report.format_table(results), file=out)
    if work_done:
        print(
            "\nWorkloads: today's way and iommap's, the same job, results checked equal\n", file=out
        )
        print(_workloads.format_table(work_done), file=out)
    if interp_result is not None:
        print("\n" + _interpreters.format_table(interp_result), file=out)
    if done:
        print(
            f"\nlimits: memcpy = {_suite.MEMCPY_METHOD}.\n"
            f"        call floor = {_suite.CALL_FLOOR_METHOD}.",
            file=out,
        )
    if not monitor.available:
        print("(no /proc/stat here: busy-machine warnings are off)", file=out)
    if warnings:
        print(f"\n{len(warnings)} warning(s):", file=out)
        for w in warnings:
            print("  " + w, file=out)
    document = _report.to_document(results, meta, warnings)
    document["workloads"] = _workloads.to_document(work_done)
    document["interpreters"] = interp_result
    if args.json:
        _report.write_json(args.json, document)
        print(f"wrote {args.json}", file=out)
    if args.plot:
        _report.plot(args.plot, results)
        print(f"wrote {args.plot}", file=out)
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m iommap bench``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_parsed(args, parser)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Adds the ``bench`` subcommand to ``python -m iommap``'s subparsers."""
    parser = commands.add_parser(
        "bench", help="measure iommap against the standard library, side by side"
    )
    build_parser(parser)
    parser.set_defaults(run=lambda args: run_parsed(args, parser))
    return parser


def run_parsed(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs parsed arguments (from this parser or a subcommand built by build_parser)."""
    problems = _resolve(args)
    if problems:
        parser.error("; ".join(problems))
    run(args)
    return 0
