"""Which files a page command works on: the paths named, the list read with
``-b``, the range ``-p`` and the sizes ``-m`` take, and the walk over them
with vmtouch's filters (:func:`new_walk`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from .. import _toolkit, pagecache
from .output import describe, shown, warn

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only for the type checker: a faster start-up
    from typing import IO, Any


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
    """The paths named, then those of -b's list as it is read.  A list that
    fails while it is read (an I/O error) ends there: the failure is kept
    in ``args.list_error``, for the command to report with its own."""
    yield from args.files
    source: IO[bytes] | None = getattr(args, "list_source", None)
    if source is not None:
        try:
            yield from read_list(source, args.null)
        except OSError as exc:
            args.list_error = pagecache.FileError.from_exception(args.files_from, exc)
        finally:
            if source is not getattr(sys.stdin, "buffer", None):
                source.close()


def list_error(args: argparse.Namespace) -> pagecache.FileError | None:
    """How reading -b's list failed, if it did."""
    failure: pagecache.FileError | None = getattr(args, "list_error", None)
    return failure


def open_list(args: argparse.Namespace) -> bool:
    """Open -b's list before the walk starts; False (and a message) if it
    cannot be read."""
    args.list_source = None
    if args.files_from is None:
        return True
    if args.files_from == "-":
        if sys.stdin is None:
            warn("-: standard input is closed", args.command)
            return False
        args.list_source = sys.stdin.buffer
        return True
    try:
        args.list_source = open(args.files_from, "rb")
    except OSError as exc:
        warn(f"{shown(args.files_from)}: {describe(exc)}", args.command)
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
