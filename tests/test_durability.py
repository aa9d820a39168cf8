"""What survives the writing process: shared writes do, private ones never.

A power cut cannot be simulated here; a SIGKILL can.  After it, a shared
mapping's writes are in the file (the page cache belongs to the file, not
the process); a private mapping's writes are gone.
"""

import os
import signal

import pytest
from helpers import PAGE, read_file, run_py

import iommap


def _killed_child(code, path, **variables):
    rc, out, err = run_py(
        """
        import os, signal, iommap
        """
        + code
        + """
        print("WRITTEN", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        path=path,
        page=PAGE,
        **variables,
    )
    assert "WRITTEN" in out, (rc, out, err)
    assert rc == -signal.SIGKILL, (rc, out, err)


# The page cache outlives SIGKILL, so these pass with or without sync: they
# show that the process's end loses nothing.  What sync itself does is
# shown by test_sync_visible.py (the kernel's dirty-page counts) and
# test_power_cut.py (a file system that drops what was not synced).
@pytest.mark.parametrize("sync", ["sync", "async"])
def test_sync_then_sigkill_keeps_the_writes(make_file, sync):
    path = make_file(b"\0" * 4 * PAGE)
    _killed_child(
        """
        m = iommap.open(path)
        m.pwrite(3 * page, b"durable")
        m.pwrite(0, [b"first", [b" page"]])
        m.sync(sync)
        """,
        path,
        sync=sync,
    )
    content = read_file(path)
    assert content[:10] == b"first page"
    assert content[3 * PAGE : 3 * PAGE + 7] == b"durable"
    assert len(content) == 4 * PAGE


def test_shared_writes_survive_sigkill_without_sync(make_file):
    path = make_file(b"\0" * 2 * PAGE)
    _killed_child(
        """
        m = iommap.open(path)
        m.pwrite(page - 3, b"no sync needed")
        """,
        path,
    )
    assert read_file(path)[PAGE - 3 : PAGE + 11] == b"no sync needed"


def test_truncate_survives_sigkill(make_file):
    path = make_file(b"abc")
    _killed_child(
        """
        m = iommap.open(path)
        m.truncate(5 * page)
        m.pwrite(5 * page - 4, b"last")
        m.sync()
        """,
        path,
    )
    content = read_file(path)
    assert len(content) == 5 * PAGE
    assert content[:3] == b"abc"
    assert content[-4:] == b"last"


def test_create_and_size_survive_sigkill(tmp_path):
    path = str(tmp_path / "new.bin")
    _killed_child(
        """
        m = iommap.open(path, create=True, size=2 * page)
        m.pwrite(0, b"created")
        m.sync()
        """,
        path,
    )
    content = read_file(path)
    assert content == b"created" + b"\0" * (2 * PAGE - 7)


@pytest.mark.parametrize("mode", ["read_write", "write"])
def test_private_writes_never_reach_the_file(make_file, mode):
    original = bytes(range(256)) * (2 * PAGE // 256)
    path = make_file(original)
    _killed_child(
        """
        m = iommap.open(path, mode, private=True)
        m.pwrite(0, b"private" * 100)
        m.sync()
        m.sync("async")
        """,
        path,
        mode=mode,
    )
    assert read_file(path) == original


def test_private_writes_never_reach_the_file_on_clean_exit(make_file):
    original = b"o" * 3 * PAGE
    path = make_file(original)
    rc, out, err = run_py(
        """
        import iommap
        with iommap.open(path, private=True) as m:
            m.pwrite(page, b"x" * 100)
            m.sync()
        m2 = iommap.open(path, private=True)
        m2.pwrite(0, b"leaked handle, collected at exit")
        print("OK")
        """,
        path=path,
        page=PAGE,
    )
    assert rc == 0 and "OK" in out, (rc, out, err)
    assert read_file(path) == original


def test_sync_then_independent_read(make_file):
    # In-process check with a plain os.pread on a separate descriptor.
    path = make_file(b"\0" * PAGE)
    with iommap.open(path) as m:
        m.pwrite(100, b"visible")
        m.sync()
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 7, 100) == b"visible"
        finally:
            os.close(fd)
