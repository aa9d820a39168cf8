"""m.remap(): map the file's current size again, without changing the file."""

import gc
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import PAGE, assert_error, loop_device, needs_real_mlock, pattern, read_file, run_ok

import iommap


def writer(path, code, **variables):
    """Runs `code` in another process that has `path` open for appending."""
    prelude = "".join("%s = %r\n" % item for item in variables.items())
    source = prelude + "f = open(%r, 'ab', buffering=0)\n" % str(path) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


def test_remap_follows_growth_by_another_process(tmp_path):
    path = tmp_path / "log.bin"
    path.write_bytes(b"")
    with iommap.open(path, "read") as m:
        assert len(m) == 0
        writer(path, "f.write(DATA)", DATA=pattern(3 * PAGE + 5))
        assert len(m) == 0  # the mapping does not follow by itself
        assert m.remap() == 3 * PAGE + 5
        assert len(m) == 3 * PAGE + 5
        assert m.pread(0, len(m)) == pattern(3 * PAGE + 5)
        writer(path, "f.write(b'tail')")
        assert m.remap() == 3 * PAGE + 9
        assert m[-4:] == b"tail"
        assert m.remap() == 3 * PAGE + 9  # nothing new: same size
    assert read_file(path) == pattern(3 * PAGE + 5) + b"tail"


def test_remap_after_an_outside_shrink_restores_service(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(3 * PAGE))
    run_ok(
        """
        import os, iommap
        m = iommap.open(PATH, "read")
        os.truncate(PATH, PAGE + 10)  # another party shrinks the file
        try:
            m.pread(2 * PAGE, 4)
        except iommap.SigbusError:
            pass
        else:
            raise AssertionError("expected SigbusError")
        assert m.remap() == PAGE + 10
        assert len(m) == PAGE + 10
        try:
            m.pread(2 * PAGE, 4)  # past the new end: refused, no fault
        except iommap.OutOfBoundsError:
            pass
        else:
            raise AssertionError("expected OutOfBoundsError")
        assert m.pread(0, PAGE + 10) == DATA[: PAGE + 10]
        assert os.path.getsize(PATH) == PAGE + 10  # remap never writes the file
        print("OK")
        """,
        PATH=str(path),
        PAGE=PAGE,
        DATA=pattern(3 * PAGE),
    )


def test_remap_never_changes_the_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(PAGE + 1))
    before = os.stat(path)
    with iommap.open(path) as m:
        assert m.remap() == PAGE + 1
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert read_file(path) == pattern(PAGE + 1)


def test_views_keep_their_old_mapping(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(PAGE))
    with iommap.open(path) as m:
        old = m.view()
        with open(path, "ab") as f:
            f.write(b"x" * PAGE)
        assert m.remap() == 2 * PAGE
        assert len(old) == PAGE  # still the old length, still the same pages
        m.pwrite(0, b"shared")
        assert bytes(old[:6]) == b"shared"
        assert len(m.view()) == 2 * PAGE
        del old
        gc.collect()


def test_remap_to_and_from_empty(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    with iommap.open(path, "read") as m:
        os.truncate(path, 0)
        assert m.remap() == 0
        assert m[:] == b""
        assert m.pread(0, 0) == b""
        path.write_bytes(b"again")
        assert m.remap() == 5
        assert m[:] == b"again"


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
def test_remap_in_every_mode(tmp_path, mode):
    path = tmp_path / "f.bin"
    path.write_bytes(b"12345")
    with iommap.open(path, mode) as m:
        os.truncate(path, 10)
        assert m.remap() == 10
        if mode != "read":
            m.pwrite(5, b"67890")
    if mode != "read":
        assert read_file(path) == b"1234567890"


def test_private_remap_shows_the_file_as_it_is(tmp_path):
    # A private handle's own changes were never in the file: the new mapping
    # shows the file; the old changes stay in views made before.
    path = tmp_path / "f.bin"
    path.write_bytes(b"file" * PAGE)
    with iommap.open(path, private=True) as m:
        m.pwrite(0, b"mine")
        view = m.view()
        with open(path, "ab") as f:
            f.write(b"more")
        assert m.remap() == 4 * PAGE + 4
        assert m.pread(0, 4) == b"file"
        assert bytes(view[:4]) == b"mine"
        assert m[-4:] == b"more"
        del view


@needs_real_mlock
def test_locked_handle_stays_locked_after_remap(tmp_path):
    from helpers import mappings_of

    path = tmp_path / "f.bin"
    path.write_bytes(pattern(PAGE))
    with iommap.open(path, "read", lock=True) as m:
        with open(path, "ab") as f:
            f.write(pattern(PAGE))
        m.remap()
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == 2 * PAGE


def test_remap_closed(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    m = iommap.open(path)
    m.close()
    with pytest.raises(iommap.ClosedError) as ei:
        m.remap()
    assert_error(ei, ValueError, "closed")


def test_remap_takes_no_arguments(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with iommap.open(path) as m, pytest.raises(TypeError):
        m.remap(10)  # type: ignore[call-arg]


def test_remap_while_readers_run(tmp_path):
    # Readers on other threads never see a half-swapped mapping: each read is
    # either inside the old size or the new one.
    import threading

    path = tmp_path / "f.bin"
    path.write_bytes(pattern(PAGE))
    stop = threading.Event()
    errors = []

    with iommap.open(path, "read") as m:

        def reader():
            while not stop.is_set():
                try:
                    n = len(m)
                    data = m.pread(0, min(n, PAGE))
                    if data != pattern(PAGE)[: len(data)]:
                        errors.append(data[:16])
                except iommap.OutOfBoundsError:
                    pass

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        with open(path, "ab") as f:
            for _ in range(200):
                f.write(b"z" * 100)
                f.flush()
                m.remap()
        stop.set()
        for t in threads:
            t.join()
        assert m.remap() == PAGE + 200 * 100
    assert errors == []


def test_remap_of_a_block_device_keeps_the_device_size(tmp_path):
    # A block device's st_size is 0: remap() asks the device for its size,
    # as open() does, and a window of it follows the same rule.
    import stat

    image = tmp_path / "disk.img"
    image.write_bytes(pattern(1 << 20))
    with loop_device(image) as device:
        assert stat.S_ISBLK(os.stat(device).st_mode)
        with iommap.open(device, "read") as m:
            assert m.remap() == 1 << 20
            assert m[-4:] == pattern(1 << 20)[-4:]
        with iommap.open(device, "read", offset=PAGE + 1) as w:
            assert w.remap() == (1 << 20) - PAGE - 1
            assert w[:4] == pattern(1 << 20)[PAGE + 1 : PAGE + 5]
