"""The tail recipe of docs/following.md, against a real writer process.

The class under test is the one in the guide, executed from its code block,
so the guide cannot drift from what is tested.  The writer appends records
as fast as it can while the reader follows; at each rotation the writer
waits until the reader has read everything so far (what a truncation
destroys cannot be read by anyone), rotates, and waits until the reader has
followed the rotation (a reader must look between two rotations, as the
guide says).  Between rotations nothing is coordinated."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import iommap

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "following.md"

WRITER = r"""
import os, sys, time

path, ack, rounds, per_round, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])


def record(seq):
    return b"%012d %s\n" % (seq, b"x" * (seq % 1000))


def wait_for(consumed, rotations):
    deadline = time.monotonic() + 120
    got = None
    while True:
        try:
            with open(ack, "rb") as f:
                got = f.read().split()
            if len(got) == 2 and int(got[0]) >= consumed and int(got[1]) >= rotations:
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            sys.exit("the reader stalled at %r, waiting for %d %d" % (got, consumed, rotations))
        time.sleep(0.0005)


f = open(path, "ab", buffering=0)
seq = written = 0
started = time.perf_counter()
busy = 0.0
for rnd in range(rounds):
    t0 = time.perf_counter()
    for _ in range(per_round // batch):
        chunk = b"".join(record(seq + i) for i in range(batch))
        seq += batch
        f.write(chunk)
        written += len(chunk)
    busy += time.perf_counter() - t0
    if rnd == rounds - 1:
        break
    wait_for(written, rnd)  # the reader has every byte so far
    if rnd % 2 == 0:  # replaced: renamed away, a new file at the path
        os.replace(path, path + ".1")
        f.close()
        f = open(path, "ab", buffering=0)
    else:  # truncated in place
        os.ftruncate(f.fileno(), 0)
    wait_for(written, rnd + 1)  # the reader followed the rotation
f.close()
print(seq, written, busy)
"""


def load_tail():
    """The Tail class, from the guide's code block that defines it."""
    blocks = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.M | re.S)
    (source,) = [b for b in blocks if "class Tail" in b]
    namespace = {"os": os, "iommap": iommap}
    exec(compile(source, str(GUIDE), "exec"), namespace)
    return namespace["Tail"]


def expected_stream(count):
    return b"".join(b"%012d %s\n" % (seq, b"x" * (seq % 1000)) for seq in range(count))


def follow(tmp_path, rounds, per_round, batch):
    Tail = load_tail()
    path = tmp_path / "app.log"
    ack = tmp_path / "ack"
    path.write_bytes(b"")
    tail = Tail(str(path), chunk=1 << 20)

    def acknowledge(consumed, rotations):
        tmp = tmp_path / "ack.tmp"
        tmp.write_bytes(b"%d %d" % (consumed, rotations))
        os.replace(tmp, ack)

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(ack)]
        + [str(n) for n in (rounds, per_round, batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks = []
    consumed = 0
    acked = (-1, -1)
    deadline = time.monotonic() + 300
    try:
        while True:
            data = tail.read()
            if data:
                chunks.append(data)
                consumed += len(data)
            state = (consumed, tail.rotations)
            if state != acked:
                acknowledge(*state)
                acked = state
            if not data:
                if writer.poll() is not None:
                    # The writer is done: one more look, then nothing is left.
                    rest = tail.read()
                    while rest:
                        chunks.append(rest)
                        rest = tail.read()
                    break
                time.sleep(0.0002)
            assert time.monotonic() < deadline, "the reader did not finish"
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        tail.close()
    count, written, busy = out.split()
    return b"".join(chunks), int(count), int(written), float(busy), tail.rotations


def test_tail_reads_every_byte_once_through_both_rotations(tmp_path):
    # 6 rounds: 3 renames and 2 truncations between them.
    got, count, written, busy, rotations = follow(tmp_path, rounds=6, per_round=15_000, batch=100)
    assert len(got) == written
    assert got == expected_stream(count)  # every record once, in order, whole
    assert rotations == 5
    print("writer appended %.1f MB at %.0f MB/s" % (written / 1e6, written / 1e6 / busy))


def test_tail_with_single_record_writes(tmp_path):
    # One write() per record: the reader sees records cut anywhere.
    got, count, written, _, rotations = follow(tmp_path, rounds=3, per_round=3000, batch=1)
    assert got == expected_stream(count)
    assert rotations == 2


def test_tail_of_an_idle_file_returns_nothing(tmp_path):
    Tail = load_tail()
    path = tmp_path / "idle.log"
    path.write_bytes(b"")
    tail = Tail(str(path))
    assert tail.read() == b""
    os.replace(path, str(path) + ".1")  # renamed away, no new file yet
    assert tail.read() == b""
    path.write_bytes(b"new\n")
    assert tail.read() == b"new\n"
    assert tail.rotations == 1
    tail.close()
