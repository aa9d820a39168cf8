"""The page-cache commands: ``iommap info``, ``warm``, ``evict`` and ``lock``.

A thin layer over :mod:`iommap.pagecache`: the options of vmtouch and
util-linux fincore under iommap's names, a table (or fincore's raw form, or
one JSON document) on stdout, errors on stderr, and exit statuses a script
can rely on. ``docs/cli.md`` maps every vmtouch flag and fincore option to
its iommap name. ``lock``'s holding of the files lives in :mod:`.lockd`,
imported only when ``lock`` runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .. import _toolkit, pagecache
from .._toolkit import format_size
from .frame import Terminated, add_table_options, add_walk_options, new_parser, sigterm_interrupts
from .output import MAP_WIDTH, Output, OutputError, column_help, shown, warn, writer_for
from .paths import check_paths_given, list_error, new_walk, open_list
from .status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED

# warm shows a progress bar on a terminal for files at least this large.
PROGRESS_MIN_BYTES = 64 << 20


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register info, warm, evict and lock with the main parser."""
    parser = new_parser(
        commands,
        "info",
        "show how much of each file is in memory (page cache)",
        "Show each file's size and the pages of it resident in memory now (like\n"
        "vmtouch and fincore). Directories are walked. Nothing is read. PAGES is\n"
        "the resident pages, as in fincore; TOTAL_PAGES is the file's. Counts come\n"
        "from cachestat(2) on Linux 6.5+ (with the dirty, writeback and evicted\n"
        "columns), elsewhere from mincore(2) on a mapping, in bounded chunks.\n\n"
        "With -v, a residency map follows each file: each cell stands for an equal\n"
        f"share of the file's pages (one page each for files of up to {MAP_WIDTH} pages):\n"
        "'O' all resident, 'o' some, ' ' none.\n\n"
        "Linux tells the page cache of a file only to its owner or to who may\n"
        "write it; for other files info shows ? (null in JSON, with\n"
        "residency_known false), never a false 100%.\n\n" + column_help(),
        "  iommap info data.bin\n  iommap info -v data.bin\n  iommap info -s /var/lib/db\n"
        "  find . -name '*.idx' -print0 | iommap info -0 -b - --json",
    )
    add_walk_options(parser)
    add_table_options(parser, "info")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="add a residency map of each file"
    )
    parser.set_defaults(run=run_info)

    parser = new_parser(
        commands,
        "warm",
        "read files into the page cache",
        "Bring each file into the page cache: advise sequential access on its\n"
        "mapping (a range that ends before the end of the file, -p, is read\n"
        "exactly, with read-ahead off), then touch a byte of each page through\n"
        "iommap's SIGBUS-guarded\n"
        "copies, a chunk at a time, so\n"
        "every page is in memory when the command returns (as far as memory\n"
        "allows: the counts after say). A progress bar shows on a terminal for\n"
        f"files of {format_size(PROGRESS_MIN_BYTES)} and more. Ctrl-C prints what was "
        "done so far, then exits 130.\n\n" + column_help(),
        "  iommap warm data.bin\n  iommap warm -s /var/lib/db\n  iommap warm --json index/*.idx",
    )
    add_walk_options(parser)
    add_table_options(parser, "warm")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.set_defaults(run=run_warm)

    parser = new_parser(
        commands,
        "evict",
        "drop files from the page cache",
        "Drop each file's clean pages from the page cache with\n"
        "posix_fadvise(POSIX_FADV_DONTNEED), as vmtouch -e does. Dirty pages\n"
        "cannot go at once: the call starts writing them back, without waiting,\n"
        "and they stay cached until written (they then count as writeback, not\n"
        "dirty; no data is lost). --writeback waits for the write first\n"
        "(fdatasync), so they go too. Pages another process has mapped or locked\n"
        "stay. A file system kept in memory\n"
        "(tmpfs, ramfs) cannot drop its pages at all: evict says so on stderr.\n\n" + column_help(),
        "  iommap evict data.bin\n  iommap evict --writeback -s /var/lib/db",
    )
    add_walk_options(parser)
    add_table_options(parser, "evict")
    parser.add_argument(
        "--writeback",
        action="store_true",
        help="wait for dirty pages to be written back first (fdatasync), so they go too",
    )
    parser.set_defaults(run=run_evict)

    parser = new_parser(
        commands,
        "lock",
        "lock files in memory until stopped",
        "Map each file (with -p, only that part of it) and lock its pages in\n"
        "memory (mlock(2)), then wait until\n"
        "interrupted (Ctrl-C, SIGINT or SIGTERM) and release them. All or none:\n"
        "if one file cannot be locked, nothing stays locked and the exit status\n"
        "is 1. The message (or JSON document) printed once every file is locked\n"
        "tells a script it may go on. With --daemon, lock goes to the background\n"
        "once the files are locked (the command returns, the locker stays) and\n"
        "--pidfile names a file holding its pid, removed when it is stopped.\n"
        "Locking needs a locked-memory limit (`ulimit -l`) as large as what is\n"
        "locked, or CAP_IPC_LOCK.",
        "  iommap lock data.bin\n  iommap lock --json index/*.idx &\n"
        "  iommap lock -d -P /run/db-lock.pid /var/lib/db && kill $(cat /run/db-lock.pid)",
    )
    add_walk_options(parser, summary=False)
    parser.add_argument(
        "-d",
        "--daemon",
        action="store_true",
        help="once locked, go to the background; stop it with SIGTERM",
    )
    parser.add_argument(
        "-P", "--pidfile", metavar="PATH", help="write the locker's pid to PATH while it runs"
    )
    parser.set_defaults(run=run_lock)


def run_walk(
    args: argparse.Namespace,
    walk: pagecache.Walk,
    on_file: Callable[[pagecache.FileResidency], None] | None = None,
) -> int:
    """The one loop of info, warm and evict: each file's result or its error
    goes to the writer; Ctrl-C or SIGTERM ends the walk with what was done
    so far."""
    with Output() as out:
        try:
            writer = writer_for(args, out)  # writes nothing yet
            interrupted: KeyboardInterrupt | None = None
            with sigterm_interrupts() as stop:
                try:
                    for result in walk:
                        if isinstance(result, pagecache.FileError):
                            writer.error(result)
                        else:
                            writer.file(result)
                            if on_file is not None:
                                on_file(result)
                except KeyboardInterrupt as exc:
                    interrupted = exc
                    current = walk.current
                    if current is not None:
                        warn(f"interrupted at {shown(current)}", args.command)
                finally:
                    clear = getattr(args, "progress", None)
                    if clear is not None:
                        clear.clear()
                failure = list_error(args)
                if failure is not None:
                    writer.error(failure)
                stop.hold()  # the end of the output is written whole
                writer.finish(walk.totals, interrupted=interrupted is not None)
        except OutputError as error:
            if error.message:
                warn(error.message)
            return error.status
    if out.status:
        return out.status
    if isinstance(interrupted, Terminated):
        return EXIT_TERMINATED
    if interrupted is not None:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if writer.errors else EXIT_OK


def run_info(args: argparse.Namespace) -> int:
    check_paths_given(args)
    if not open_list(args):
        return EXIT_FAILED
    return run_walk(args, new_walk(args, "residency"))


def run_warm(args: argparse.Namespace) -> int:
    check_paths_given(args)
    if not open_list(args):
        return EXIT_FAILED
    progress = _toolkit.Progress(enabled=False if args.no_progress else None)
    args.progress = progress

    def on_progress(path: str | bytes, done: int, total: int) -> None:
        if total >= PROGRESS_MIN_BYTES:
            progress.bar(shown(path), done, total)

    return run_walk(args, new_walk(args, "warm", on_progress=on_progress))


def run_evict(args: argparse.Namespace) -> int:
    check_paths_given(args)
    if not open_list(args):
        return EXIT_FAILED
    noted: set[str] = set()

    def note_memory_fs(r: pagecache.FileResidency) -> None:
        if r.resident_pages:
            fs = pagecache.memory_filesystem(r.path)
            if fs is not None and fs not in noted:
                noted.add(fs)
                warn(
                    f"{shown(r.path)}: on {fs}, which keeps files only in memory: "
                    "its pages cannot be evicted",
                    "evict",
                )

    return run_walk(args, new_walk(args, "evict", writeback=args.writeback), note_memory_fs)


def run_lock(args: argparse.Namespace) -> int:
    from .lockd import run_lock

    return run_lock(args)
