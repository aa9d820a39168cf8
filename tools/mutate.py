#!/usr/bin/env python3
"""The project's mutation check: deliberate bugs the suite must catch.

Each mutant is (name, snippet, replacement, tests).  The snippet is found by
its text, not by file and line, so code can move between files: it must
occur exactly once across the sources under src/iommap/ (C and Python).  For
each mutant in turn, this script copies the source tree to a scratch
directory (build/mutate/tree), applies the one change, rebuilds the C core
in place there (``setup.py build_ext --inplace``) when the change is in C,
and runs only the covering tests against that tree (PYTHONPATH points at its
src/).  A test run that fails or hangs past the timeout kills the mutant.

    python tools/mutate.py              every mutant
    python tools/mutate.py NAME...      only those (names or prefixes)
    python tools/mutate.py --list       the mutants and their tests

Exits 1 if any mutant survives, 2 if a snippet does not occur exactly once
(or the unmutated tree fails its covering tests, or a mutant does not build).
docs/robustness.md says how long a run takes and how to add a mutant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build" / "mutate"
TREE = SCRATCH / "tree"
# What the tests need from the repository besides src/ and tests/.
COPIED = (
    "src",
    "tests",
    "docs",
    "examples",
    "tools",
    "setup.py",
    "pyproject.toml",
    "README.md",
    "MANIFEST.in",
    "LICENSE",
    "CHANGELOG.md",
    "Makefile",
)
TIMEOUT = 600


@dataclass(frozen=True)
class Mutant:
    name: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]


def M(name: str, snippet: str, replacement: str, *tests: str) -> Mutant:
    return Mutant(name, snippet, replacement, tests)


SIGBUS = "tests/test_sigbus.py"
SIGNALS = "tests/test_signals.py"
THREADS = "tests/test_threads.py"
IO = "tests/test_io.py"
GS = "tests/test_gather_scatter.py"
SYNC_SEEN = "tests/test_sync_visible.py"
POWER = "tests/test_power_cut.py"
STRACE = "tests/test_sync_durability.py"
GROW = "tests/test_grow_failure.py"

MUTANTS = [
    # ---- sync: what it writes and waits for ------------------------------
    M(
        "sync-msync-async",
        'call, "msync()", flags, 0);',
        'call, "msync()", MS_ASYNC, 0);',
        SYNC_SEEN,
        POWER,
    ),
    M("sync-no-msync", "h->opts.private_ ? NULL : msync;", "NULL;", SYNC_SEEN, POWER),
    M(
        "sync-no-fdatasync",
        "if (iommap_platform_sync_file(h->fd) != 0) {",
        "if (0) {",
        POWER,
        STRACE,
    ),
    M(
        "sync-no-directory-fsync",
        "if (iommap_sync_directory(dir) != 0) {",
        "if (0) {",
        POWER,
        STRACE,
    ),
    M(
        "sync-async-does-durable",
        "if (done == NULL || flags != MS_SYNC)",
        "if (done == NULL || flags == MS_SYNC)",
        POWER,
        SYNC_SEEN,
    ),
    M(
        "truncate-forgets-size-change",
        "atomic_store_explicit(&w->h->unsynced_size, 1, memory_order_relaxed);",
        "(void)0;",
        POWER,
        STRACE,
    ),
    # ---- hints ----------------------------------------------------------
    M(
        "dontneed-is-willneed",
        'HINT("dontneed", MADV_DONTNEED,',
        'HINT("dontneed", MADV_WILLNEED,',
        "tests/test_residency.py",
        "tests/test_advise_sync.py",
    ),
    M(
        "willneed-is-normal",
        'HINT("willneed", MADV_WILLNEED,',
        'HINT("willneed", MADV_NORMAL,',
        "tests/test_residency.py",
    ),
    M(
        "private-dontneed-discards",
        "*advice = IOMMAP_MADV_PRIVATE_DONTNEED;",
        "(void)0;",
        "tests/test_advise_sync.py",
    ),
    # ---- GIL release -----------------------------------------------------
    M(
        "batch-holds-the-gil",
        "iommap_finish_released(h, total, run_guarded_batch, batch)",
        "iommap_finish_released(h, 0, run_guarded_batch, batch)",
        THREADS + "::test_large_batch_copies_release_the_gil",
    ),
    M(
        "gil-threshold-never",
        "#define IOMMAP_GIL_RELEASE_BYTES (64 * 1024)",
        "#define IOMMAP_GIL_RELEASE_BYTES ((size_t)-1)",
        THREADS + "::test_large_copies_release_the_gil",
    ),
    M(
        "lock-wait-holds-the-gil",
        "    Py_BEGIN_ALLOW_THREADS\n    if (kind == IOMMAP_EXCLUSIVE)\n"
        "        pthread_rwlock_wrlock(&h->lock);\n    else\n"
        "        while (pthread_rwlock_rdlock(&h->lock) == EAGAIN)\n"
        "            sched_yield(); /* too many readers at once: wait for one to leave */\n"
        "    Py_END_ALLOW_THREADS",
        "    if (kind == IOMMAP_EXCLUSIVE)\n        pthread_rwlock_wrlock(&h->lock);\n    else\n"
        "        while (pthread_rwlock_rdlock(&h->lock) == EAGAIN)\n            sched_yield();",
        THREADS,
    ),
    # ---- locking ---------------------------------------------------------
    M(
        "rwlock-not-writer-preferring",
        "pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);",
        "(void)0;",
        THREADS,
    ),
    M(
        "scatter-shared-lock",
        "iommap_enter(h, batch->to_mapping ? IOMMAP_EXCLUSIVE : IOMMAP_SHARED, 0, 0, &s);",
        "iommap_enter(h, IOMMAP_SHARED, 0, 0, &s);",
        THREADS,
        GS,
        "tests/test_torture.py",
    ),
    M(
        "pwrite-shared-lock",
        "iommap_enter(h, IOMMAP_EXCLUSIVE, offset, c.total, &s);",
        "iommap_enter(h, IOMMAP_SHARED, offset, c.total, &s);",
        THREADS,
        "tests/test_torture.py",
    ),
    M(
        "close-not-marked-closing",
        "    atomic_store_explicit(&h->closing, 1, memory_order_release);\n"
        "    iommap_lock(h, IOMMAP_EXCLUSIVE);",
        "    iommap_lock(h, IOMMAP_EXCLUSIVE);",
        THREADS,
        "tests/test_lifecycle.py",
    ),
    M(
        "closed-check-skipped",
        "    if (iommap_is_closing(h)) {\n        iommap_err_closed",
        "    if (0) {\n        iommap_err_closed",
        "tests/test_lifecycle.py",
        THREADS,
    ),
    # ---- bounds ----------------------------------------------------------
    M(
        "bounds-off-by-one",
        "return offset <= size && length <= size - offset;",
        "return offset <= size && length <= size - offset + 1;",
        IO,
        GS,
    ),
    M(
        "bounds-overflow",
        "return offset <= size && length <= size - offset;",
        "return offset + length <= size;",
        IO,
        GS,
        "tests/test_advise_sync.py",
    ),
    M(
        "pread-early-check-skipped",
        "    if (!iommap_in_bounds(offset, length, hint))\n"
        '        return iommap_err_out_of_bounds_given(IOMMAP_STATE(h), "pread"',
        '    if (0)\n        return iommap_err_out_of_bounds_given(IOMMAP_STATE(h), "pread"',
        IO,
    ),
    M(
        "batch-bounds-offset-only",
        "if (!iommap_in_bounds(o->values[i], length, size))",
        "if (o->values[i] > size)",
        GS,
    ),
    M(
        "batch-total-unchecked",
        "if (length > (uint64_t)PY_SSIZE_T_MAX ||"
        " __builtin_mul_overflow(count, (size_t)length, total) ||",
        "if ((*total = count * (size_t)length, 0) ||",
        GS,
    ),
    M(
        "iolist-depth-unbounded",
        "#define IOMMAP_MAX_IOLIST_DEPTH 100",
        "#define IOMMAP_MAX_IOLIST_DEPTH 100000",
        IO,
        "tests/test_bounded_work.py",
    ),
    # ---- modes -----------------------------------------------------------
    M(
        "read-handle-may-write",
        "if ((need & IOMMAP_WRITE) && !IOMMAP_CAN_WRITE(h->opts.mode)) {",
        "if (0) {",
        "tests/test_modes.py",
    ),
    M(
        "write-handle-may-read",
        "if ((need & IOMMAP_READ) && !IOMMAP_CAN_READ(h->opts.mode)) {",
        "if (0) {",
        "tests/test_modes.py",
    ),
    M(
        "private-may-truncate",
        '    if (h->opts.private_)\n        return iommap_err_refused(st, "truncate"',
        '    if (0)\n        return iommap_err_refused(st, "truncate"',
        "tests/test_modes.py",
        "tests/test_resize.py",
    ),
    # ---- the SIGBUS guard --------------------------------------------------
    M(
        "guard-no-mask-restore",
        "        if (context != NULL) {\n"
        "            sigset_t mask;\n"
        "            iommap_platform_interrupted_mask(context, &mask);\n"
        "            pthread_sigmask(SIG_SETMASK, &mask, NULL);\n"
        "        }\n"
        "        unblock_sigbus();\n",
        "",
        SIGNALS,
    ),
    M(
        "guard-keeps-the-front-handler-mask",
        "            pthread_sigmask(SIG_SETMASK, &mask, NULL);\n"
        "        }\n        unblock_sigbus();",
        "            (void)mask;\n        }\n        unblock_sigbus();",
        SIGNALS,
    ),
    M("guard-never-guarded", "return addr >= lo && addr < scope->hi;", "return 0;", SIGBUS),
    M(
        "guard-chain-dropped",
        "    pass_on(slot, sig, info, context, scope);\n",
        "    default_action();\n",
        SIGNALS,
    ),
    M(
        "guard-no-rearm-on-large-copy",
        "if (bytes >= IOMMAP_GIL_RELEASE_BYTES)\n        (void)iommap_guard_install();",
        "(void)0;",
        SIGNALS,
    ),
    M(
        "sigbus-errno-eio",
        'PyObject_CallFunction(st->sigbus_error, "iO", EFAULT, msg);',
        'PyObject_CallFunction(st->sigbus_error, "iO", EIO, msg);',
        SIGBUS,
    ),
    # ---- resize and growth -------------------------------------------------
    M(
        "grow-no-rollback",
        "    int saved = errno;\n    (void)ftruncate(fd, (off_t)old_size);\n    errno = saved;\n"
        "    return -1;",
        "    return -1;",
        GROW,
    ),
    M(
        "grow-without-reservation",
        "    if (fallocate(fd, 0, (off_t)old_size, (off_t)(size - old_size)) == 0)\n"
        "        return 0;\n    if (errno != EOPNOTSUPP && errno != ENOSYS)\n        return -1;\n",
        "",
        "tests/test_resize.py",
        "tests/test_open.py",
        GROW,
    ),
    M(
        "remap-failure-keeps-grown-file",
        "            if (new_size > file_size)\n"
        "                (void)ftruncate(h->fd, (off_t)file_size);",
        "            (void)0;",
        GROW,
    ),
    M(
        "shrink-leaves-views-faulting",
        "        iommap_mappings_cut(h->fd, new_size, h->mapping, &h->opts);",
        "        (void)0;",
        "tests/test_own_shrink.py",
    ),
    # ---- CLI and page cache (Python) ---------------------------------------
    M(
        "cli-evict-drops-writeback",
        'new_walk(args, "evict", writeback=args.writeback)',
        'new_walk(args, "evict", writeback=False)',
        "tests/test_cli.py::test_evict_writeback_drops_dirty_pages",
    ),
    M(
        "pagecache-evict-no-writeback",
        "if writeback:",
        "if False:",
        "tests/test_pagecache.py::test_evict_with_writeback_drops_dirty_pages",
    ),
    M(
        "pagecache-evict-no-fadvise",
        "os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)",
        "os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_NORMAL)",
        "tests/test_pagecache.py",
    ),
    M(
        "pagecache-range-start-unaligned",
        "    start = lo - lo % PAGE_SIZE\n    return start, hi if hi > lo else start",
        "    start = lo\n    return start, hi if hi > lo else start",
        "tests/test_pagecache.py",
    ),
    M(
        "pagecache-range-length-ignored",
        "    hi = size if length is None else min(size, lo + length)\n    start = lo - lo",
        "    hi = size\n    start = lo - lo",
        "tests/test_pagecache.py",
    ),
]


class Failure(Exception):
    """The check itself cannot run: a snippet moved, a build broke."""


def sources(root: Path) -> list[Path]:
    base = root / "src" / "iommap"
    return sorted(p for p in base.rglob("*") if p.suffix in (".c", ".h", ".py") and p.is_file())


def locate(m: Mutant, root: Path) -> Path:
    hits = [(p, p.read_text().count(m.snippet)) for p in sources(root)]
    hits = [(p, n) for p, n in hits if n]
    total = sum(n for _, n in hits)
    if total != 1:
        where = ", ".join(f"{p.relative_to(root)} x{n}" for p, n in hits) or "nowhere"
        raise Failure(f"{m.name}: the snippet occurs {total} times (must be once): {where}")
    return hits[0][0]


def fresh_tree() -> None:
    """A copy of the working tree's sources (built products kept)."""
    TREE.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src, dst = ROOT / name, TREE / name
        if src.is_dir():
            shutil.copytree(
                src,
                dst,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"),
            )
        elif src.exists():
            shutil.copy2(src, dst)


def build(log: Path) -> None:
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=TREE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise Failure(f"the build failed; see {log}")


def run_tests(tests: tuple[str, ...], log: Path) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(TREE / "src")}
    t0 = time.monotonic()
    with open(log, "w") as out:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                cwd=TREE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
            )
            rc = done.returncode
        except subprocess.TimeoutExpired:
            rc = -1
    took = time.monotonic() - t0
    text = log.read_text(errors="replace")
    if rc == 0:
        return "passed", took
    if rc in (1, -1) or "Fatal Python error" in text:
        return "failed", took
    return f"error (pytest exit {rc})", took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="run only these mutants (names or prefixes)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the run of the covering tests on the unmutated tree",
    )
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or any(m.name.startswith(n) for n in args.names)]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {' '.join(m.tests)}")
        print(f"{len(chosen)} mutants")
        return 0
    if not chosen:
        print("mutate: no mutant matches", file=sys.stderr)
        return 2
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "two mutants share a name"
    try:
        for m in chosen:  # every snippet is checked before anything runs
            locate(m, ROOT)
    except Failure as e:
        print(f"mutate: {e}", file=sys.stderr)
        return 2

    logs = SCRATCH / "logs"
    if TREE.exists():
        shutil.rmtree(TREE)
    logs.mkdir(parents=True, exist_ok=True)
    fresh_tree()
    start = time.monotonic()
    try:
        build(logs / "baseline-build.log")
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            outcome, took = run_tests(tests, logs / "baseline.log")
            print(f"baseline: {outcome} ({took:.0f}s)", flush=True)
            if outcome != "passed":
                raise Failure(f"the unmutated tree fails its tests; see {logs / 'baseline.log'}")
    except Failure as e:
        print(f"mutate: {e}", file=sys.stderr)
        return 2

    rows = []
    broken = False
    for m in chosen:
        path = locate(m, TREE)
        original = path.read_text()
        path.write_text(original.replace(m.snippet, m.replacement))
        try:
            if path.suffix in (".c", ".h"):
                build(logs / f"{m.name}.build.log")
            outcome, took = run_tests(m.tests, logs / f"{m.name}.log")
            verdict = {"failed": "killed", "passed": "SURVIVED"}.get(outcome, outcome)
        except Failure as e:
            verdict, took = f"error: {e}", 0.0
        finally:
            path.write_text(original)
            os.utime(path)  # newer than the mutant's objects: the next build redoes it
        if verdict.startswith("error"):
            broken = True
        rows.append((m, verdict, took))
        print(f"{m.name:34} {verdict} ({took:.0f}s)", flush=True)
    killed = sum(v == "killed" for _, v, _ in rows)
    survived = [m.name for m, v, _ in rows if v == "SURVIVED"]
    print()
    print(f"| {'mutant':34} | {'result':8} | {'seconds':7} | tests")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 9}|{'-' * 40}")
    for m, v, took in rows:
        tests = ", ".join(t.replace("tests/", "") for t in m.tests)
        print(f"| {m.name:34} | {v.split(':')[0]:8} | {took:7.0f} | {tests}")
    print()
    print(
        f"{killed} of {len(rows)} killed, {len(survived)} survived"
        f" in {time.monotonic() - start:.0f}s" + (f": {', '.join(survived)}" if survived else "")
    )
    if broken:
        return 2
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
