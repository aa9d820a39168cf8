"""What the page commands print: one writer to stderr, stdout that fails
cleanly, the column table, and a writer per format over it.

The column table (:data:`COLUMNS`) is the one list of what a row can show;
:class:`TableWriter` (aligned), :class:`RawWriter` (fincore's ``--raw``) and
:class:`JsonWriter` (one JSON document) each write a command's results from
it, as util-linux fincore writes its one column table in each format.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from .. import pagecache
from .._toolkit import format_size
from .status import EXIT_BROKEN_PIPE, EXIT_FAILED

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only for the type checker: a faster start-up
    from typing import IO, Any

PAGE_SIZE = pagecache.PAGE_SIZE
# Cells in a residency map line (info -v).
MAP_WIDTH = 64

HIDDEN_NOTE = (
    "residency shown as ?: Linux tells the page cache of a file only to its owner or to"
    " who may write it"
)


# ---- stderr --------------------------------------------------------------------------


def warn(message: str, command: str | None = None) -> None:
    """The one writer to stderr: ``iommap: message``, or ``iommap COMMAND:
    message`` for what one command says. Never raises: a closed or broken
    stderr loses the message, not the command's work."""
    who = f"iommap {command}" if command else "iommap"
    if sys.stderr is not None:
        try:
            sys.stderr.write(f"{who}: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def warn_failure(command: str, failure: pagecache.FileError) -> None:
    """A path a command could not process: ``iommap COMMAND: PATH: why``
    (``iommap COMMAND: why`` for a failure of no path)."""
    where = f"{shown(failure.path)}: " if failure.path else ""
    warn(f"{where}{failure.message}", command)


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc)


# ---- stdout --------------------------------------------------------------------------


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


# ---- cells ---------------------------------------------------------------------------


def shown(path: str | bytes) -> str:
    """The path as it can be printed (undecodable bytes as \\xNN escapes)."""
    if path.isascii():
        return path if isinstance(path, str) else path.decode("ascii")
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def raw_cell(cell: str | bytes) -> str:
    """A cell for --raw, escaped byte for byte as fincore's raw output
    (util-linux's fputs_nonblank) escapes it: every byte but printable
    ASCII, and the backslash itself, as \\xNN.  So a space never splits a
    cell, a newline never splits a row, and the name ``a\\xff`` (a
    backslash) never prints as the byte name ``a\xff`` does.  A path is
    given as it is (its exact bytes); other cells are text."""
    raw = cell if isinstance(cell, bytes) else os.fsencode(cell)
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


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


def dumps(obj: Any) -> str:
    """json.dumps, imported when a command prints JSON: a plain `info` starts
    faster without it."""
    import json

    return json.dumps(obj)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def count_cell(n: int | None) -> str:
    return "?" if n is None else str(n)


def bytes_cell(n: int | None, exact: bool) -> str:
    if n is None:
        return "?"
    return str(n) if exact else format_size(n)


def pages_bytes(n: int | None) -> int | None:
    return None if n is None else n * PAGE_SIZE


# ---- the column table ----------------------------------------------------------------

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


def column_help() -> str:
    width = max(len(n) for n in COLUMNS)
    rows = "\n".join(f"  {name:>{width}}  {text}" for name, (text, _) in COLUMNS.items())
    return f"columns (-o):\n{rows}"


def chosen_columns(args: argparse.Namespace) -> list[str]:
    """The columns ``-o`` asks for (the command's defaults without it)."""
    columns: list[str] = getattr(args, "output", None) or DEFAULT_COLUMNS[args.command]
    if columns[0] == "+":
        columns = DEFAULT_COLUMNS[args.command] + columns[1:]
    return columns


# ---- records -------------------------------------------------------------------------


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


def error_record(failure: pagecache.FileError) -> dict[str, Any]:
    return {**json_path(failure.path), "reason": failure.reason, "message": failure.message}


def totals_record(t: pagecache.Totals) -> dict[str, Any]:
    return {**t._asdict(), "percent": t.percent}


def summary_line(t: pagecache.Totals, interrupted: bool) -> str:
    parts = [f"files {t.files}", f"directories {t.directories}"]
    if t.skipped:
        parts.append(f"skipped {t.skipped}")
    if t.errors:
        parts.append(f"errors {t.errors}")
    # Pages, as vmtouch counts: a resident page holds whole pages' bytes,
    # more than a short file has, so bytes resident are not claimed here.
    parts.append(f"resident {t.resident_pages}/{t.total_pages} pages, {t.percent:.1f}%")
    parts.append(f"size {format_size(t.size)}")
    if t.unknown:
        parts.append(f"unknown {t.unknown}")
    parts.append(f"elapsed {t.seconds:.3f} s")
    if interrupted:
        parts.append("interrupted")
    return "  ".join(parts)


def map_of(r: pagecache.FileResidency) -> str:
    """The residency map of ``info -v``: ``?`` cells where it is not known."""
    if not r.known:
        return "?" * min(MAP_WIDTH, r.total_pages)
    try:
        return pagecache.residency_map(r.path, MAP_WIDTH, offset=r.offset, length=r.length)
    except OSError:
        return "?" * min(MAP_WIDTH, r.total_pages)


# ---- writers -------------------------------------------------------------------------


class Writer:
    """A page command's results in one format, written as they come in:
    :meth:`file` for each file, :meth:`error` for each path that failed,
    :meth:`finish` once at the end. ``errors`` keeps the failures."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.out = out
        self.command: str = args.command
        self.verbose = bool(getattr(args, "verbose", False))
        self.errors: list[dict[str, Any]] = []

    def file(self, r: pagecache.FileResidency) -> None:
        raise NotImplementedError

    def error(self, failure: pagecache.FileError) -> None:
        warn_failure(self.command, failure)
        self.errors.append(error_record(failure))

    def finish(self, totals: pagecache.Totals, *, interrupted: bool = False) -> None:
        raise NotImplementedError


class JsonWriter(Writer):
    """One JSON document on one line, streamed a file at a time (memory
    bounded): the head, each file's record, then errors and totals."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        super().__init__(args, out)
        self.first = True
        self.started = False

    def start(self) -> None:
        """The head, written with the first record or at the end (not when
        the writer is made: a command stopped before its first file still
        writes a whole document)."""
        if not self.started:
            self.started = True
            head = {"command": self.command, "page_size": PAGE_SIZE}
            self.out.write(dumps(head)[:-1] + ', "files": [')

    def file(self, r: pagecache.FileResidency) -> None:
        self.start()
        rec = record_of(r, self.command)
        if self.verbose:
            if r.known:
                rec["map"] = map_of(r)
                try:
                    ranges = pagecache.resident_ranges(r.path, offset=r.offset, length=r.length)
                    rec["resident_ranges"] = [list(x) for x in ranges]
                except OSError:
                    rec["resident_ranges"] = None
            else:
                rec["map"] = None
                rec["resident_ranges"] = None
        self.out.write(("" if self.first else ", ") + dumps(rec))
        self.first = False

    def finish(self, totals: pagecache.Totals, *, interrupted: bool = False) -> None:
        self.start()
        tail = {"errors": self.errors, "totals": totals_record(totals), "interrupted": interrupted}
        self.out.write("], " + dumps(tail)[1:] + "\n")
        self.out.flush()


class TextWriter(Writer):
    """The text formats: a row of the chosen columns per file (none with
    ``-q`` or ``-s``), then the totals line where it is wanted, then a note
    on stderr if some file's residency was hidden."""

    # Whether the totals follow the rows of several files: the plain table
    # does; -r and -n are for scripts, which want the rows alone (unless -s).
    totals_after_rows = True

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        super().__init__(args, out)
        self.quiet: bool = args.quiet
        self.summary_only: bool = args.summary
        self.columns = chosen_columns(args)
        self.getters = [COLUMNS[c][1] for c in self.columns]
        self.exact = bool(getattr(args, "bytes", False))
        self.headings = not getattr(args, "noheadings", False)
        self.unknown = False

    def file(self, r: pagecache.FileResidency) -> None:
        if not r.known:
            self.unknown = True
        if not (self.quiet or self.summary_only):
            self.row([get(r, self.exact) for get in self.getters], r)

    def row(self, cells: list[str], r: pagecache.FileResidency) -> None:
        raise NotImplementedError

    def rows_end(self) -> None:
        """Write what the rows kept back, if anything."""

    def finish(self, totals: pagecache.Totals, *, interrupted: bool = False) -> None:
        if not self.quiet:
            self.rows_end()
            several = totals.files + totals.errors > 1 or totals.directories > 0
            plain = self.totals_after_rows and self.headings
            if self.summary_only or (several and plain) or interrupted:
                self.out.write(summary_line(totals, interrupted) + "\n")
        self.out.flush()
        if self.unknown:
            warn(HIDDEN_NOTE, self.command)


class RawWriter(TextWriter):
    """fincore's ``--raw``: cells separated by one space, streamed."""

    totals_after_rows = False

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        super().__init__(args, out)
        self.first = True

    def row(self, cells: list[str], r: pagecache.FileResidency) -> None:
        if self.first and self.headings:
            self.out.write(" ".join(self.columns) + "\n")
        # FILE from the path's bytes: its shown() form has escapes of its own.
        pairs = zip(self.columns, cells, strict=False)
        raw = [raw_cell(r.path if c == "FILE" else cell) for c, cell in pairs]
        self.out.write(" ".join(raw) + "\n")
        self.first = False
        if self.verbose:
            self.out.write(f"[{map_of(r)}]\n")


class TableWriter(TextWriter):
    """The aligned table: it needs every row for the widths, so the rows
    are kept, each as one string, the widths counted as they come, and the
    lines written at the end, a block at a time (a tree of 100,000 files
    holds about 10 MB, not a list of cells per row)."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        super().__init__(args, out)
        self.rows: list[str] = []
        self.maps: list[str] = []
        self.widths = [len(c) if self.headings else 0 for c in self.columns]

    def row(self, cells: list[str], r: pagecache.FileResidency) -> None:
        widths = self.widths
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
        self.rows.append("\0".join(cells))  # no cell holds a NUL: no path can
        if self.verbose:
            self.maps.append(map_of(r))

    def rows_end(self) -> None:
        # As _toolkit.render_table lays a table out: two spaces between
        # cells, FILE left-aligned and unpadded, each line right-stripped.
        if not self.rows:
            return
        last = len(self.columns) - 1
        fmt = "  ".join(
            "{}"
            if (i == last and c in LEFT_COLUMNS) or not self.widths[i]
            else f"{{:{'<' if c in LEFT_COLUMNS else '>'}{self.widths[i]}}}"
            for i, c in enumerate(self.columns)
        ).format
        block: list[str] = []
        if self.headings:
            block.append(fmt(*self.columns).rstrip())
        rows, self.rows = self.rows, []
        for i, row in enumerate(rows):
            block.append(fmt(*row.split("\0")).rstrip())
            if self.verbose:
                block.append(f"[{self.maps[i]}]")
            if len(block) >= 4096:
                self.out.write("\n".join(block) + "\n")
                block = []
        if block:
            self.out.write("\n".join(block) + "\n")


def writer_for(args: argparse.Namespace, out: Output) -> Writer:
    """The writer of the format the options ask for."""
    if args.json:
        return JsonWriter(args, out)
    if getattr(args, "raw", False):
        return RawWriter(args, out)
    return TableWriter(args, out)
