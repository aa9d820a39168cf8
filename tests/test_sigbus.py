"""SIGBUS protection: a file shrunk under a mapping raises SigbusError.

Every test runs in a child process: a SIGBUS that escapes the guard kills
the child, and the test fails instead of the run dying.  How the guard
lives beside other SIGBUS handlers (chaining, faulthandler) is
test_signals.py's.
"""

import re
import sys
import textwrap

import pytest
from helpers import _under_asan, run_strace, sigbus_child, wrong_fault_address


@wrong_fault_address
def test_shrunk_file_raises_sigbus_and_the_handle_recovers(tmp_path):
    sigbus_child(
        """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)          # from outside the handle

        expect_sigbus(lambda: m.pread(2 * page, 10))
        expect_sigbus(lambda: m.pread(page, 1))
        expect_sigbus(lambda: m.pread(page - 10, 20))   # starts in a live page
        expect_sigbus(lambda: m.pread(0, 3 * page))
        buf = bytearray(100)
        expect_sigbus(lambda: m.readinto(2 * page + 5, buf))
        expect_sigbus(lambda: m.pwrite(2 * page, b"gone"))
        expect_sigbus(lambda: m.pwrite(2 * page, [b"a", [b"b" * 3000]]))

        # The handle is unchanged and the pages that still exist work.
        assert not m.closed
        assert m.position() == 3 * page
        assert m.pread(0, page) == content(page)
        assert m.pread(page - 3, 3) == content(page)[-3:]
        b = bytearray(page)
        assert m.readinto(0, b) == page and b == content(page)
        m.pwrite(0, b"alive")
        assert m.pread(0, 5) == b"alive"

        # truncate restores service; the lost pages come back as zeros.
        m.truncate(3 * page)
        assert m.position() == 3 * page
        assert m.pread(2 * page, 10) == b"\\0" * 10
        m.pwrite(2 * page, b"back")
        assert m.pread(2 * page, 4) == b"back"
        m.close()
        assert os.path.getsize(path) == 3 * page
        with open(path, "rb") as f:
            f.seek(2 * page)
            assert f.read(4) == b"back"
        print("OK")
        """,
        tmp_path,
    )


@wrong_fault_address
def test_large_guarded_copies_release_gil_and_still_recover(tmp_path):
    # Copies of 64 KiB and more run without the GIL: the guard must hold
    # there too.
    sigbus_child(
        """
        make(path, 64)
        m = iommap.open(path)
        os.truncate(path, 4 * page)
        expect_sigbus(lambda: m.pread(0, 64 * page))
        expect_sigbus(lambda: m.pread(4 * page, 32 * page))
        big = bytearray(64 * page)
        expect_sigbus(lambda: m.readinto(0, big))
        expect_sigbus(lambda: m.pwrite(0, bytes(64 * page)))
        m.truncate(64 * page)
        assert m.pread(0, 64 * page)[4 * page:] == bytes(60 * page)
        m.close()
        print("OK")
        """,
        tmp_path,
    )


@wrong_fault_address
def test_a_partial_pwrite_writes_at_most_a_prefix(tmp_path):
    # As pwrite documents: one cut short by SIGBUS may have written a prefix.  The
    # bytes of the page that still exists are either old or the new prefix.
    sigbus_child(
        """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pwrite(page - 4, b"ABCDEFGH"))
        tail = m.pread(page - 4, 4)
        assert tail in (content(page)[-4:], b"ABCD"), tail
        print("OK")
        """,
        tmp_path,
    )


@wrong_fault_address
@pytest.mark.parametrize(
    "mode,private", [("read", False), ("read", True), ("read_write", True), ("write", False)]
)
def test_every_mode_is_protected(tmp_path, mode, private):
    sigbus_child(
        """
        make(path, 3)
        m = iommap.open(path, mode, private=private)
        os.truncate(path, page)
        if mode != "write":
            expect_sigbus(lambda: m.pread(2 * page, 1))
            expect_sigbus(lambda: m.readinto(2 * page, bytearray(8)))
            assert m.pread(0, 16) == content(16)
        if mode != "read":
            expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
            m.pwrite(0, b"ok")
        # The pages come back when the file grows again from outside.
        os.truncate(path, 3 * page)
        if mode != "write":
            assert m.pread(2 * page, 4) == b"\\0" * 4
        print("OK")
        """,
        tmp_path,
        mode=mode,
        private=private,
    )


@wrong_fault_address
def test_shrunk_by_another_handle(tmp_path):
    sigbus_child(
        """
        make(path, 4)
        a = iommap.open(path)
        b = iommap.open(path)
        b.truncate(page)
        expect_sigbus(lambda: a.pread(3 * page, 8))
        expect_sigbus(lambda: a.pwrite(2 * page, b"x"))
        assert a.pread(0, 8) == content(8)
        b.truncate(4 * page)
        assert a.pread(3 * page, 8) == b"\\0" * 8
        print("OK")
        """,
        tmp_path,
    )


@wrong_fault_address
def test_many_faults_in_a_row(tmp_path):
    # The signal must not stay blocked after a recovery, or the second fault
    # would kill the process.
    sigbus_child(
        """
        make(path, 2)
        m = iommap.open(path)
        os.truncate(path, page)
        for i in range(300):
            expect_sigbus(lambda: m.pread(page + i, 1))
            assert m.pread(i, 1) == content(page)[i:i + 1]
        print("OK")
        """,
        tmp_path,
    )


@wrong_fault_address
def test_faults_on_several_threads(tmp_path):
    sigbus_child(
        """
        make(path, 32)
        m = iommap.open(path)
        os.truncate(path, 16 * page)
        errors = []
        def faulting():
            try:
                for _ in range(100):
                    expect_sigbus(lambda: m.pread(16 * page, 16 * page))
                    expect_sigbus(lambda: m.pread(20 * page, 1))
            except BaseException as e:
                errors.append(e)
        def reading():
            try:
                for _ in range(100):
                    assert m.pread(0, 16 * page) == content(16 * page)
            except BaseException as e:
                errors.append(e)
        threads = [threading.Thread(target=f) for f in (faulting, faulting, reading, faulting)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        print("OK")
        """,
        tmp_path,
    )


# ---- cost ------------------------------------------------------------------


def test_guarded_reads_and_writes_make_no_system_call(tmp_path):
    # The guard adds no system call to a small read or write (guard.c), and
    # exactly one sigaction(2) read (the re-arm check) to a copy large enough
    # to release the GIL.  Under strace, the small calls between two getppid()
    # markers make none at all, and the large ones between the next two make
    # one rt_sigaction(SIGBUS, NULL, ...) each and nothing else (single
    # thread, buffers made beforehand, so neither the GIL nor the allocator
    # needs the kernel either).
    script = tmp_path / "calls.py"
    script.write_text(
        textwrap.dedent(
            """
        import os, sys, iommap
        path = sys.argv[1]
        with open(path, "wb") as f:
            f.write(b"\\1" * (2 << 20))
        m = iommap.open(path)
        big, small, data = bytearray(1 << 20), bytearray(100), bytes(1 << 20)
        out16, data16 = bytearray(16), bytes(16)
        pieces = [b"p" * 1000] * 100   # 100 KB as a list of small pieces
        offsets = list(range(0, 1 << 20, 4096))
        for _ in range(2):   # warm up: first calls may allocate
            m.pread(0, 100); m.readinto(0, big); m.readinto(0, small)
            m.pwrite(0, data); m.pwrite(0, [b"a", [b"b"]]); m.position(); m.pwrite(0, pieces)
            m.gather([0, 8], 8, out16); m.scatter([0, 8], 8, data16)
            m.gather(offsets, 4096, big); m.scatter(offsets, 4096, data)
        os.getppid()
        for i in range(50):
            m.pread(i, 100); m.readinto(i, small); m.pwrite(i, b"abc")
            m.pwrite(i, [b"a", [b"b"]]); m.position(); len(m)
        os.getppid()
        for i in range(50):
            m.readinto(i, big); m.pwrite(i, data)
        os.getppid()
        for i in range(50):
            m.gather([i, 8], 8, out16); m.scatter([i, 8], 8, data16)   # small
            m.gather(offsets, 4096, big); m.scatter(offsets, 4096, data)
            m.pwrite(i, pieces)
        os.getppid()
        m.close()
        """
        )
    )
    trace = tmp_path / "trace.txt"
    run_strace(trace, [sys.executable, str(script), str(tmp_path / "f.bin")])
    lines = trace.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if re.match(r"^\d+\s+getppid\(", line)]
    assert len(marks) == 4, marks
    allocator = re.compile(r"^\d+\s+(mmap|munmap|madvise|brk|mprotect)\(")
    if _under_asan():
        # pread's bytes come from malloc (PYTHONMALLOC=malloc), and ASan's
        # allocator, which never reuses freed memory at once, maps more now
        # and then: the interpreter's syscalls, not the guard's.
        lines = [line for line in lines if not allocator.match(line)]
        marks = [i for i, line in enumerate(lines) if re.match(r"^\d+\s+getppid\(", line)]
    small_calls = lines[marks[0] + 1 : marks[1]]
    assert small_calls == [], "\n".join(small_calls[:20])
    rearm = re.compile(r"^\d+\s+rt_sigaction\(SIGBUS, NULL, ")
    large_calls = lines[marks[1] + 1 : marks[2]]
    others = [line for line in large_calls if not rearm.match(line)]
    assert others == [], "\n".join(others[:20])
    assert len(large_calls) == 2 * 50, len(large_calls)
    # gather and scatter copy their offsets into an allocation, and pwrite
    # lists its pieces in one, which an allocator may serve with mmap
    # (AddressSanitizer's does): only those calls may join the one re-arm
    # check per large call (the small gather and scatter make none).
    batch_calls = lines[marks[2] + 1 : marks[3]]
    others = [line for line in batch_calls if not rearm.match(line) and not allocator.match(line)]
    assert others == [], "\n".join(others[:20])
    assert sum(1 for line in batch_calls if rearm.match(line)) == 3 * 50
