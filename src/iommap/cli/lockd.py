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
    describe,
    dumps,
    error_record,
    json_path,
    warn,
    warn_failure,
)
from .paths import check_paths_given, new_walk, open_list
from .status import EXIT_FAILED, EXIT_OK


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
            warn_failure("lock", result)
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
            warn_failure("lock", failure)
    if locked is None:
        if args.json:
            doc = {
                "command": "lock",
                "page_size": PAGE_SIZE,
                "pid": os.getpid(),
                "locked": False,
                "files": [],
                "errors": [error_record(e) for e in errors],
            }
            with Output() as out:
                try:
                    out.write(dumps(doc) + "\n")
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
    stop signal; the parent reports and returns once the child is ready."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            answer = ready.read()
        if not answer.startswith(b"ok"):
            message = answer.decode("utf-8", "replace").strip() or "the locker died"
            warn(message, "lock")
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
