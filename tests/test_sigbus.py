"""SIGBUS protection: a file shrunk under a mapping raises SigbusError.

Every test runs in a child process: a SIGBUS that escapes the guard kills
the child, and the test fails instead of the run dying.
"""

import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import PAGE, _under_asan, run_ok, run_py, wrong_fault_address

# Common set-up for the children: a file of `pages` pages of distinct bytes,
# a helper asserting a call raises SigbusError as the API documents it.
PRELUDE = """
import errno, faulthandler, os, signal, sys, threading
import iommap

def content(n):
    return bytes((i * 7 + (i >> 12)) & 0xFF for i in range(n))

def make(path, pages):
    with open(path, "wb") as f:
        f.write(content(pages * page))

def expect_sigbus(call):
    try:
        call()
    except iommap.SigbusError as e:
        assert e.reason == "sigbus", e.reason
        assert e.errno == errno.EFAULT, e.errno
        assert isinstance(e, OSError) and isinstance(e, iommap.Error)
        assert not isinstance(e, iommap.SystemCallError)
        return e
    raise AssertionError("no SigbusError from %r" % (call,))
"""


def child(code, tmp_path, **kwargs):
    return run_ok((PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **kwargs)


def child_rc(code, tmp_path, **kwargs):
    return run_py((PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **kwargs)


@wrong_fault_address
def test_shrunk_file_raises_sigbus_and_the_handle_recovers(tmp_path):
    child(
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
    child(
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
    child(
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
    child(
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
    child(
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
    child(
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
    child(
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


# ---- faults outside iommap go where they went before ---------------------

UNRELATED = {
    # A real fault: a stdlib mmap (no guard) of a file that shrank.
    "stdlib-mmap": """
        import ctypes, mmap
        other = path + ".other"
        with open(other, "wb") as f:
            f.write(b"x" * 2 * page)
        fd = os.open(other, os.O_RDWR)
        mm = mmap.mmap(fd, 2 * page)
        os.truncate(other, 0)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        ctypes.string_at(address + page, 1)
    """,
    # A real fault during an iommap copy, but in the caller's buffer (a
    # stdlib mmap of another file that shrank), not in iommap's pages: not
    # iommap's to recover.
    "foreign-buffer": """
        import mmap
        other = path + ".other"
        with open(other, "wb") as f:
            f.write(b"x" * 2 * page)
        fd = os.open(other, os.O_RDWR)
        mm = mmap.mmap(fd, 2 * page)
        os.truncate(other, 0)
        m.readinto(0, memoryview(mm)[:page])
    """,
    # A signal sent by kill(2): no faulting address at all.
    "kill": """
        os.kill(os.getpid(), signal.SIGBUS)
        import time
        time.sleep(5)
    """,
}


def _survive_then(unrelated):
    return (
        """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        print("SURVIVED", flush=True)
        """
        + unrelated
        + """
        print("NOT KILLED", flush=True)
        """
    )


@wrong_fault_address
@pytest.mark.parametrize("kind", list(UNRELATED))
def test_unrelated_sigbus_still_kills(tmp_path, kind):
    rc, out, err = child_rc(_survive_then(UNRELATED[kind]), tmp_path)
    assert "SURVIVED" in out, (rc, out, err)
    assert "NOT KILLED" not in out
    assert rc == -signal.SIGBUS, (rc, out, err)


def test_unrelated_fault_while_another_thread_is_in_a_guarded_copy(tmp_path):
    # The guard is per thread: a fault on the main thread must not be taken
    # for the guarded copy running on another.
    code = (
        """
        make(path, 64)
        m = iommap.open(path)
        stop = False
        def reader():
            while not stop:
                m.pread(0, 64 * page)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        import time
        time.sleep(0.05)
        print("SURVIVED", flush=True)
    """
        + UNRELATED["stdlib-mmap"]
        + """
        print("NOT KILLED", flush=True)
    """
    )
    rc, out, err = child_rc(code, tmp_path)
    assert "SURVIVED" in out and "NOT KILLED" not in out, (rc, out, err)
    assert rc == -signal.SIGBUS, (rc, out, err)


@wrong_fault_address
def test_python_handler_installed_before_import_is_chained(tmp_path):
    # A handler installed before iommap (here Python's own, for a kill(2)
    # signal) still gets the signals that are not iommap's; guarded faults
    # never reach it.
    rc, out, err = run_py(
        (
            """
        import os, signal, time
        hits = []
        signal.signal(signal.SIGBUS, lambda signum, frame: hits.append(signum))
        """,
            PRELUDE,
            """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        assert hits == [], hits
        os.kill(os.getpid(), signal.SIGBUS)
        for _ in range(100):
            if hits:
                break
            time.sleep(0.01)
        assert hits == [signal.SIGBUS], hits
        print("OK")
        """,
        ),
        path=str(tmp_path / "f.bin"),
        page=PAGE,
    )
    assert rc == 0 and out.strip().endswith("OK"), (rc, out, err)


@wrong_fault_address
def test_ignored_sigbus_stays_ignored(tmp_path):
    # SIG_IGN was "the handler installed before": a kill(2) SIGBUS is ignored.
    rc, out, err = run_py(
        (
            """
        import signal
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
        """,
            PRELUDE,
            """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        os.kill(os.getpid(), signal.SIGBUS)
        import time; time.sleep(0.1)
        print("OK")
        """,
        ),
        path=str(tmp_path / "f.bin"),
        page=PAGE,
    )
    assert rc == 0 and out.strip().endswith("OK"), (rc, out, err)


# ---- faulthandler --------------------------------------------------------

FATAL = "Fatal Python error: Bus error"


@wrong_fault_address
def test_open_after_faulthandler_puts_iommap_in_front(tmp_path):
    # faulthandler.enable() after import, then iommap.open: iommap's handler
    # is in front again, so guarded faults never reach faulthandler.
    out, err = child(
        """
        faulthandler.enable()
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        for _ in range(3):
            expect_sigbus(lambda: m.pread(2 * page, 1))
            expect_sigbus(lambda: m.readinto(2 * page, bytearray(4)))
            expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        print("OK")
        """,
        tmp_path,
    )
    assert FATAL not in err, err


@wrong_fault_address
@pytest.mark.parametrize("kind", list(UNRELATED))
def test_unrelated_fault_still_reaches_faulthandler(tmp_path, kind):
    code = (
        """
        faulthandler.enable()
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        print("SURVIVED", flush=True)
    """
        + UNRELATED[kind]
        + """
        print("NOT KILLED", flush=True)
    """
    )
    rc, out, err = child_rc(code, tmp_path)
    assert "SURVIVED" in out and "NOT KILLED" not in out, (rc, out, err)
    assert FATAL in err, err
    assert rc == -signal.SIGBUS, (rc, out, err)


@wrong_fault_address
def test_guarded_fault_recovered_with_faulthandler_in_front(tmp_path):
    # faulthandler enabled after the last iommap.open stays in front: it sees
    # the fault first, dumps, and re-raises; iommap recognises the re-raised
    # signal on a thread inside a guarded copy and recovers all the same.
    out, err = child(
        """
        make(path, 32)
        m = iommap.open(path)
        faulthandler.enable()
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        expect_sigbus(lambda: m.pread(0, 32 * page))          # without the GIL
        expect_sigbus(lambda: m.readinto(0, bytearray(32 * page)))
        expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        assert m.pread(0, 8) == content(8)
        print("OK")
        """,
        tmp_path,
    )
    # The set-up really put faulthandler in front: it reported the fault.
    assert FATAL in err, err


def test_faulthandler_in_front_then_unrelated_fault_kills(tmp_path):
    code = (
        """
        make(path, 3)
        m = iommap.open(path)
        faulthandler.enable()
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        print("SURVIVED", flush=True)
    """
        + UNRELATED["stdlib-mmap"]
        + """
        print("NOT KILLED", flush=True)
    """
    )
    rc, out, err = child_rc(code, tmp_path)
    assert "SURVIVED" in out and "NOT KILLED" not in out, (rc, out, err)
    assert rc == -signal.SIGBUS, (rc, out, err)


@wrong_fault_address
def test_faulthandler_enabled_before_import(tmp_path):
    # python -X faulthandler: faulthandler was there first; iommap goes in
    # front of it and chains to it.
    out, err = run_ok(
        (
            PRELUDE,
            """
        assert faulthandler.is_enabled()
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        print("OK")
        """,
        ),
        path=str(tmp_path / "f.bin"),
        page=PAGE,
        env={"PYTHONFAULTHANDLER": "1"},
    )
    assert FATAL not in err, err


# ---- cost ------------------------------------------------------------------


def test_guarded_reads_and_writes_make_no_system_call(tmp_path):
    # The guard adds no system call to a small read or write (guard.c), and
    # exactly one sigaction(2) read (the re-arm check) to a copy large enough
    # to release the GIL.  Under strace, the small calls between two getppid()
    # markers make none at all, and the large ones between the next two make
    # one rt_sigaction(SIGBUS, NULL, ...) each and nothing else (single
    # thread, buffers made beforehand, so neither the GIL nor the allocator
    # needs the kernel either).
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace")
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
    proc = subprocess.run(
        [strace, "-f", "-o", str(trace), sys.executable, str(script), str(tmp_path / "f.bin")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("strace cannot trace here: " + proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
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
