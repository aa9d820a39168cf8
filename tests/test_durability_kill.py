"""Durability: what a writer has written and synced is in the file after it
is killed with SIGKILL at a random moment; what it wrote and scheduled with
sync("async") is in the file after it exits normally.

(SIGKILL ends the process, not the machine: the page cache survives it, so
these tests check that iommap acknowledges nothing it has not put in the
file's pages, not the disk's own durability across power loss.)
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from helpers import SLOWDOWN, run_child

RECORD = 64
ROUNDS = int(os.environ.get("IOMMAP_KILL_ROUNDS", "20"))

# Writes numbered records round-robin over a 64-record file through one
# shared handle, syncs after each (a range or the whole file, sync or the
# occasional async+sync pair), then acknowledges the record number on stdout.
WRITER = textwrap.dedent(
    r"""
    import os, sys
    import iommap
    path = sys.argv[1]
    RECORD, SLOTS = 64, 64
    m = iommap.open(path, create=True, size=RECORD * SLOTS)
    n = 0
    while True:
        n += 1
        body = ("%012d" % n).encode() * (RECORD // 12) + b"#" * (RECORD % 12)
        slot = n % SLOTS
        if n % 3:
            m.pwrite(slot * RECORD, body)
        else:
            m.pwrite(slot * RECORD, [body[:10], [body[10:]]])
        if n % 5 == 0:
            m.sync("async")
        if n % 2:
            m.sync()
        else:
            m.sync("sync", slot * RECORD, RECORD)
        sys.stdout.write("%d\n" % n)
        sys.stdout.flush()
    """
)


def expected_body(n):
    return ("%012d" % n).encode() * (RECORD // 12) + b"#" * (RECORD % 12)


def test_synced_writes_survive_sigkill(tmp_path):
    rng = random.Random(1234)
    for round_ in range(ROUNDS):
        path = tmp_path / ("f%d" % round_)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # Wait for the first acknowledgement, then kill at a random moment.
            first = proc.stdout.readline()
            assert first, proc.stderr.read().decode()
            time.sleep(rng.uniform(0, 0.2) * SLOWDOWN)
            proc.send_signal(signal.SIGKILL)
            rest = proc.stdout.read()
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        acked = [int(line) for line in (first + rest).split()]
        assert acked and acked == list(range(1, len(acked) + 1))
        data = path.read_bytes()
        assert len(data) == RECORD * 64
        # Each slot holds the last acknowledged record written to it, or a
        # later one (written, not yet acknowledged, whole or in part).
        last = acked[-1]
        for slot in range(64):
            written = [n for n in acked if n % 64 == slot]
            if not written:
                continue
            got = data[slot * RECORD : (slot + 1) * RECORD]
            n = written[-1]
            assert got == expected_body(n) or (n + 64 > last and _is_later_or_partial(got, n)), (
                "round %d: slot %d lost record %d (last acked %d): %r"
                % (round_, slot, n, last, got)
            )


def _is_later_or_partial(got, n):
    """A record written after the last acknowledgement may be whole or cut;
    anything else (older data, zeros) would be a lost write."""
    later = expected_body(n + 64)
    if got == later:
        return True
    # Cut mid-copy: each byte from either the acknowledged or the later record.
    old = expected_body(n)
    return all(g in (a, b) for g, a, b in zip(got, old, later, strict=False))


def test_async_synced_writes_are_in_the_file_after_a_normal_exit(tmp_path):
    path = tmp_path / "f"
    run_child(
        """
        import sys
        import iommap
        m = iommap.open(sys.argv[1], create=True, size=1 << 20)
        for i in range(256):
            m.pwrite(i * 4096, b"%08d" % i * 512)
        m.sync("async")
        # Exit without close: the handle is finalized at shutdown, or not at all.
        """,
        args=(str(path),),
    )
    data = path.read_bytes()
    assert len(data) == 1 << 20
    for i in range(256):
        assert data[i * 4096 : (i + 1) * 4096] == b"%08d" % i * 512


def test_unsynced_writes_are_in_the_file_after_os_exit(tmp_path):
    """os._exit skips every finalizer: the shared mapping's pages are the
    file's pages all the same."""
    path = tmp_path / "f"
    run_child(
        """
        import os, sys
        import iommap
        m = iommap.open(sys.argv[1], create=True, size=8192)
        m.pwrite(100, b"no sync, no close")
        os._exit(0)
        """,
        args=(str(path),),
    )
    assert path.read_bytes()[100:117] == b"no sync, no close"
