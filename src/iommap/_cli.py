"""The page-cache commands: ``iommap info``, ``warm``, ``evict`` and ``lock``.

Modelled on vmtouch and util-linux fincore, and built on iommap itself: each
file is mapped read-only with :func:`iommap.open`; ``info`` reads its
residency with ``MappedFile.residency()`` (mincore), ``warm`` reads it through
``advise("willneed")`` and guarded ``readinto`` copies, ``evict`` drops it with
``advise("dontneed")`` and ``posix_fadvise(POSIX_FADV_DONTNEED)``, and ``lock``
maps it with ``lock=True`` (mlock) until interrupted.

Every command takes ``--json``: one JSON document on one line of stdout, with
the same fields whatever happens, and the errors in it too (they also go to
stderr).
"""

from __future__ import annotations

import argparse
import errno
import json
import mmap
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable, TextIO

import iommap

PAGE_SIZE = mmap.PAGESIZE
# Cells in a residency map line (info -v).
MAP_WIDTH = 64
# warm shows a progress bar on a terminal for files at least this large.
PROGRESS_MIN_BYTES = 64 << 20
# warm reads a file in chunks of this size (and advises each one first).
WARM_CHUNK = 8 << 20

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

EXIT_STATUS_HELP = """\
exit status:
  0    every file was processed
  1    some file could not be (missing, a directory, permission denied, ...);
       the others were still processed, except by lock, which locks all or none
  2    bad usage
  130  interrupted"""

MAIN_EPILOG = f"""\
examples:
  iommap info data.bin             how much of data.bin is in memory
  iommap info -v --json *.idx      per-file residency maps, as JSON
  iommap warm data.bin             read data.bin into the page cache
  iommap evict data.bin            drop it from the page cache
  iommap lock data.bin             keep it in memory until Ctrl-C
  iommap demo                      watch a SigbusError being survived
  iommap bench --quick             iommap against the standard library

'iommap COMMAND --help' tells more about each command.

{EXIT_STATUS_HELP}
"""

Record = dict[str, Any]


# ---- running a command ----------------------------------------------------


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command, turning Ctrl-C and a closed pipe into exit statuses."""
    try:
        return run(args)
    except KeyboardInterrupt:
        print("iommap: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`iommap info ... | head`). Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


class FileFailure(Exception):
    """A file a command could not process; the command goes on to the next."""

    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = reason
        self.message = message

    @classmethod
    def from_os_error(cls, path: str, exc: OSError) -> FileFailure:
        if isinstance(exc, iommap.Error):
            reason = exc.reason
        else:
            reason = errno.errorcode.get(exc.errno or 0, "oserror").lower()
        message = os.strerror(exc.errno) if exc.errno else str(exc)
        if reason == "sigbus":
            message = "the file shrank (or an I/O error struck) while it was being read"
        return cls(path, reason, message)


class Report:
    """Collects a command's per-file results and errors, and prints them."""

    def __init__(self, command: str, as_json: bool) -> None:
        self.command = command
        self.as_json = as_json
        self.files: list[Record] = []
        self.errors: list[Record] = []

    def fail(self, failure: FileFailure) -> None:
        self.errors.append(
            {"path": failure.path, "reason": failure.reason, "message": failure.message}
        )
        print(f"iommap {self.command}: {shown(failure.path)}: {failure.message}", file=sys.stderr)

    def document(self, **extra: Any) -> Record:
        return {
            "command": self.command,
            "page_size": PAGE_SIZE,
            **extra,
            "files": self.files,
            "errors": self.errors,
        }

    def print_json(self, **extra: Any) -> None:
        # One line: a script can read it with readline(), even from a command
        # (lock) that goes on running after printing it.
        json.dump(self.document(**extra), sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()

    def note_hidden(self) -> None:
        """Say once, on stderr, why some counts are '?'."""
        if not self.as_json and any(not f["residency_known"] for f in self.files):
            print(f"iommap {self.command}: {HIDDEN_NOTE}", file=sys.stderr)

    @property
    def status(self) -> int:
        return EXIT_FAILED if self.errors else EXIT_OK


def shown(path: str) -> str:
    """The path as it can be printed (undecodable bytes escaped)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def human(n: float) -> str:
    """A byte count in binary units: 512 B, 4.0 KiB, 1.5 GiB."""
    if n < 1024:
        return f"{int(n)} B"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    n /= 1024
    while n >= 1024 and len(units) > 1:
        n /= 1024
        units.pop(0)
    return f"{n:.1f} {units[0]}"


def page_count(size: int) -> int:
    return -(-size // PAGE_SIZE)


def percent(part: int | None, whole: int) -> float | None:
    if part is None:
        return None
    return round(100.0 * part / whole, 2) if whole else 0.0


def count_cell(n: int | None) -> str:
    return "?" if n is None else str(n)


def percent_cell(p: float | None) -> str:
    return "?" if p is None else f"{p:.1f}%"


def residency_visible(path: str) -> bool:
    """Whether mincore(2) tells this process the truth about the file's pages.

    Linux (since 5.0) reveals the page cache only for files the caller owns,
    could open for writing, or holds CAP_FOWNER over; for any other file it
    reports every page resident, which would read as a false 100%.
    """
    if not sys.platform.startswith("linux"):
        return True
    try:
        if os.stat(path).st_uid == os.geteuid():
            return True
        effective = os.access in os.supports_effective_ids
        if os.access(path, os.W_OK, effective_ids=effective):
            return True
    except OSError:
        return False
    return has_capability(3)  # CAP_FOWNER


def has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


HIDDEN_NOTE = (
    "residency shown as ?: Linux tells the page cache of a file only to its owner or to"
    " who may write it"
)


def open_file(path: str, *, lock: bool = False) -> iommap.MappedFile:
    """Map a file read-only, or raise FileFailure saying why not.

    iommap.open() decides what can be mapped (a regular file, a block device)
    without ever blocking, and names the type of what it refuses."""
    try:
        return iommap.open(path, "read", lock=lock)
    except OSError as exc:
        failure = FileFailure.from_os_error(path, exc)
        if failure.reason in ("enodev", "enxio") and exc.strerror:
            failure.message = exc.strerror.removeprefix("open: ")
        if lock and failure.reason in ("enomem", "eperm", "eagain"):
            failure.message += (
                " (mlock: the locked-memory limit, `ulimit -l`, is too low for this file;"
                " raise it, or run with CAP_IPC_LOCK)"
            )
        raise failure from None


def table_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Numbers right-aligned, the last column (the file) left as it is."""
    rows = list(rows)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]))
    return lines


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="regular files to work on")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document, on one line of stdout, instead of text",
    )


def new_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}\n\n{EXIT_STATUS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register info, warm, evict and lock with the main parser."""
    parser = new_parser(
        commands,
        "info",
        "show how much of each file is in memory (page cache)",
        "Show each file's size, pages, and the pages resident in memory now, as\n"
        "mincore(2) reports them (like vmtouch and fincore). Nothing is read: the\n"
        "files are mapped but not touched.\n\n"
        "With -v, a residency map follows each file: each cell stands for an equal\n"
        f"share of the file's pages (one page each for files of up to {MAP_WIDTH} pages):\n"
        "'O' all resident, 'o' some, ' ' none.\n\n"
        "Linux tells the page cache of a file only to its owner or to who may\n"
        "write it; for other files mincore(2) says every page is resident, so info\n"
        "shows ? for them (null in JSON, with residency_known false).",
        "  iommap info data.bin\n  iommap info -v data.bin\n  iommap info --json *.idx",
    )
    add_common(parser)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="add a residency map of each file"
    )
    parser.set_defaults(run=run_info)

    parser = new_parser(
        commands,
        "warm",
        "read files into the page cache",
        "Bring each file into the page cache: advise will-need on each chunk, then\n"
        "read it through iommap's SIGBUS-guarded copies, so every page is in memory\n"
        "when the command returns (as far as memory allows: the counts after say).\n"
        f"A progress bar shows on a terminal for files of {human(PROGRESS_MIN_BYTES)} "
        "and more.",
        "  iommap warm data.bin\n  iommap warm --json index/*.idx",
    )
    add_common(parser)
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.set_defaults(run=run_warm)

    parser = new_parser(
        commands,
        "evict",
        "drop files from the page cache",
        "Drop each file's pages from the page cache: advise don't-need on the\n"
        "mapping, write dirty pages back (fdatasync: a dirty page cannot be\n"
        "dropped), then posix_fadvise(POSIX_FADV_DONTNEED). Pages that another\n"
        "process has mapped or locked stay, and so do the pages of in-memory file\n"
        "systems (tmpfs): the counts after say what is left.",
        "  iommap evict data.bin\n  iommap evict --json *.idx",
    )
    add_common(parser)
    parser.set_defaults(run=run_evict)

    parser = new_parser(
        commands,
        "lock",
        "lock files in memory until interrupted",
        "Map each file and lock its pages in memory (mlock(2)), then wait until\n"
        "interrupted (Ctrl-C, SIGINT or SIGTERM) and release them. All or none:\n"
        "if one file cannot be locked, nothing stays locked and the exit status\n"
        "is 1. The message (or JSON document) printed once every file is locked\n"
        "tells a script it may go on. Locking needs a locked-memory limit\n"
        "(`ulimit -l`) as large as the files, or CAP_IPC_LOCK.",
        "  iommap lock data.bin\n  iommap lock --json index/*.idx &",
    )
    add_common(parser)
    parser.set_defaults(run=run_lock)


# ---- info -------------------------------------------------------------------


def residency_map(residency: bytes, width: int = MAP_WIDTH) -> str:
    """One cell per share of the pages: 'O' all resident, 'o' some, ' ' none."""
    pages = len(residency)
    cells = min(width, pages)
    out = []
    for i in range(cells):
        start, end = i * pages // cells, (i + 1) * pages // cells
        absent = residency.count(0, start, end)
        out.append(" " if absent == end - start else "o" if absent else "O")
    return "".join(out)


def resident_ranges(residency: bytes) -> list[list[int]]:
    """[first, end) page ranges of resident pages."""
    ranges = []
    start = residency.find(1)
    while start >= 0:
        end = residency.find(0, start)
        if end < 0:
            end = len(residency)
        ranges.append([start, end])
        start = residency.find(1, end)
    return ranges


def run_info(args: argparse.Namespace) -> int:
    report = Report("info", args.json)
    maps = []
    for path in args.files:
        residency: bytes | None = None
        resident: int | None = None
        try:
            with open_file(path) as m:
                size = len(m)
                known = residency_visible(path)
                if known and args.verbose:
                    residency = m.residency()
                    resident = len(residency) - residency.count(0)
                elif known:
                    resident = m.resident() // PAGE_SIZE
        except FileFailure as failure:
            report.fail(failure)
            continue
        except OSError as exc:
            report.fail(FileFailure.from_os_error(path, exc))
            continue
        pages = page_count(size)
        record: Record = {
            "path": path,
            "size": size,
            "pages": pages,
            "residency_known": known,
            "resident_pages": resident,
            "resident_bytes": resident_bytes(resident, size),
            "percent": percent(resident, pages),
        }
        if args.verbose:
            record["map"] = None if residency is None else residency_map(residency)
            record["resident_ranges"] = None if residency is None else resident_ranges(residency)
            maps.append("?" * min(MAP_WIDTH, pages) if residency is None else record["map"])
        report.files.append(record)

    if args.json:
        report.print_json()
    elif report.files:
        rows = [
            [
                human(f["size"]),
                str(f["pages"]),
                count_cell(f["resident_pages"]),
                percent_cell(f["percent"]),
                shown(f["path"]),
            ]
            for f in report.files
        ]
        lines = table_lines(["SIZE", "PAGES", "RESIDENT", "%", "FILE"], rows)
        print(lines[0])
        for i, line in enumerate(lines[1:]):
            print(line)
            if args.verbose:
                print(f"[{maps[i]}]")
    report.note_hidden()
    return report.status


# ---- warm -------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal; does nothing elsewhere."""

    def __init__(self, label: str, total: int, stream: TextIO, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.enabled = enabled and total >= PROGRESS_MIN_BYTES and stream.isatty()
        self.shown_at = 0.0
        self.width = 0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.shown_at < 0.1 and done < self.total):
            return
        self.shown_at = now
        columns = shutil.get_terminal_size().columns
        fraction = done / self.total
        tail = f" {100 * fraction:5.1f}%  {human(done)} / {human(self.total)}"
        bar_width = 30
        label = self.label
        room = columns - 1 - len(tail) - bar_width - 3
        if len(label) > room:
            label = "..." + label[-max(room - 3, 0) :] if room > 3 else ""
        filled = int(bar_width * fraction)
        line = f"{label} [{'#' * filled}{'.' * (bar_width - filled)}]{tail}"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def warm_one(m: iommap.MappedFile, label: str, scratch: bytearray, show_progress: bool) -> None:
    size = len(m)
    buffer = memoryview(scratch)
    progress = Progress(label, size, sys.stderr, show_progress)
    try:
        offset = 0
        while offset < size:
            n = min(len(scratch), size - offset)
            # Start the read-ahead for the chunk, then wait for it by reading.
            m.advise(offset, n, "willneed")
            m.readinto(offset, buffer[:n])
            offset += n
            progress.update(offset)
    finally:
        progress.close()


def resident_pages(m: iommap.MappedFile, known: bool) -> int | None:
    return m.resident() // PAGE_SIZE if known else None


def resident_bytes(pages: int | None, size: int) -> int | None:
    return None if pages is None else min(pages * PAGE_SIZE, size)


def run_warm(args: argparse.Namespace) -> int:
    report = Report("warm", args.json)
    scratch = bytearray(WARM_CHUNK)
    for path in args.files:
        started = time.monotonic()
        try:
            with open_file(path) as m:
                known = residency_visible(path)
                before = resident_pages(m, known)
                warm_one(m, shown(path), scratch, not args.no_progress)
                after = resident_pages(m, known)
                size = len(m)
        except FileFailure as failure:
            report.fail(failure)
            continue
        except OSError as exc:
            report.fail(FileFailure.from_os_error(path, exc))
            continue
        report.files.append(
            moved_record(path, size, before, after, seconds=round(time.monotonic() - started, 4))
        )
    print_moved(report, args)
    return report.status


def moved_record(
    path: str, size: int, before: int | None, after: int | None, **extra: Any
) -> Record:
    pages = page_count(size)
    return {
        "path": path,
        "size": size,
        "pages": pages,
        "residency_known": after is not None,
        "resident_pages_before": before,
        "resident_pages": after,
        "resident_bytes": resident_bytes(after, size),
        "percent": percent(after, pages),
        **extra,
    }


def print_moved(report: Report, args: argparse.Namespace) -> None:
    """warm's and evict's output: residency before and after, per file."""
    if args.json:
        report.print_json()
        return
    if not report.files:
        return
    rows = [
        [
            human(f["size"]),
            str(f["pages"]),
            count_cell(f["resident_pages_before"]),
            count_cell(f["resident_pages"]),
            percent_cell(f["percent"]),
            shown(f["path"]),
        ]
        for f in report.files
    ]
    print("\n".join(table_lines(["SIZE", "PAGES", "BEFORE", "RESIDENT", "%", "FILE"], rows)))
    report.note_hidden()


# ---- evict ------------------------------------------------------------------


def drop_from_cache(path: str) -> None:
    """Write the file's dirty pages back, then ask the kernel to drop its pages."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        flush = getattr(os, "fdatasync", os.fsync)
        try:
            flush(fd)
        except OSError:
            pass  # a file system that cannot flush: drop what is clean
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_evict(args: argparse.Namespace) -> int:
    report = Report("evict", args.json)
    for path in args.files:
        try:
            with open_file(path) as m:
                known = residency_visible(path)
                before = resident_pages(m, known)
                m.advise(0, 0, "dontneed")
                drop_from_cache(path)
                after = resident_pages(m, known)
                size = len(m)
        except FileFailure as failure:
            report.fail(failure)
            continue
        except OSError as exc:
            report.fail(FileFailure.from_os_error(path, exc))
            continue
        report.files.append(moved_record(path, size, before, after))
    print_moved(report, args)
    return report.status


# ---- lock -------------------------------------------------------------------


def run_lock(args: argparse.Namespace) -> int:
    report = Report("lock", args.json)
    handles: list[iommap.MappedFile] = []
    try:
        for path in args.files:
            try:
                m = open_file(path, lock=True)
            except FileFailure as failure:
                report.fail(failure)
                break
            handles.append(m)
            size = len(m)
            report.files.append(
                {"path": path, "size": size, "pages": page_count(size), "locked_bytes": size}
            )
        if report.errors:
            if args.json:
                report.files = []
                report.print_json(pid=os.getpid(), locked=False)
            return EXIT_FAILED

        # Block the stop signals before saying we are ready, then wait for one:
        # a script may signal as soon as it reads the message, and a signal
        # that comes before the wait stays pending instead of being missed.
        stop = {signal.SIGINT, signal.SIGTERM}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        try:
            total = sum(f["size"] for f in report.files)
            if args.json:
                report.print_json(pid=os.getpid(), locked=True)
            else:
                count = len(handles)
                print(
                    f"locked {count} file{'s' if count != 1 else ''}, {human(total)} in memory "
                    f"(pid {os.getpid()}); Ctrl-C to release",
                    flush=True,
                )
            signal.sigwait(stop)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if not args.json:
            print("released", flush=True)
        return EXIT_OK
    finally:
        for m in handles:
            m.close()
