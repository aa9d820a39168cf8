"""The worker process of the many-readers workload.

Each worker is a separate interpreter (started with ``spawn``, so it inherits
no mapping and no heap from the benchmark), like the worker processes of a
server that each open the shared file themselves.  Per round it opens the
file its way, reads the round's records once untimed (their checksum is the
result the parent compares across ways), then again when told to go, and
reports its memory before closing.  Only one way's workers have the file
open at a time, so each one's PSS divides the shared pages among them alone.

This module imports nothing beyond the standard library and iommap (no
numpy): a worker's memory is the interpreter's, the way's, and the pages it
maps.
"""

from __future__ import annotations

import mmap
import os
import random
import time
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection

import iommap

from ._measure import LoopArgs, make_loop

#: The ways a worker can read: today's (os.pread, stdlib mmap) and iommap's.
WAYS = ("os_pread", "mmap_slice", "iommap_pread")


def offsets(size: int, record: int, count: int, seed: str) -> list[int]:
    """`count` random record-aligned offsets in a file of `size` bytes."""
    rng = random.Random(seed)
    slots = size // record
    return [rng.randrange(slots) * record for _ in range(count)]


def memory() -> tuple[int, int] | None:
    """(RSS, PSS) of this process in bytes, from /proc/self/smaps_rollup."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:") and parts[1].isdigit():
            values[parts[0]] = int(parts[1]) * 1024
    if "Rss:" not in values or "Pss:" not in values:
        return None
    return values["Rss:"], values["Pss:"]


def _open(
    way: str, path: str
) -> tuple[Callable[[int, int], bytes], LoopArgs, str, Callable[[], None]]:
    """A way's reader: a plain read for the checksum, the timed loop's
    arguments and body (the suite's loop: only the body differs between
    ways), and how to close it."""
    if way == "os_pread":
        # Today's way without a mapping: a descriptor per process and a pread
        # system call per record.
        fd = os.open(path, os.O_RDONLY)
        return (
            (lambda o, n: os.pread(fd, n, o)),
            ([], 0, os.pread, fd, None),
            "f(a, n, o)",
            (lambda: os.close(fd)),
        )
    if way == "mmap_slice":
        # Today's way with a mapping: each process maps the file with the
        # standard library and slices a record out (a new bytes object).
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return (lambda o, n: mm[o : o + n]), ([], 0, None, mm, None), "a[o:o+n]", mm.close
    if way == "iommap_pread":
        m = iommap.open(path, "read")
        return m.pread, ([], 0, m.pread, None, None), "f(o, n)", m.close
    raise ValueError(f"unknown way: {way!r}")


def _timed(way: str, path: str, record: int, offs: list[int], conn: Connection) -> None:
    """One round: open, checksum pass, timed pass on "go", memory, close."""
    read, (_, _, f, a, b), body, close = _open(way, path)
    try:
        checksum = 0
        for o in offs:
            checksum = zlib.crc32(read(o, record), checksum)
        conn.send(("ready", checksum))
        conn.recv()
        make_loop(body)(offs, record, f, a, b, time.perf_counter_ns)
        conn.send(("done", memory()))
    finally:
        close()


def worker(conn: Connection, way: str, path: str, record: int, count: int, index: int) -> None:
    """A worker's life: one round per message (its seed), until None."""
    size = os.path.getsize(path)
    while True:
        seed = conn.recv()
        if seed is None:
            break
        offs = offsets(size, record, count, f"{seed}/worker{index}")
        try:
            _timed(way, path, record, offs, conn)
        except Exception as exc:  # sent to the parent, which reports it as the row's error
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()
