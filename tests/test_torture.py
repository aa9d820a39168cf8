"""Torture: eight threads mix pread/readinto/gather/pwrite/truncate (grow and
shrink)/advise/sync/close on a shared handle while another process shrinks
and grows the file with os.truncate, for a bounded time.

It must end on time (no deadlock), not crash, raise only the documented
exceptions of a file that changes underneath (ClosedError when another
thread closed the handle, OutOfBoundsError when another truncated it,
SigbusError when the other process shrank the file), and never return a
torn read.

Torn reads are detectable by construction: the file is a row of page-sized
records, and record i at version v is the 8-byte word (i << 32 | v) repeated.
Every write writes whole records, under the handle's exclusive lock, so a
record read through the handle holds at most one non-zero word, and its i
is the record's own index.  (Zero words are legitimate: pages the other
process truncated away come back as zeros, and a write cut short by SIGBUS
may leave part of a record zero.  Two different versions in one record
can only mean a read saw half of a write.)

The default run lasts 3 seconds; ``pytest -m long`` runs the long version
(IOMMAP_TORTURE_SECONDS, 120 by default).
"""

import os

import pytest
from helpers import run_child

TORTURE = r"""
import itertools, json, os, random, subprocess, sys, threading, time
import iommap

path, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
PAGE = os.sysconf("SC_PAGE_SIZE")
RECORDS = 96
THREADS = 8
versions = itertools.count(1)

def record(i, v):
    return ((i << 32) | v).to_bytes(8, "little") * (PAGE // 8)

def check(buf, first, what):
    view = memoryview(buf)
    for k in range(len(buf) // PAGE):
        words = set(view[k * PAGE:(k + 1) * PAGE].cast("Q"))
        words.discard(0)
        if len(words) > 1:
            raise AssertionError("torn %s: record %d holds %s" % (
                what, first + k, sorted((w >> 32, w & 0xffffffff) for w in words)[:4]))
        if words and words.pop() >> 32 != first + k:
            raise AssertionError("%s: record %d holds another record's data" % (what, first + k))

with open(path, "wb") as f:
    for i in range(RECORDS):
        f.write(record(i, next(versions)))

state = {"m": iommap.open(path)}
swap = threading.Lock()
deadline = time.monotonic() + seconds
failures = []
counts = {}
count_lock = threading.Lock()

def note(key):
    with count_lock:
        counts[key] = counts.get(key, 0) + 1

def op_read(m, rng):
    first = rng.randrange(RECORDS)
    # Up to 24 records (96 KiB): copies of 64 KiB and more release the GIL,
    # so reads and writes really overlap in time.
    n = rng.randint(1, min(24, RECORDS - first))
    how = rng.random()
    if how < 0.4:
        buf = m.pread(first * PAGE, n * PAGE)
    elif how < 0.8:
        buf = bytearray(n * PAGE)
        m.readinto(first * PAGE, buf)
    else:
        idx = [rng.randrange(RECORDS) for _ in range(n)]  # may repeat
        buf = m.gather([i * PAGE for i in idx], PAGE)
        for k, i in enumerate(idx):
            check(buf[k * PAGE:(k + 1) * PAGE], i, "gather")
        return "gather"
    check(buf, first, "read")
    return "read"

def op_write(m, rng):
    first = rng.randrange(RECORDS)
    n = rng.randint(1, min(20, RECORDS - first))
    recs = [record(first + k, next(versions)) for k in range(n)]
    m.pwrite(first * PAGE, recs if n > 1 else recs[0])
    return "write"

def op_truncate(m, rng):
    m.truncate(rng.randint(0, RECORDS) * PAGE)
    return "truncate"

def op_advise(m, rng):
    m.advise(rng.randrange(RECORDS) * PAGE, rng.choice([0, PAGE, 3 * PAGE]),
             rng.choice(["normal", "random", "sequential", "willneed", "dontneed"]))
    return "advise"

def op_sync(m, rng):
    m.sync("async" if rng.random() < 0.9 else "sync")
    return "sync"

def op_close(m, rng):
    with swap:
        if state["m"] is m:
            m.close()
            state["m"] = iommap.open(path)
    return "close"

OPS = [(op_read, 500), (op_write, 250), (op_truncate, 60), (op_advise, 80), (op_sync, 60),
       (op_close, 2)]
choices = [op for op, weight in OPS for _ in range(weight)]

def worker(n):
    rng = random.Random(seed * 100 + n)
    try:
        while time.monotonic() < deadline and not failures:
            m = state["m"]
            op = rng.choice(choices)
            try:
                note(op(m, rng))
            except iommap.ClosedError:
                note("ClosedError")
                with swap:  # another thread is replacing the handle: wait for it
                    pass
            except iommap.SigbusError:
                note("SigbusError")
            except iommap.OutOfBoundsError:
                note("OutOfBoundsError")
    except BaseException as e:
        import traceback
        failures.append("thread %d: %s" % (n, traceback.format_exc()))

shrinker = subprocess.Popen([sys.executable, "-c", '''
import os, random, sys, time
path, seconds, pages = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
page = os.sysconf("SC_PAGE_SIZE")
rng = random.Random(7)
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    os.truncate(path, rng.randint(0, pages) * page)
    n += 1
    time.sleep(rng.uniform(0, 0.004))
print(n)
''', path, str(seconds), str(RECORDS)], stdout=subprocess.PIPE, text=True)

threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=max(0.0, deadline - time.monotonic()) + 30)
stuck = [t.name for t in threads if t.is_alive()]
outside = int(shrinker.communicate(timeout=60)[0])
if stuck:
    print("threads still running 30 s after the deadline (deadlock):", stuck)
    sys.stdout.flush()
    os._exit(3)
if failures:
    print("\n".join(failures))
    sys.exit(1)

# The file after the dust settles: every record whole or zero.
state["m"].close()
with open(path, "rb") as f:
    data = f.read()
check(data[:len(data) // PAGE * PAGE], 0, "final file")
counts["outside truncates"] = outside
print(json.dumps(counts, sort_keys=True))
"""


def run_torture(tmp_path, seconds, seed=1):
    proc = run_child(
        TORTURE,
        args=(str(tmp_path / "f"), str(seconds), str(seed)),
        timeout=seconds + 120,
    )
    import json

    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    # It did something: reads went through and the file changed underneath.
    assert counts.get("read", 0) > 0, counts
    assert counts.get("outside truncates", 0) > 0, counts
    return counts


def test_torture_short(tmp_path):
    run_torture(tmp_path, seconds=3)


@pytest.mark.long
def test_torture_long(tmp_path, request):
    if "long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long torture run: select it with pytest -m long")
    seconds = float(os.environ.get("IOMMAP_TORTURE_SECONDS", "120"))
    for seed in range(3):
        run_torture(tmp_path, seconds=seconds / 3, seed=seed)
