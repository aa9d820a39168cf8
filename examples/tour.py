"""Every call of iommap's public API, once, with the types it returns.

Run it (it works in a temporary directory and checks what it does):

    python examples/tour.py

`make lint` type-checks it with `mypy --strict`, and the test suite runs it,
so it stays true to both the stubs and the library.
"""

from __future__ import annotations

import array
import errno
import os
import tempfile

import iommap


def tour(directory: str) -> None:
    path = os.path.join(directory, "tour.bin")
    page = os.sysconf("SC_PAGE_SIZE")

    # Opening: every keyword. A str, bytes or os.PathLike path.
    m: iommap.MappedFile = iommap.open(
        path,
        "read_write",
        private=False,
        lock=False,
        populate=True,
        nocache=False,
        create=True,
        truncate=True,
        size=4 * page,
    )
    with m:
        assert m.mode == "read_write" and m.path == path and not m.closed
        size: int = m.position()
        assert size == len(m) == 4 * page

        # Writing: bytes-like, nested lists and tuples, a list[bytes] variable.
        m.pwrite(0, b"hello")
        m.pwrite(5, [b", ", (bytearray(b"wor"), [memoryview(b"ld")])])
        parts = [b"!", b"\n"]
        m.pwrite(12, parts)

        # Reading: a copy, or into any writable buffer.
        data: bytes = m.pread(0, 12)
        assert data == b"hello, world"
        buf = bytearray(5)
        copied: int = m.readinto(7, buf)
        assert copied == 5 and buf == b"world"
        ints = array.array("i", [0, 0])
        assert m.readinto(0, ints) == ints.itemsize * 2

        # Flushing, hints, resizing.
        m.sync()
        m.sync("async")
        m.sync("sync", 0, page)
        m.sync(mode="sync", offset=page, length=0)
        for hint in ("normal", "random", "sequential", "willneed", "dontneed"):
            m.advise(0, 0, hint)
        m.truncate(8 * page)
        assert len(m) == 8 * page

        # Zero-copy views: a memoryview over the mapped pages.
        view: memoryview = m.view(0, 5)
        assert view.tobytes() == b"hello"
        m.view(page)[:4] = b"page"
        assert m.pread(page, 4) == b"page"
        view.release()

        # Batches: many ranges, one lock, one call.
        gathered: bytearray = m.gather([0, 7], 5)
        assert gathered == b"helloworld"
        out = bytearray(10)
        same: bytearray = m.gather(array.array("q", [0, 7]), 5, out)
        assert same is out
        m.scatter([2 * page, 3 * page], 3, b"abcdef")
        assert m.pread(3 * page, 3) == b"def"

        # What is in memory.
        resident: int = m.resident()
        pages: bytes = m.residency(0, page)
        assert 0 <= resident <= len(m) and len(pages) == 1

        # Errors: each an iommap.Error and the built-in you would catch.
        try:
            m.pread(len(m), 1)
        except iommap.OutOfBoundsError as exc:
            assert isinstance(exc, IndexError) and exc.reason == "out_of_bounds"
        try:
            m.advise(0, 0, "sometimes")  # type: ignore[arg-type]
        except iommap.BadArgumentValueError as exc:
            assert isinstance(exc, ValueError) and exc.reason == "badarg"
        try:
            m.pwrite(0, "text")  # type: ignore[arg-type]
        except iommap.BadArgumentTypeError as exc:
            assert isinstance(exc, TypeError) and exc.reason == "badarg"

        # The file shrinks underneath the mapping: an exception, not a crash.
        os.truncate(path, page)
        try:
            m.pread(2 * page, 10)
        except iommap.SigbusError as exc:
            assert isinstance(exc, OSError) and exc.errno == errno.EFAULT
        m.truncate(8 * page)  # restores service

    assert m.closed
    m.close()  # idempotent
    try:
        m.position()
    except iommap.ClosedError as exc:
        assert exc.reason == "closed"

    # Other modes and options.
    with iommap.open(path, "read") as r:
        assert r.pread(0, 5) == b"hello"
        try:
            r.pwrite(0, b"x")
        except iommap.SystemCallError as exc:
            assert isinstance(exc, PermissionError) and exc.reason == "eacces"
    with iommap.open(os.fsencode(path), "write", lock=True) as w:
        w.pwrite(0, b"H")
    with iommap.open(path, private=True) as p:
        p.pwrite(0, b"private")  # stays in this process
    try:
        iommap.open(os.path.join(directory, "missing.bin"), "read")
    except iommap.Error as exc:
        assert isinstance(exc, FileNotFoundError) and exc.reason == "enoent"


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        tour(directory)
    print(f"iommap {iommap.__version__}: every call behaved as the reference says")


if __name__ == "__main__":
    main()
