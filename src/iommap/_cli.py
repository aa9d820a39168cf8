"""The page-cache commands: ``iommap info``, ``warm``, ``evict`` and ``lock``.

A thin layer over :mod:`iommap.pagecache`: the options of vmtouch and
util-linux fincore under iommap's names, a table (or fincore's raw form, or
one JSON document) on stdout, errors on stderr, and exit statuses a script
can rely on. ``docs/cli.md`` maps every vmtouch flag and fincore option to
its iommap name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any, Callable, NoReturn

from . import _toolkit, pagecache
from ._toolkit import format_size

PAGE_SIZE = _toolkit.PAGE_SIZE
# Cells in a residency map line (info -v).
MAP_WIDTH = 64
# warm shows a progress bar on a terminal for files at least this large.
PROGRESS_MIN_BYTES = 64 << 20

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# What a shell reports for a C tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

PAGE_COMMANDS = ("info", "warm", "evict", "lock")

EXIT_STATUS_HELP = """\
exit status:
  0    every file was processed
  1    some file could not be (missing, permission denied, ...), or the
       output could not be written; the other files were still processed,
       except by lock, which locks all or none
  2    bad usage
  130  interrupted (Ctrl-C); what was done so far is printed first
  141  the reader of the output went away (a closed pipe)"""

MAIN_EPILOG = f"""\
examples:
  iommap info data.bin             how much of data.bin is in memory
  iommap info -s /var/lib/db       totals for a whole tree
  iommap info -v --json *.idx      per-file residency maps, as JSON
  iommap warm data.bin             read data.bin into the page cache
  iommap evict data.bin            drop it from the page cache
  iommap lock data.bin             keep it in memory until Ctrl-C
  iommap demo                      watch a SigbusError being survived
  iommap bench --quick             iommap against the standard library

'iommap COMMAND --help' tells more about each command.

{EXIT_STATUS_HELP}
"""

HIDDEN_NOTE = (
    "residency shown as ?: Linux tells the page cache of a file only to its owner or to"
    " who may write it"
)


# ---- usage errors --------------------------------------------------------------------


class UsageError(Exception):
    """Bad usage of one (sub)command; carries the parser to show the usage of."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises instead of exiting, so the caller
    can show the sub-command's usage (or a JSON error document)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; arguments no parser knows are blamed on the sub-command
    they follow, whose usage is then shown (argparse blames the main one)."""
    # vmtouch writes `-p -5M` (the first 5 MiB); argparse would take -5M for
    # an option, since -0 is one.
    fixed: list[str] = []
    for arg in argv:
        if fixed and fixed[-1] in ("-p", "--range") and arg.startswith("-"):
            fixed[-1] = f"--range={arg}"
        else:
            fixed.append(arg)
    args, extra = parser.parse_known_args(fixed)
    if extra:
        owner: argparse.ArgumentParser = getattr(args, "parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def report_usage_error(error: UsageError, argv: Sequence[str]) -> int:
    """Print a usage error as the command's output format asks; return 2."""
    parser = error.parser
    command = parser.prog.split()[-1] if " " in parser.prog else None
    err = sys.stderr
    if err is not None:
        err.write(parser.format_usage())
        err.write(f"{parser.prog}: error: {error.message}\n")
    if command in PAGE_COMMANDS and ("--json" in argv or "-J" in argv):
        doc = {
            "command": command,
            "error": {"reason": "usage", "message": error.message},
            "usage": parser.format_usage().strip(),
        }
        with Output() as out:
            out.write(_dumps(doc) + "\n")
        return out.status or EXIT_USAGE
    return EXIT_USAGE


# ---- output --------------------------------------------------------------------------


class OutputError(Exception):
    """stdout cannot take the output; ``status`` is the exit status to use."""

    def __init__(self, status: int, message: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Output:
    """stdout, with every way it can fail turned into a message and a status.

    - a closed pipe (``| head``): no message, exit 141 as a C tool would;
    - a full device (``> /dev/full``), an I/O error: one message, exit 1;
    - stdout closed (``>&-``): one message, exit 1;
    - a name the output's encoding cannot show: written escaped
      (``\\xe9``), as ``ls`` does, never an exception.

    After a failure, stdout is pointed at /dev/null so the interpreter's last
    flush cannot fail again.
    """

    def __init__(self) -> None:
        self.stream: IO[str] | None = sys.stdout
        self.status = 0
        if self.stream is not None:
            reconfigure = getattr(self.stream, "reconfigure", None)
            if reconfigure is not None:
                try:
                    reconfigure(errors="backslashreplace")
                except (ValueError, OSError):
                    pass

    def write(self, text: str) -> None:
        if self.stream is None:
            raise OutputError(EXIT_FAILED, "cannot write output: standard output is closed")
        with self._failing():
            self.stream.write(text)

    def flush(self) -> None:
        if self.stream is None:
            return
        with self._failing():
            self.stream.flush()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Turn a failed write or flush into the exit status it means."""
        try:
            yield
        except BrokenPipeError:
            self._silence()
            raise OutputError(EXIT_BROKEN_PIPE, None) from None
        except (OSError, ValueError) as exc:
            self._silence()
            raise OutputError(EXIT_FAILED, f"cannot write output: {describe(exc)}") from None

    def _silence(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.flush()
            except OutputError as error:
                self.status = error.status
                if error.message:
                    warn(error.message)


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc)


def warn(message: str) -> None:
    if sys.stderr is not None:
        try:
            sys.stderr.write(f"iommap: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def shown(path: str | bytes) -> str:
    """The path as it can be printed (undecodable bytes as \\xNN escapes)."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def raw_cell(text: str) -> str:
    """A cell for --raw, where a space separates cells: spaces and control
    characters escaped as \\xNN, as fincore's raw output does."""
    return "".join(f"\\x{ord(c):02x}" if c <= " " or c == "\x7f" else c for c in text)


def json_path(path: str | bytes) -> dict[str, str]:
    """``path``, plus ``path_base64`` (the exact bytes) when the name is not
    valid UTF-8 and ``path`` can only show it escaped."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    try:
        return {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "path": raw.decode("utf-8", "backslashreplace"),
            "path_base64": _b64(raw),
        }


def _dumps(obj: Any) -> str:
    """json.dumps, imported when a command prints JSON: a plain `info` starts
    faster without it."""
    import json

    return json.dumps(obj)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


# ---- columns -------------------------------------------------------------------------


def count_cell(n: int | None) -> str:
    return "?" if n is None else str(n)


def bytes_cell(n: int | None, exact: bool) -> str:
    if n is None:
        return "?"
    return str(n) if exact else format_size(n)


def pages_bytes(n: int | None) -> int | None:
    return None if n is None else n * PAGE_SIZE


Getter = Callable[[pagecache.FileResidency, bool], str]

# Column name -> (what it shows, cell maker). fincore's names where fincore
# has the column; PAGES is the resident pages, as in fincore.
COLUMNS: dict[str, tuple[str, Getter]] = {
    "RES": ("file data resident in memory, in bytes", lambda r, b: bytes_cell(r.resident_bytes, b)),
    "PAGES": ("file data resident in memory, in pages", lambda r, b: count_cell(r.resident_pages)),
    "SIZE": ("size of the file", lambda r, b: bytes_cell(r.size, b)),
    "FILE": ("file name", lambda r, b: shown(r.path)),
    "TOTAL_PAGES": (
        "pages of the file (of the range, with --range)",
        lambda r, b: str(r.total_pages),
    ),
    "PERCENT": (
        "resident pages, as a percentage of TOTAL_PAGES",
        lambda r, b: "?" if r.percent is None else f"{r.percent:.1f}%",
    ),
    "BEFORE": (
        "resident pages before warm or evict",
        lambda r, b: count_cell(r.resident_pages_before),
    ),
    "DIRTY_PAGES": ("pages not yet written back", lambda r, b: count_cell(r.dirty_pages)),
    "DIRTY": (
        "bytes not yet written back",
        lambda r, b: bytes_cell(pages_bytes(r.dirty_pages), b),
    ),
    "WRITEBACK_PAGES": ("pages being written back", lambda r, b: count_cell(r.writeback_pages)),
    "WRITEBACK": (
        "bytes being written back",
        lambda r, b: bytes_cell(pages_bytes(r.writeback_pages), b),
    ),
    "EVICTED_PAGES": ("pages evicted from the cache", lambda r, b: count_cell(r.evicted_pages)),
    "EVICTED": (
        "bytes evicted from the cache",
        lambda r, b: bytes_cell(pages_bytes(r.evicted_pages), b),
    ),
    "RECENTLY_EVICTED_PAGES": (
        "evicted pages that would still be cached with more memory",
        lambda r, b: count_cell(r.recently_evicted_pages),
    ),
    "RECENTLY_EVICTED": (
        "bytes evicted that would still be cached with more memory",
        lambda r, b: bytes_cell(pages_bytes(r.recently_evicted_pages), b),
    ),
}
DEFAULT_COLUMNS = {
    "info": ["SIZE", "TOTAL_PAGES", "PAGES", "RES", "PERCENT", "FILE"],
    "warm": ["SIZE", "TOTAL_PAGES", "BEFORE", "PAGES", "RES", "PERCENT", "FILE"],
    "evict": ["SIZE", "TOTAL_PAGES", "BEFORE", "PAGES", "RES", "PERCENT", "FILE"],
}
LEFT_COLUMNS = {"FILE"}


def parse_columns(text: str) -> list[str]:
    """``-o``: comma-separated names; ``+NAMES`` adds to the defaults, as fincore."""
    names = [n.strip().upper() for n in text.lstrip("+").split(",") if n.strip()]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown column: {', '.join(unknown) or repr(text)} (known: {', '.join(COLUMNS)})"
        )
    return ["+", *names] if text.startswith("+") else names


def parse_size_arg(text: str) -> int:
    try:
        return _toolkit.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_range(text: str) -> tuple[int, int | None]:
    """vmtouch's ``-p``: ``LO-HI``, ``LO-``, ``-HI``, ``-``, or ``SIZE`` (=
    ``-SIZE``, the first SIZE bytes) -> (offset, length or None)."""
    try:
        if "-" not in text:
            return 0, _toolkit.parse_size(text, allow_zero=True)
        lo_text, _, hi_text = text.partition("-")
        lo = _toolkit.parse_size(lo_text, allow_zero=True) if lo_text.strip() else 0
        if not hi_text.strip():
            return lo, None
        hi = _toolkit.parse_size(hi_text, allow_zero=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; a range is LO-HI, LO-, -HI or SIZE") from None
    if hi < lo:
        raise argparse.ArgumentTypeError(f"the range ends before it starts: {text!r}")
    return lo, hi - lo


# ---- parsers ------------------------------------------------------------------------


def new_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}\n\n{EXIT_STATUS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser, command=name)
    return parser


def add_flag(group: argparse._ActionsContainer, *names: str, help: str) -> None:
    """An option that takes no value and is False unless given."""
    group.add_argument(*names, action="store_true", help=help)


def add_walk_options(parser: argparse.ArgumentParser) -> None:
    """The file selection every page command shares (vmtouch's crawl)."""
    parser.add_argument(
        "files",
        nargs="*",
        metavar="PATH",
        help="files, and directories to walk (recursively); - is not stdin, see -b",
    )
    group = parser.add_argument_group("choosing files (as vmtouch)")
    add_flag(
        group,
        "-f",
        "--follow-symlinks",
        help="follow symlinks met inside directories (those named are always followed)",
    )
    add_flag(
        group, "-F", "--one-file-system", help="do not enter directories on another file system"
    )
    group.add_argument(
        "-i",
        "--ignore",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out files and directories whose name matches (shell pattern; repeatable)",
    )
    group.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only files whose name matches (shell pattern; repeatable)",
    )
    group.add_argument(
        "-m",
        "--max-size",
        type=parse_size_arg,
        metavar="SIZE",
        help="leave out files larger than SIZE (4096, 4K, 100M, 1.5G)",
    )
    group.add_argument(
        "-b",
        "--files-from",
        metavar="LIST",
        help="read more paths from the file LIST (- for stdin), one a line",
    )
    add_flag(
        group,
        "-0",
        "--null",
        help="paths in LIST end with a NUL byte, not a newline (find -print0)",
    )
    add_flag(
        group,
        "--count-hard-links",
        help="count a file each time it is reached (by default an inode counts once)",
    )
    group.add_argument(
        "-p",
        "--range",
        type=parse_range,
        metavar="RANGE",
        help="only this part of each file: LO-HI, LO-, -HI or SIZE (the first SIZE bytes)",
    )
    out = parser.add_argument_group("output")
    add_flag(
        out, "-J", "--json", help="print one JSON document, on one line of stdout, instead of text"
    )
    add_flag(
        out,
        "-q",
        "--quiet",
        help="print nothing on stdout but --json's document (errors still go to stderr)",
    )
    add_flag(
        out,
        "-s",
        "--summary",
        help="print only the totals, not a line per file (vmtouch's default output)",
    )


def add_table_options(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("table (as fincore)")
    group.add_argument(
        "-o",
        "--output",
        type=parse_columns,
        metavar="COLUMNS",
        help=f"columns to show, comma-separated, or +COLUMNS to add to the default "
        f"({','.join(DEFAULT_COLUMNS[command])}); see the list below",
    )
    group.add_argument(
        "--bytes", action="store_true", help="sizes in bytes rather than in KiB, MiB, ..."
    )
    group.add_argument(
        "-r", "--raw", action="store_true", help="cells separated by one space, not aligned"
    )
    group.add_argument("-n", "--noheadings", action="store_true", help="no header line")


def column_help() -> str:
    width = max(len(n) for n in COLUMNS)
    rows = "\n".join(f"  {name:>{width}}  {text}" for name, (text, _) in COLUMNS.items())
    return f"columns (-o):\n{rows}"


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
        "mapping, then touch a byte of each page through iommap's SIGBUS-guarded\n"
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
        "posix_fadvise(POSIX_FADV_DONTNEED), as vmtouch -e does: dirty pages are\n"
        "not written back first (no forced I/O) and stay until the kernel writes\n"
        "them; --writeback writes them first (fdatasync) so they go too. Pages\n"
        "another process has mapped or locked stay. A file system kept in memory\n"
        "(tmpfs, ramfs) cannot drop its pages at all: evict says so on stderr.\n\n" + column_help(),
        "  iommap evict data.bin\n  iommap evict --writeback -s /var/lib/db",
    )
    add_walk_options(parser)
    add_table_options(parser, "evict")
    parser.add_argument(
        "--writeback",
        action="store_true",
        help="write dirty pages back first (fdatasync), so they can be dropped too",
    )
    parser.set_defaults(run=run_evict)

    parser = new_parser(
        commands,
        "lock",
        "lock files in memory until stopped",
        "Map each file and lock its pages in memory (mlock(2)), then wait until\n"
        "interrupted (Ctrl-C, SIGINT or SIGTERM) and release them. All or none:\n"
        "if one file cannot be locked, nothing stays locked and the exit status\n"
        "is 1. The message (or JSON document) printed once every file is locked\n"
        "tells a script it may go on. With --daemon, lock goes to the background\n"
        "once the files are locked (the command returns, the locker stays) and\n"
        "--pidfile names a file holding its pid, removed when it is stopped.\n"
        "Locking needs a locked-memory limit (`ulimit -l`) as large as the\n"
        "files, or CAP_IPC_LOCK.",
        "  iommap lock data.bin\n  iommap lock --json index/*.idx &\n"
        "  iommap lock -d -P /run/db-lock.pid /var/lib/db && kill $(cat /run/db-lock.pid)",
    )
    add_walk_options(parser)
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


# ---- reading the paths -----------------------------------------------------------------


def read_list(source: IO[bytes], nul: bool) -> Iterator[str]:
    """Paths from a list, streamed as they arrive (a pipe from a running
    `find` is read as it writes): NUL- or newline-separated, empty entries
    skipped, bytes that are not UTF-8 kept exactly (surrogateescape)."""
    sep = b"\0" if nul else b"\n"
    read = getattr(source, "read1", source.read)
    pending = b""
    while True:
        block = read(1 << 16)
        if not block:
            break
        pending += block
        *complete, pending = pending.split(sep)
        for item in complete:
            if item:
                yield os.fsdecode(item)
    if pending:
        yield os.fsdecode(pending)


def paths_of(args: argparse.Namespace) -> Iterator[str]:
    yield from args.files
    source: IO[bytes] | None = getattr(args, "list_source", None)
    if source is not None:
        try:
            yield from read_list(source, args.null)
        finally:
            if source is not getattr(sys.stdin, "buffer", None):
                source.close()


def open_list(args: argparse.Namespace) -> bool:
    """Open -b's list before the walk starts; False (and a message) if it
    cannot be read."""
    args.list_source = None
    if args.files_from is None:
        return True
    if args.files_from == "-":
        args.list_source = sys.stdin.buffer if sys.stdin is not None else None
        return True
    try:
        args.list_source = open(args.files_from, "rb")
    except OSError as exc:
        warn_command(args.command, f"{shown(args.files_from)}: {describe(exc)}")
        return False
    return True


def check_paths_given(args: argparse.Namespace) -> None:
    if not args.files and args.files_from is None:
        args.parser.error("no PATH given (name files or directories, or use -b LIST)")
    if args.null and args.files_from is None:
        args.parser.error("-0/--null needs -b/--files-from")


def new_walk(args: argparse.Namespace, action: str, **extra: Any) -> pagecache.Walk:
    offset, length = args.range if args.range is not None else (0, None)
    return pagecache.walk(
        paths_of(args),
        action,
        offset=offset,
        length=length,
        follow_symlinks=args.follow_symlinks,
        one_filesystem=args.one_file_system,
        ignore=args.ignore,
        include=args.include,
        max_size=args.max_size,
        count_hard_links=args.count_hard_links,
        **extra,
    )


# ---- the page commands ------------------------------------------------------------------


def error_line(command: str, failure: pagecache.FileError) -> None:
    warn_text = f"iommap {command}: {shown(failure.path)}: {failure.message}"
    if sys.stderr is not None:
        try:
            sys.stderr.write(warn_text + "\n")
        except (OSError, ValueError):
            pass


def record_of(r: pagecache.FileResidency, command: str) -> dict[str, Any]:
    rec: dict[str, Any] = {
        **json_path(r.path),
        "size": r.size,
        "offset": r.offset,
        "length": r.length,
        "total_pages": r.total_pages,
        "residency_known": r.known,
        "resident_pages": r.resident_pages,
        "resident_bytes": r.resident_bytes,
        "percent": r.percent,
        "dirty_pages": r.dirty_pages,
        "writeback_pages": r.writeback_pages,
        "evicted_pages": r.evicted_pages,
        "recently_evicted_pages": r.recently_evicted_pages,
    }
    if command in ("warm", "evict"):
        rec["resident_pages_before"] = r.resident_pages_before
    return rec


def totals_record(t: pagecache.Totals) -> dict[str, Any]:
    return {**t._asdict(), "percent": t.percent}


def summary_line(t: pagecache.Totals, interrupted: bool) -> str:
    parts = [f"files {t.files}", f"directories {t.directories}"]
    if t.skipped:
        parts.append(f"skipped {t.skipped}")
    if t.errors:
        parts.append(f"errors {t.errors}")
    parts.append(
        f"resident {t.resident_pages}/{t.total_pages} pages, "
        f"{format_size(t.resident_bytes)}/{format_size(t.size)}, {t.percent:.1f}%"
    )
    if t.unknown:
        parts.append(f"unknown {t.unknown}")
    parts.append(f"elapsed {t.seconds:.3f} s")
    if interrupted:
        parts.append("interrupted")
    return "  ".join(parts)


class Printer:
    """A page command's output: the table, the raw lines or the JSON document,
    built as results come in. JSON and raw lines stream out as they come
    (memory bounded); the aligned table needs every row for its widths."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.command: str = args.command
        self.json: bool = args.json
        self.quiet: bool = args.quiet and not args.json
        self.summary_only: bool = args.summary
        self.errors: list[dict[str, Any]] = []
        self.rows: list[list[str]] = []
        self.maps: list[str] = []
        self.unknown = False
        self.first = True
        self.verbose = bool(getattr(args, "verbose", False))
        columns: list[str] = getattr(args, "output", None) or DEFAULT_COLUMNS[self.command]
        if columns[0] == "+":
            columns = DEFAULT_COLUMNS[self.command] + [c for c in columns[1:]]
        self.columns = columns
        self.getters = [COLUMNS[c][1] for c in columns]
        self.exact = bool(getattr(args, "bytes", False))
        self.raw = bool(getattr(args, "raw", False))
        self.headings = not getattr(args, "noheadings", False)
        if self.json:
            head = {"command": self.command, "page_size": PAGE_SIZE}
            self.out.write(_dumps(head)[:-1] + ', "files": [')

    def file(self, r: pagecache.FileResidency) -> None:
        if not r.known:
            self.unknown = True
        if self.json:
            rec = record_of(r, self.command)
            if self.verbose:
                self.add_map(r, rec)
            self.out.write(("" if self.first else ", ") + _dumps(rec))
            self.first = False
            return
        if self.quiet or self.summary_only:
            return
        cells = [get(r, self.exact) for get in self.getters]
        if self.raw:
            if self.first and self.headings:
                self.out.write(" ".join(self.columns) + "\n")
            self.out.write(" ".join(raw_cell(c) for c in cells) + "\n")
            self.first = False
            if self.verbose:
                self.out.write(f"[{self.map_of(r)}]\n")
            return
        self.rows.append(cells)
        if self.verbose:
            self.maps.append(self.map_of(r))

    def map_of(self, r: pagecache.FileResidency) -> str:
        if not r.known:
            return "?" * min(MAP_WIDTH, r.total_pages)
        try:
            return pagecache.residency_map(r.path, MAP_WIDTH, offset=r.offset, length=r.length)
        except OSError:
            return "?" * min(MAP_WIDTH, r.total_pages)

    def add_map(self, r: pagecache.FileResidency, rec: dict[str, Any]) -> None:
        if not r.known:
            rec["map"] = None
            rec["resident_ranges"] = None
            return
        rec["map"] = self.map_of(r)
        try:
            rec["resident_ranges"] = [
                list(x) for x in pagecache.resident_ranges(r.path, offset=r.offset, length=r.length)
            ]
        except OSError:
            rec["resident_ranges"] = None

    def error(self, failure: pagecache.FileError) -> None:
        error_line(self.command, failure)
        self.errors.append(
            {**json_path(failure.path), "reason": failure.reason, "message": failure.message}
        )

    def finish(self, totals: pagecache.Totals, *, interrupted: bool = False, **extra: Any) -> None:
        """The end of the output: the table (if kept back), totals, notes."""
        if self.json:
            tail = {
                "errors": self.errors,
                "totals": totals_record(totals),
                "interrupted": interrupted,
                **extra,
            }
            self.out.write("], " + _dumps(tail)[1:] + "\n")
            self.out.flush()
            return
        if not self.quiet:
            if self.rows:
                header = self.columns if self.headings else None
                align = "".join("l" if c in LEFT_COLUMNS else "r" for c in self.columns)
                lines = _toolkit.render_table(header, self.rows, align=align)
                start = 1 if header is not None else 0
                text = lines[:start]
                for i, line in enumerate(lines[start:]):
                    text.append(line)
                    if self.verbose:
                        text.append(f"[{self.maps[i]}]")
                self.out.write("\n".join(text) + "\n")
            several = totals.files + totals.errors > 1 or totals.directories > 0
            # -r and -n are for scripts, which want the rows alone (unless -s).
            plain = not self.raw and self.headings
            if self.summary_only or (several and plain) or interrupted:
                self.out.write(summary_line(totals, interrupted) + "\n")
        self.out.flush()
        if self.unknown:
            warn_command(self.command, HIDDEN_NOTE)


def warn_command(command: str, message: str) -> None:
    if sys.stderr is not None:
        try:
            sys.stderr.write(f"iommap {command}: {message}\n")
        except (OSError, ValueError):
            pass


def run_walk(
    args: argparse.Namespace,
    walk: pagecache.Walk,
    on_file: Callable[[pagecache.FileResidency], None] | None = None,
) -> int:
    """The one loop of info, warm and evict: each file's result or its error
    goes to the printer; Ctrl-C ends the walk with what was done so far."""
    with Output() as out:
        try:
            printer = Printer(args, out)
            interrupted = False
            try:
                for result in walk:
                    if isinstance(result, pagecache.FileError):
                        printer.error(result)
                    else:
                        printer.file(result)
                        if on_file is not None:
                            on_file(result)
            except KeyboardInterrupt:
                interrupted = True
                current = walk.current
                if current is not None:
                    warn_command(args.command, f"interrupted at {shown(current)}")
            finally:
                clear = getattr(args, "progress", None)
                if clear is not None:
                    clear.clear()
            printer.finish(walk.totals, interrupted=interrupted)
        except OutputError as error:
            if error.message:
                warn(error.message)
            return error.status
    if out.status:
        return out.status
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if printer.errors else EXIT_OK


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
                warn_command(
                    "evict",
                    f"{shown(r.path)}: on {fs}, which keeps files only in memory: "
                    "its pages cannot be evicted",
                )

    return run_walk(args, new_walk(args, "evict", writeback=args.writeback), note_memory_fs)


# ---- lock -------------------------------------------------------------------------------


def run_lock(args: argparse.Namespace) -> int:
    check_paths_given(args)
    if not open_list(args):
        return EXIT_FAILED
    walk = new_walk(args, "residency")
    paths: list[str | bytes] = []
    errors: list[pagecache.FileError] = []
    for result in walk:
        if isinstance(result, pagecache.FileError):
            errors.append(result)
            error_line("lock", result)
            break
        paths.append(result.path)
    locked: pagecache.Locked | None = None
    if not errors:
        try:
            locked = pagecache.lock(paths)
        except OSError as exc:
            failure = pagecache.FileError.from_exception(getattr(exc, "filename", None) or "", exc)
            if failure.reason in ("enomem", "eperm", "eagain"):
                failure = failure._replace(
                    message=failure.message
                    + " (mlock: the locked-memory limit, `ulimit -l`, is too low for these"
                    " files; raise it, or run with CAP_IPC_LOCK)"
                )
            errors.append(failure)
            error_line("lock", failure)
    if locked is None:
        if args.json:
            doc = {
                "command": "lock",
                "page_size": PAGE_SIZE,
                "pid": os.getpid(),
                "locked": False,
                "files": [],
                "errors": [
                    {**json_path(e.path), "reason": e.reason, "message": e.message} for e in errors
                ],
            }
            with Output() as out:
                try:
                    out.write(_dumps(doc) + "\n")
                except OutputError:
                    pass
        return EXIT_FAILED
    with locked:
        return hold(args, locked)


def hold(args: argparse.Namespace, locked: pagecache.Locked) -> int:
    """Say the files are locked, then wait for a stop signal (in the
    background with --daemon), and release them."""
    stop = {signal.SIGINT, signal.SIGTERM}
    # Block the stop signals before saying we are ready, then wait for one:
    # a script may signal as soon as it reads the message, and a signal that
    # comes before the wait stays pending instead of being missed.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        if args.daemon:
            return daemonize(args, locked, stop)
        if args.pidfile:
            write_pidfile(args.pidfile, os.getpid())
        try:
            announce(args, locked, os.getpid())
            signal.sigwait(stop)
        finally:
            if args.pidfile:
                remove_pidfile(args.pidfile)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if not args.json and not args.quiet:
        with Output() as out:
            try:
                out.write("released\n")
            except OutputError:
                pass
    return EXIT_OK


def announce(args: argparse.Namespace, locked: pagecache.Locked, pid: int) -> None:
    with Output() as out:
        try:
            if args.json:
                doc = {
                    "command": "lock",
                    "page_size": PAGE_SIZE,
                    "pid": pid,
                    "locked": True,
                    "files": [
                        {**json_path(f.path), "size": f.size, "locked_bytes": f.size}
                        for f in locked.files
                    ],
                    "errors": [],
                    "locked_bytes": locked.locked_bytes,
                }
                out.write(_dumps(doc) + "\n")
            elif not args.quiet:
                count = len(locked.files)
                out.write(
                    f"locked {count} file{'s' if count != 1 else ''}, "
                    f"{format_size(locked.locked_bytes)} in memory (pid {pid}); "
                    + ("SIGTERM to release\n" if args.daemon else "Ctrl-C to release\n")
                )
            out.flush()
        except OutputError:
            pass


def write_pidfile(path: str, pid: int) -> None:
    tmp = f"{path}.{pid}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, path)


def remove_pidfile(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def daemonize(args: argparse.Namespace, locked: pagecache.Locked, stop: set[signal.Signals]) -> int:
    """Fork; the child keeps the locks (mlock survives only in the process
    that made it, so it locks again), writes the pidfile and waits for a
    stop signal; the parent reports and returns once the child is ready."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            answer = ready.read()
        if not answer.startswith(b"ok"):
            message = answer.decode("utf-8", "replace").strip() or "the locker died"
            warn_command("lock", message)
            os.waitpid(pid, 0)
            return EXIT_FAILED
        announce(args, locked, pid)
        return EXIT_OK
    # The child.
    os.close(ready_r)
    status = EXIT_FAILED
    try:
        os.setsid()
        paths = [f.path for f in locked.files]
        locked.close()  # the parent's locks go with the parent
        try:
            again = pagecache.lock(paths)
        except OSError as exc:
            os.write(ready_w, f"error: {describe(exc)}".encode())
            os._exit(EXIT_FAILED)
        with again:
            if args.pidfile:
                write_pidfile(args.pidfile, os.getpid())
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
            os.write(ready_w, b"ok")
            os.close(ready_w)
            ready_w = -1
            signal.sigwait(stop)
            if args.pidfile:
                remove_pidfile(args.pidfile)
        status = EXIT_OK
    finally:
        if ready_w >= 0:
            os.close(ready_w)
        os._exit(status)


# ---- running a command ---------------------------------------------------------------


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command, turning Ctrl-C and output failures into exit statuses."""
    try:
        return run(args)
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`iommap ... | head`). Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        Output()._silence()
        return EXIT_BROKEN_PIPE
    except OutputError as error:
        if error.message:
            warn(error.message)
        return error.status


def main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and run; usage errors show the sub-command's usage (or JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(parser, argv)
    except UsageError as error:
        return report_usage_error(error, argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run_command(run, args)
    except UsageError as error:
        return report_usage_error(error, argv)
