"""Handles across os.fork().

A forked child inherits every handle: its mapping (shared pages stay shared
with the parent, private pages are copied on write) and its descriptor.
Each scenario runs in its own subprocess, which forks; a child that crashes
or hangs fails the test (the subprocess has a timeout).
"""

from helpers import run_child

# in_child runs `body` in a forked child of the subprocess and returns its
# exit status to the parent, which fails unless it is 0; start_child forks
# one that runs beside the parent.  A child never returns into the caller:
# it leaves with os._exit.
PRELUDE = """
import os, sys, threading, time
import iommap

SLOWDOWN = float(os.environ.get("IOMMAP_TEST_SLOWDOWN", "1"))

def in_child(body, timeout=20.0):
    timeout *= SLOWDOWN
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("forked child hung (deadlock)")
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit("forked child failed: %d" % code)

# Forks a child that runs body() while the caller goes on; returns its pid.
# The child exits 0, or 1 after printing what body raised.
def start_child(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
            os._exit(0)
        except BaseException:
            import traceback; traceback.print_exc()
            os._exit(1)
    return pid

path = sys.argv[1]
"""


def run(tmp_path, body, timeout=90):
    proc = run_child(PRELUDE + body, args=(str(tmp_path / "f"),), timeout=timeout)
    assert proc.stdout.strip().endswith("ok"), proc.stdout


def test_shared_mapping_is_shared_both_ways(tmp_path):
    run(
        tmp_path,
        """
m = iommap.open(path, create=True, size=8192)
m.pwrite(0, b"before")
r1, w1 = os.pipe()   # parent -> child: "written"
r2, w2 = os.pipe()   # child -> parent: "written"

def child():
    assert m.pread(0, 6) == b"before"
    os.read(r1, 1)
    assert m.pread(100, 5) == b"after", m.pread(100, 5)
    m.pwrite(200, b"child")
    m.sync()
    os.write(w2, b"x")

pid = start_child(child)
m.pwrite(100, b"after")
os.write(w1, b"x")
os.read(r2, 1)
assert m.pread(200, 5) == b"child", m.pread(200, 5)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
with open(path, "rb") as f:
    data = f.read()
assert data[:6] == b"before" and data[100:105] == b"after" and data[200:205] == b"child"
m.close()
print("ok")
""",
    )


def test_private_mapping_stays_private_both_ways(tmp_path):
    run(
        tmp_path,
        """
with open(path, "wb") as f:
    f.write(b"F" * 8192)
m = iommap.open(path, private=True)
m.pwrite(0, b"parent-before")
r1, w1 = os.pipe()
r2, w2 = os.pipe()

def child():
    # The child's copy starts as the parent's was at fork.
    assert m.pread(0, 13) == b"parent-before"
    m.pwrite(0, b"CHILD")
    m.pwrite(4096, b"CHILD")
    os.write(w2, b"x")
    os.read(r1, 1)
    # The parent's later write is not seen here.
    assert m.pread(0, 13) == b"CHILDt-before", m.pread(0, 13)
    assert m.pread(100, 6) == b"FFFFFF", m.pread(100, 6)
    m.close()

pid = start_child(child)
os.read(r2, 1)
m.pwrite(100, b"parent")
os.write(w1, b"x")
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
assert m.pread(0, 13) == b"parent-before"
assert m.pread(4096, 5) == b"FFFFF"
assert m.pread(100, 6) == b"parent"
m.close()
with open(path, "rb") as f:
    assert f.read() == b"F" * 8192
print("ok")
""",
    )


def test_child_keeps_its_handle_after_the_parent_closes(tmp_path):
    run(
        tmp_path,
        """
m = iommap.open(path, create=True, size=4096)
m.pwrite(0, b"data")
r, w = os.pipe()

def child():
    os.read(r, 1)               # the parent has closed its handle
    assert not m.closed
    assert m.pread(0, 4) == b"data"
    m.pwrite(4, b"more")
    m.truncate(8192)            # its own descriptor, still open
    assert len(m) == 8192
    m.close()

pid = start_child(child)
m.close()
os.write(w, b"x")
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
assert os.path.getsize(path) == 8192
with open(path, "rb") as f:
    assert f.read(8) == b"datamore"
print("ok")
""",
    )


# A reader thread keeps the handle's lock held most of the time (large
# copies release the GIL while holding it) and a writer thread queues for it
# exclusively; the main thread forks repeatedly.  Each child must be able to
# take the lock both ways (pwrite, truncate, close) and to fork again.
LOCK_HELD_AT_FORK = """
SIZE = 32 << 20
m = iommap.open(path, create=True, size=SIZE)
stop = False
buf = bytearray(SIZE)

def reader():
    while not stop:
        m.readinto(0, buf)

def writer():  # away from offset 0, which the children write and read back
    while not stop:
        m.pwrite(1 << 20, b"w" * 65536)

threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=writer)]
for t in threads:
    t.start()
time.sleep(0.2)

def child():
    m.pwrite(0, b"child")
    assert m.pread(0, 5) == b"child"
    m.sync()
    m.truncate(SIZE)
    # A thread in the child and a grandchild use the same handle too.
    t = threading.Thread(target=lambda: m.pread(0, 1 << 20))
    t.start(); t.join()
    in_child(lambda: m.pwrite(0, b"grandchild"))
    m.close()
    assert m.closed

try:
    for i in range(FORKS):
        in_child(child)
finally:
    stop = True
    for t in threads:
        t.join()
m.close()
print("ok")
"""


def test_fork_while_other_threads_hold_the_lock_does_not_deadlock(tmp_path):
    run(tmp_path, "FORKS = 20\n" + LOCK_HELD_AT_FORK, timeout=240)


def test_fork_child_with_a_closed_handle(tmp_path):
    run(
        tmp_path,
        """
m = iommap.open(path, create=True, size=4096)
m.close()

def child():
    assert m.closed
    try:
        m.pread(0, 1)
    except iommap.ClosedError:
        pass
    else:
        raise AssertionError("pread on a closed handle in the child")
    m.close()

in_child(child)
print("ok")
""",
    )
