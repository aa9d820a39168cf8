"""``iommap lock``: lock files in memory, all or none, and hold them until a
stop signal, in the foreground or as a daemon (``--daemon``, ``--pidfile``)."""

from __future__ import annotations

import argparse
import os
import signal

from .. import pagecache
from .._toolkit import format_size
from .output import (
    PAGE_SIZE,
    Output,
    OutputError,
    dumps,
    error_record,
    json_path,
    warn_failure,
)
from .paths import check_paths_given, list_error, new_walk, open_list
from .status import EXIT_FAILED, EXIT_OK


def run_lock(args: argparse.Namespace) -> int:
    check_paths_given(args)
    if not open_list(args):
        return EXIT_FAILED
    walk = new_walk(args, "residency")
    paths: list[str | bytes] = []
    for result in walk:
        if isinstance(result, pagecache.FileError):
            return failed(args, result)
        paths.append(result.path)
    failure = list_error(args)
    if failure is not None:
        return failed(args, failure)
    try:
        locked = lock_range(args, paths)
    except OSError as exc:
        return failed(args, lock_failure(exc))
    with locked:
        return hold(args, locked)


def lock_range(args: argparse.Namespace, paths: list[str | bytes]) -> pagecache.Locked:
    """The files locked, each over the range ``-p`` names (all without it)."""
    offset, length = args.range if args.range is not None else (0, None)
    return pagecache.lock(paths, offset=offset, length=length)


def lock_failure(exc: OSError) -> pagecache.FileError:
    """What a failed lock means, with the way out of a locked-memory limit."""
    failure = pagecache.FileError.from_exception(getattr(exc, "filename", None) or "", exc)
    if failure.reason in ("enomem", "eperm", "eagain"):
        failure = failure._replace(
            message=failure.message
            + " (mlock: the locked-memory limit, `ulimit -l`, is too low for these"
            " files; raise it, or run with CAP_IPC_LOCK)"
        )
    return failure


def failed(args: argparse.Namespace, failure: pagecache.FileError) -> int:
    """Nothing is locked: the reason on stderr, the JSON document saying so
    with --json, and exit status 1 (the one way every failure of lock ends,
    in the foreground or from the daemon)."""
    warn_failure("lock", failure)
    if args.json:
        doc = {
            "command": "lock",
            "page_size": PAGE_SIZE,
            "pid": os.getpid(),
            "locked": False,
            "files": [],
            "errors": [error_record(failure)],
        }
        with Output() as out:
            try:
                out.write(dumps(doc) + "\n")
            except OutputError:
                pass
    return EXIT_FAILED


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
            try:
                write_pidfile(args.pidfile, os.getpid())
            except OSError as exc:
                return failed(args, pagecache.FileError.from_exception(args.pidfile, exc))
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
                        {
                            **json_path(f.path),
                            "size": f.size,
                            "offset": f.offset,
                            "length": f.length,
                            "locked_bytes": f.length,
                        }
                        for f in locked.files
                    ],
                    "errors": [],
                    "locked_bytes": locked.locked_bytes,
                }
                out.write(dumps(doc) + "\n")
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
    stop signal; the parent reports and returns once the child is ready.

    The child tells the parent through a pipe: ``ok``, or the error record
    of what failed (JSON), which the parent reports as its own failure."""
    try:
        ready_r, ready_w = os.pipe()
    except OSError as exc:
        return failed(args, pagecache.FileError.from_exception("", exc))
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(ready_r)
        os.close(ready_w)
        return failed(args, pagecache.FileError.from_exception("", exc))
    if pid:
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            answer = ready.read()
        if answer != b"ok":
            os.waitpid(pid, 0)
            return failed(args, child_failure(answer))
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
            again = lock_range(args, paths)
        except OSError as exc:
            tell_parent(ready_w, lock_failure(exc))
            os._exit(EXIT_FAILED)
        with again:
            if args.pidfile:
                try:
                    write_pidfile(args.pidfile, os.getpid())
                except OSError as exc:
                    tell_parent(ready_w, pagecache.FileError.from_exception(args.pidfile, exc))
                    os._exit(EXIT_FAILED)
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


def tell_parent(fd: int, failure: pagecache.FileError) -> None:
    path = failure.path if isinstance(failure.path, str) else os.fsdecode(failure.path)
    record = {"path": path, "reason": failure.reason, "message": failure.message}
    os.write(fd, dumps(record).encode("utf-8", "surrogateescape"))


def child_failure(answer: bytes) -> pagecache.FileError:
    """The failure the daemon reported (or its death, if it said nothing)."""
    import json

    try:
        record = json.loads(answer.decode("utf-8", "surrogateescape"))
        return pagecache.FileError(record["path"], record["reason"], record["message"])
    except (ValueError, KeyError, TypeError):
        return pagecache.FileError("", "died", "the locker died before it had locked the files")
