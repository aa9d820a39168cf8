"""iommap in sub-interpreters with their own GIL (PEP 684, PEP 734).

`concurrent.interpreters` (Python 3.14+) makes isolated interpreters, each
with its own GIL, that run truly in parallel on their own threads.  The core
declares that it supports them; these tests hold it to that: each
interpreter imports its own iommap (its own classes and exceptions), handles
made in different interpreters share the file, and the process-wide SIGBUS
guard serves every interpreter at once.

Every test runs in a child process: a crash there (an unguarded SIGBUS, a
use of one interpreter's object from another) fails the test instead of
ending the run.
"""

import sys

import pytest
from helpers import PAGE, run_ok

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 14),
    reason="concurrent.interpreters (PEP 734) and InterpreterPoolExecutor arrived in 3.14",
)

# The child's set-up: a file of `pages` pages of bytes that are never zero,
# and `run_all`, which runs one script in each interpreter, all at once, one
# thread each, and fails if any of them failed.
PRELUDE = """
import os, sys, threading
from concurrent import interpreters

CONTENT = '''
def content(n):
    return bytes(1 + (i * 7 + (i >> 12)) % 251 for i in range(n))
'''
exec(CONTENT)

def new_interp(**names):
    '''A new interpreter with `path`, `page`, `names` and content() defined.'''
    interp = interpreters.create()
    interp.prepare_main(path=path, page=page, **names)
    interp.exec(CONTENT)
    return interp

def make(path, pages):
    with open(path, "wb") as f:
        f.write(content(pages * page))

def run_all(interps, script):
    failures = []

    def run(interp):
        try:
            interp.exec(script)
        except interpreters.ExecutionFailed as e:
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in interps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, "\\n".join(str(f) for f in failures)
"""


def child(code, tmp_path, **kwargs):
    return run_ok((PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **kwargs)


def test_every_call_works_in_a_subinterpreter(tmp_path):
    child(
        """
        make(path, 2)
        interp = new_interp()
        interp.exec('''
        import errno, os
        import iommap
        with iommap.open(path) as m:
            assert m.pread(0, 5) == content(5)
            m.pwrite(0, b"hello")
            m.pwrite(page, [b"from ", [b"a ", b"sub-interpreter"]])
            b = bytearray(5)
            assert m.readinto(0, b) == 5 and b == b"hello"
            v = m.view(page, 22)
            assert bytes(v) == b"from a sub-interpreter"
            v.release()
            assert m.gather([0, page], 5) == b"hellofrom "
            m.scatter([10], 3, b"abc")
            m.sync()
            m.truncate(3 * page)
            assert len(m) == 3 * page
        # This interpreter's own exception classes, with their reasons.
        try:
            iommap.open(path + ".missing", "read")
        except iommap.SystemCallError as e:
            assert isinstance(e, FileNotFoundError) and e.reason == "enoent", e
            assert e.errno == errno.ENOENT
        else:
            raise AssertionError("no error for a missing file")
        try:
            m.pread(0, 1)
        except iommap.ClosedError as e:
            assert e.reason == "closed"
        else:
            raise AssertionError("a closed handle read")
        ''')
        interp.close()

        # What the sub-interpreter wrote is in the file.
        with open(path, "rb") as f:
            data = f.read()
        assert len(data) == 3 * page
        assert data[:13] == b"hello" + content(10)[5:] + b"abc"
        assert data[page:page + 22] == b"from a sub-interpreter"
        assert data[2 * page:] == bytes(page)

        # The main interpreter's iommap is another module object with its
        # own classes; both work.
        import iommap
        with iommap.open(path, "read") as m:
            assert m.pread(page, 4) == b"from"
        print("OK")
        """,
        tmp_path,
    )


def test_sigbus_caught_in_two_subinterpreters_at_once_then_in_main(tmp_path):
    # Each interpreter opens its own handle, the file shrinks under both,
    # and both fault over and over at the same time on their own threads:
    # every fault must come back as that interpreter's SigbusError, and
    # the handles keep working on the pages that are left.
    child(
        """
        make(path, 4)
        interps = [new_interp() for _ in range(2)]
        for interp in interps:
            interp.exec('''
        import errno
        import iommap
        m = iommap.open(path)
        ''')
        os.truncate(path, page)
        run_all(interps, '''
        faults = 0
        buf = bytearray(page)
        for i in range(2000):
            try:
                if i % 3 == 0:
                    m.pread(2 * page + i % page, 64)
                elif i % 3 == 1:
                    m.readinto(3 * page, buf)
                else:
                    m.gather([0, 2 * page], 16)
            except iommap.SigbusError as e:
                assert e.reason == "sigbus" and e.errno == errno.EFAULT, e
                faults += 1
            else:
                raise AssertionError("read past the end of the file")
            if i % 100 == 0:
                assert m.pread(page - 8, 8) == content(page)[-8:]
        assert faults == 2000
        assert not m.closed
        m.close()
        ''')
        for interp in interps:
            interp.close()

        # Then the main interpreter, which never imported iommap until now.
        import errno
        import iommap
        make(path, 4)
        m = iommap.open(path)
        os.truncate(path, page)
        try:
            m.pread(3 * page, 10)
        except iommap.SigbusError as e:
            assert e.reason == "sigbus" and e.errno == errno.EFAULT
        else:
            raise AssertionError("no SigbusError in the main interpreter")
        assert m.pread(0, 10) == content(10)
        m.close()
        print("OK")
        """,
        tmp_path,
    )


def test_handles_in_several_interpreters_see_each_others_writes(tmp_path):
    child(
        """
        import iommap
        make(path, 2)
        interps = [new_interp(n=n) for n in range(3)]
        for interp in interps:
            interp.exec("import iommap; m = iommap.open(path)")
        main = iommap.open(path)

        # Each writes its mark in turn; every other handle sees it at once.
        for n, interp in enumerate(interps):
            interp.exec("m.pwrite(100 * n, b'mark %d' % n)")
            assert main.pread(100 * n, 6) == b"mark %d" % n
            for other in interps:
                other.prepare_main(want=b"mark %d" % n, at=100 * n)
                other.exec("assert m.pread(at, 6) == want, m.pread(at, 6)")

        # And the other way: the main handle writes, each sub-interpreter reads.
        main.pwrite(page, b"from main")
        run_all(interps, "assert m.pread(page, 9) == b'from main'")

        # All at once: each fills its own page-sized slot, in parallel.
        main.truncate(8 * page)
        run_all(interps, '''
        m.truncate(8 * page)  # the same size: now this handle maps all of it
        for i in range(200):
            m.pwrite((2 + n) * page + i * 16, b"%02d:%013d" % (n, i))
        ''')
        for n in range(3):
            for i in range(200):
                assert main.pread((2 + n) * page + i * 16, 16) == b"%02d:%013d" % (n, i)
        for interp in interps:
            interp.exec("m.close()")
            interp.close()
        main.close()
        print("OK")
        """,
        tmp_path,
    )


# The pool's tasks must be importable by name in each worker interpreter,
# so they live in a module of their own, on PYTHONPATH.
POOL_TASKS = """
import errno
import time

import iommap


def guarded_reads(path, page, expected, min_each, seconds):
    '''Reads random 64 B and whole-page ranges until it has seen at least
    `min_each` reads succeed and `min_each` SigbusErrors (or `seconds` pass).
    Every byte a read returns is the file's byte or zero (a page being
    rewritten).  Returns (successes, faults).'''
    import random

    rng = random.Random(page)
    ok = faults = 0
    deadline = time.monotonic() + seconds
    size = len(expected)
    m = iommap.open(path, "read")
    while len(m) != size:  # opened while the file was cut: map it whole
        m.close()
        m = iommap.open(path, "read")
    with m:
        while (ok < min_each or faults < min_each) and time.monotonic() < deadline:
            length = 64 if rng.random() < 0.5 else page
            offset = rng.randrange(0, size - length + 1)
            try:
                got = m.pread(offset, length)
            except iommap.SigbusError as e:
                assert e.reason == "sigbus" and e.errno == errno.EFAULT, e
                faults += 1
                continue
            want = expected[offset : offset + length]
            assert len(got) == length
            assert all(g == w or g == 0 for g, w in zip(got, want)), (offset, length)
            ok += 1
    return ok, faults
"""

TRUNCATOR = """
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    content = f.read()
print("ready", flush=True)
while not os.path.exists(path + ".stop"):
    os.truncate(path, 0)
    os.truncate(path, size)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, content, 0)
    os.close(fd)
"""


def test_pool_reads_in_parallel_while_another_process_truncates(tmp_path):
    (tmp_path / "pool_tasks.py").write_text(POOL_TASKS)
    (tmp_path / "truncator.py").write_text(TRUNCATOR)
    out, _ = child(
        """
        import subprocess
        from concurrent.futures import InterpreterPoolExecutor
        import pool_tasks

        make(path, 16)
        expected = content(16 * page)
        truncator = subprocess.Popen(
            [sys.executable, truncator_py, path, str(16 * page)],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert truncator.stdout.readline() == "ready\\n"
            with InterpreterPoolExecutor(max_workers=2) as pool:
                futures = [
                    pool.submit(pool_tasks.guarded_reads, path, page, expected, 50, 120)
                    for _ in range(4)
                ]
                results = [f.result() for f in futures]
        finally:
            open(path + ".stop", "w").close()
            assert truncator.wait(timeout=60) == 0
        for ok, faults in results:
            assert ok >= 50 and faults >= 50, results
        print("results", results)
        print("OK")
        """,
        tmp_path,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path)},
        truncator_py=str(tmp_path / "truncator.py"),
    )
