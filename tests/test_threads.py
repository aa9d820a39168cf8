"""Thread safety: one read-write lock per handle, GIL released on big copies,
close while calls are in flight, no starvation, no deadlock.

Each test runs in a child with a timeout: a deadlock is a failure, not a
hung run.  No test measures speed.
"""

from helpers import PAGE, run_ok

MIB = 1024 * 1024

PRELUDE = """
import os, sys, threading, time
import iommap

errors = []

def guarded(fn):
    def run(*args):
        try:
            fn(*args)
        except BaseException as e:
            import traceback
            errors.append("".join(traceback.format_exception(type(e), e, e.__traceback__)))
    return run

def start(fn, *args):
    t = threading.Thread(target=guarded(fn), args=args, daemon=True)
    t.start()
    return t

def finish(threads):
    for t in threads:
        t.join()
    assert not errors, "\\n".join(errors)
"""


def child(code, tmp_path, timeout=90, **kwargs):
    """Runs `code` (a string, or a tuple of strings dedented one by one)
    after PRELUDE in a child."""
    pieces = code if isinstance(code, tuple) else (code,)
    return run_ok(
        (PRELUDE, *pieces),
        path=str(tmp_path / "f.bin"),
        page=PAGE,
        mib=MIB,
        timeout=timeout,
        **kwargs,
    )


def test_no_torn_reads_during_pwrite_or_scatter(tmp_path):
    # The writer fills a 1 MiB block with one byte value at a time (pwrite
    # or scatter, both exclusive); a reader (pread, readinto, gather) must
    # see all of one value, never a mix.
    child(
        """
        with open(path, "wb") as f:
            f.write(b"\\0" * mib)
        m = iommap.open(path)
        done = threading.Event()

        def writer():
            try:
                for i in range(400):
                    v = bytes([i % 255 + 1])
                    if i % 6 == 0:
                        m.pwrite(0, v * mib)
                    elif i % 6 == 1:
                        m.pwrite(0, [v * (mib // 2), [v * (mib // 4)], v * (mib // 4)])
                    elif i % 6 == 2:
                        m.pwrite(0, memoryview(bytearray(v * mib)))
                    else:
                        m.scatter(range(0, mib, mib // 16), mib // 16, v * mib)
            finally:
                done.set()

        def reader():
            buf = bytearray(mib)
            n = 0
            while not done.is_set() or n < 5:
                n += 1
                block = m.pread(0, mib)
                assert block == block[:1] * mib, "torn pread"
                m.readinto(0, buf)
                assert buf == buf[:1] * mib, "torn readinto"
                block = m.gather([mib // 2, 0], mib // 2)
                assert block == block[:1] * mib, "torn gather"

        threads = [start(writer)] + [start(reader) for _ in range(3)]
        finish(threads)
        m.close()
        print("OK")
        """,
        tmp_path,
    )


def test_no_torn_small_reads(tmp_path):
    # Below the GIL-release threshold the lock still guarantees atomicity.
    child(
        """
        with open(path, "wb") as f:
            f.write(b"\\0" * 4096)
        m = iommap.open(path)
        done = threading.Event()

        def writer():
            try:
                for i in range(3000):
                    m.pwrite(0, bytes([i % 250 + 1]) * 4000)
            finally:
                done.set()

        def reader():
            while not done.is_set():
                block = m.pread(0, 4000)
                assert block == block[:1] * 4000, "torn pread"

        finish([start(writer), start(reader), start(reader)])
        print("OK")
        """,
        tmp_path,
    )


def test_readers_concurrent_with_truncate(tmp_path):
    # truncate takes the lock exclusively: a reader sees the mapping before
    # or after a resize, never in between (no SigbusError, no crash, no
    # torn data).
    child(
        """
        first = bytes(range(256)) * (mib // 256)
        with open(path, "wb") as f:
            f.write(first)
        m = iommap.open(path)
        done = threading.Event()

        def resizer():
            try:
                for i in range(150):
                    m.truncate(2 * mib if i % 2 == 0 else mib + (i % 7) * page)
                m.truncate(mib)
            finally:
                done.set()

        def reader():
            buf = bytearray(mib)
            while not done.is_set():
                assert m.pread(0, mib) == first
                m.readinto(0, buf)
                assert buf == first
                try:
                    tail = m.pread(mib, mib)
                except iommap.OutOfBoundsError:
                    pass
                else:
                    assert tail == bytes(mib), "grown area is not zero"
                size = m.position()
                assert mib <= size <= 2 * mib, size

        finish([start(resizer)] + [start(reader) for _ in range(3)])
        assert m.position() == mib
        assert m.pread(0, mib) == first
        print("OK")
        """,
        tmp_path,
    )


def test_close_while_threads_hammer(tmp_path):
    # Every call either succeeds with the right bytes or raises ClosedError;
    # nothing touches unmapped memory (a crash fails the child).
    child(
        """
        content = os.urandom(4 * mib)
        with open(path, "wb") as f:
            f.write(content)

        for round in range(25):
            m = iommap.open(path)
            go = threading.Barrier(5)
            outcomes = []

            def hammer(kind):
                go.wait()
                buf = bytearray(256 * 1024)
                ok = closed = 0
                while True:
                    try:
                        if kind == 0:
                            assert m.pread(0, 4 * mib) == content
                        elif kind == 1:
                            assert m.pread(12345, 100) == content[12345:12445]
                        elif kind == 2:
                            m.readinto(mib, buf)
                            assert buf == content[mib:mib + len(buf)]
                        else:
                            m.advise(0, 0, "willneed")
                            assert m.position() == 4 * mib
                        ok += 1
                    except iommap.ClosedError as e:
                        assert e.reason == "closed"
                        closed += 1
                        if closed >= 3:
                            break
                outcomes.append((ok, closed))

            threads = [start(hammer, k) for k in range(4)]
            go.wait()
            time.sleep(0.002 * (round % 5))
            m.close()
            assert m.closed
            finish(threads)
            assert len(outcomes) == 4
            try:
                m.pread(0, 1)
            except iommap.ClosedError:
                pass
            else:
                raise AssertionError("pread after close")
        print("OK")
        """,
        tmp_path,
    )


def test_close_while_writers_and_resizers_run(tmp_path):
    child(
        """
        with open(path, "wb") as f:
            f.write(b"\\0" * 2 * mib)
        for round in range(15):
            m = iommap.open(path)
            go = threading.Barrier(4)

            def writer():
                go.wait()
                while True:
                    try:
                        m.pwrite(0, b"w" * mib)
                    except iommap.ClosedError:
                        return

            def resizer():
                go.wait()
                i = 0
                while True:
                    i += 1
                    try:
                        m.truncate(2 * mib if i % 2 else mib + page)
                    except iommap.ClosedError:
                        return

            def syncer():
                go.wait()
                while True:
                    try:
                        m.sync("async")
                        m.pread(0, mib)
                    except iommap.ClosedError:
                        return

            threads = [start(writer), start(resizer), start(syncer)]
            go.wait()
            time.sleep(0.003 * (round % 4))
            m.close()
            m.close()
            finish(threads)
        print("OK")
        """,
        tmp_path,
    )


def test_reader_storm_does_not_starve_writers(tmp_path):
    # The readers copy into buffers of their own (readinto: no allocation),
    # so each spends nearly all its time in a GIL-free copy holding the read
    # lock.  A lock that prefers writers lets every waiting pwrite, truncate
    # and close in once the copies in flight end; the writer pauses before
    # each call so that it always arrives in the middle of the storm.  No
    # clock but the deadline, which stands for "forever".
    #
    # Limit, written down: on a 2-core machine a reader-preferring lock
    # (glibc's default) delays each write by anything from milliseconds to
    # seconds, as the scheduler decides, so this test catches such a lock
    # when the delays add up past the deadline (about a minute for 160
    # writes here; about a second with the writer-preferring lock).  A count of the
    # reads done while one write waits is no better: a writer that has let
    # the GIL go waits for a CPU as well as for the lock.
    child(
        """
        with open(path, "wb") as f:
            f.write(b"\\0" * 8 * mib)
        m = iommap.open(path)
        stop = threading.Event()
        reads = [0] * 6

        def reader(i):
            buf = bytearray(8 * mib)
            while not stop.is_set():
                try:
                    m.readinto(0, buf)
                except iommap.ClosedError:
                    return
                reads[i] += 1

        readers = [start(reader, i) for i in range(6)]
        while min(reads) < 2:
            time.sleep(0.001)
        done = threading.Event()

        def writer():
            for i in range(150):
                time.sleep(0.002)
                m.pwrite(i, b"w" * 1000)
            for i in range(10):
                time.sleep(0.002)
                m.truncate(8 * mib + (i % 2) * page)
            time.sleep(0.002)
            m.close()
            done.set()

        w = start(writer)
        if not done.wait(60):
            print("writer starved", flush=True)
            os._exit(1)
        stop.set()
        finish(readers + [w])
        print("OK")
        """,
        tmp_path,
    )


# With a huge switch interval the interpreter never takes the GIL away from
# a thread: another thread runs only when the GIL is given up.  So a
# pure-Python thread that makes progress while the main thread is inside a
# run of big copies proves those calls released the GIL.
GIL_WATCH = """
sys.setswitchinterval(1000)

def assert_releases_the_gil(calls, pause=0):
    state = {"busy": False, "seen": 0, "stop": False}

    def watcher():
        while not state["stop"]:
            if state["busy"]:
                state["seen"] += 1
            time.sleep(0)   # lets the GIL go between checks

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    time.sleep(0.01)
    for name, call in calls.items():
        state["seen"] = 0
        state["busy"] = True
        for _ in range(1000):  # a loaded machine may not run the watcher at once
            if pause:  # the other threads may run, and the watcher must not count it
                state["busy"] = False
                time.sleep(pause)
                state["busy"] = True
            call()
            if state["seen"]:
                break
        state["busy"] = False
        assert state["seen"] > 0, name + ": the GIL was never released"
    state["stop"] = True
    t.join()
"""


def test_large_copies_release_the_gil(tmp_path):
    child(
        (
            GIL_WATCH,
            """
        with open(path, "wb") as f:
            f.write(b"\\1" * 4 * mib)
        m = iommap.open(path, "read")
        buf = bytearray(4 * mib)
        assert_releases_the_gil({
            "pread": lambda: m.pread(0, 4 * mib),
            "readinto": lambda: m.readinto(0, buf),
        })
        print("OK")
        """,
        ),
        tmp_path,
    )


def test_large_batch_copies_release_the_gil(tmp_path):
    # The same for gather and scatter: 4 MiB in 1 MiB chunks each.
    child(
        (
            GIL_WATCH,
            """
        with open(path, "wb") as f:
            f.write(b"\\1" * 4 * mib)
        m = iommap.open(path)
        offsets = [0, mib, 2 * mib, 3 * mib]
        out = bytearray(4 * mib)
        data = b"\\2" * 4 * mib
        assert_releases_the_gil({
            "gather": lambda: m.gather(offsets, mib, out),
            "scatter": lambda: m.scatter(offsets, mib, data),
        })
        assert m.pread(0, 4 * mib) == data
        print("OK")
        """,
        ),
        tmp_path,
    )


def test_waiting_for_the_handle_lock_releases_the_gil(tmp_path):
    # A small pread holds the GIL for its copy, but while it waits for a
    # pwrite on another thread to leave the handle lock it must not: other
    # threads would stop for as long as the pwrite takes.
    child(
        (
            GIL_WATCH,
            """
        with open(path, "wb") as f:
            f.write(b"\\0" * 16 * mib)
        m = iommap.open(path)
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                m.pwrite(0, b"\\1" * 16 * mib)  # the lock held, the GIL not

        w = start(writer)
        try:
            assert_releases_the_gil({"pread waiting": lambda: m.pread(0, 1)}, pause=0.001)
        finally:
            stop.set()
            finish([w])
        print("OK")
        """,
        ),
        tmp_path,
    )


def test_many_handles_many_threads(tmp_path):
    # Handles are independent: each thread opens, uses and closes its own.
    child(
        """
        with open(path, "wb") as f:
            f.write(bytes(range(256)) * 1024)

        def worker(i):
            for j in range(30):
                with iommap.open(path) as m:
                    m.pwrite(i * 1024, bytes([i]) * 1024)
                    assert m.pread(i * 1024, 1024) == bytes([i]) * 1024
                    m.advise(0, 0, "random")
                    m.sync("async")

        finish([start(worker, i) for i in range(8)])
        print("OK")
        """,
        tmp_path,
    )
