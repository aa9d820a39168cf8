"""Leaks: many cycles of the common calls leave the process's file
descriptors, mappings (/proc/self/maps) and anonymous memory (RssAnon)
where they were.

Each scenario runs in a subprocess: it warms up (so that caches, free lists
and allocator arenas settle), measures, runs the cycles, collects garbage,
and measures again.  Allowed slack, for allocator noise: RssAnon may grow by
at most 1 MiB (1,024 KiB: under 11 bytes per cycle over 100,000 cycles)
and /proc/self/maps by at most 4 lines (allocator arenas); descriptors must
match exactly.

Under ASan and valgrind (which set IOMMAP_LEAK_RSS=0) the RssAnon check is
not made: ASan's quarantine and valgrind's allocator hold freed memory on
purpose, and LeakSanitizer and memcheck do the leak checking there.
IOMMAP_LEAK_CYCLES lowers the count (make valgrind does).
"""

import json
import os

from helpers import run_child

CYCLES = int(os.environ.get("IOMMAP_LEAK_CYCLES", "100000"))
CHECK_RSS = os.environ.get("IOMMAP_LEAK_RSS", "1") != "0"
RSS_SLACK_KIB = 1024
MAPS_SLACK = 4

PRELUDE = r"""
import gc, json, os, sys, warnings
import iommap

path, cycles = sys.argv[1], int(sys.argv[2])
PAGE = os.sysconf("SC_PAGE_SIZE")

def fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))

def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)

def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

def measure(cycle, n):
    for i in range(max(n // 50, 200)):   # warm up
        cycle(i)
    gc.collect()
    before = (fds(), maps(), rss_anon())
    for i in range(n):
        cycle(i)
    gc.collect()
    after = (fds(), maps(), rss_anon())
    print(json.dumps({"fds": [before[0], after[0]], "maps": [before[1], after[1]],
                      "rss": [before[2], after[2]], "cycles": n}))
"""


def check(proc):
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["fds"][0] == r["fds"][1], "file descriptors leaked: %r" % (r,)
    assert r["maps"][1] - r["maps"][0] <= MAPS_SLACK, "mappings leaked: %r" % (r,)
    if CHECK_RSS:
        assert r["rss"][1] - r["rss"][0] <= RSS_SLACK_KIB, "anonymous memory grew: %r" % (r,)
    return r


def run(tmp_path, body, timeout=600):
    return check(
        run_child(PRELUDE + body, args=(str(tmp_path / "f"), str(CYCLES)), timeout=timeout)
    )


def test_open_pread_close_cycles(tmp_path):
    run(
        tmp_path,
        r"""
with open(path, "wb") as f:
    f.write(b"x" * 3 * PAGE)
buf = bytearray(100)

def cycle(i):
    m = iommap.open(path)
    assert len(m.pread(i % PAGE, 100)) == 100
    m.readinto(0, buf)
    m.close()

measure(cycle, cycles)
""",
    )


def test_caught_sigbus_cycles(tmp_path):
    run(
        tmp_path,
        r"""
m = iommap.open(path, create=True, size=4 * PAGE)
os.truncate(path, PAGE)          # pages 1..3 are gone
big = bytearray(2 * PAGE)

def cycle(i):
    try:
        if i % 3 == 0:
            m.pread(2 * PAGE, 16)
        elif i % 3 == 1:
            m.readinto(PAGE, big)
        else:
            m.pwrite(3 * PAGE, b"y" * 8)
    except iommap.SigbusError:
        return
    raise AssertionError("no SigbusError")

measure(cycle, cycles)
assert m.pread(0, 4) == bytes(4)   # the pages that remain still read
m.close()
""",
    )


def test_write_truncate_view_gather_cycles(tmp_path):
    run(
        tmp_path,
        r"""
m = iommap.open(path, create=True, size=4 * PAGE)
offsets = [0, PAGE, 2 * PAGE]

def cycle(i):
    m.pwrite(i % PAGE, [b"ab", (b"cd", memoryview(b"ef"))])
    m.truncate((2 + i % 3) * PAGE)
    v = m.view(0, 16)
    assert len(v) == 16
    v.release()
    m.gather(offsets[: 1 + i % 2], 64)
    m.scatter([0], 4, b"wxyz")
    m.advise(0, 0, "willneed")
    m.sync("async")
    m.resident()
    try:
        m.pread(m.position(), 1)
    except iommap.OutOfBoundsError:
        pass

measure(cycle, cycles // 2)
m.close()
""",
    )


def test_handles_collected_unclosed(tmp_path):
    run(
        tmp_path,
        r"""
warnings.simplefilter("ignore", ResourceWarning)
with open(path, "wb") as f:
    f.write(b"x" * PAGE)

def cycle(i):
    m = iommap.open(path)
    m.pread(0, 8)
    del m                 # closed by the finalizer

measure(cycle, cycles // 5)
""",
    )
