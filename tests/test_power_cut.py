"""sync() against a simulated power cut (tests/lazyfs): what it returns
from is durable, data, size and the entry of a created file; what was not
synced is lost, which shows that these tests see the difference.

Reading a file back after SIGKILL shows nothing of this (the page cache
outlives the process); the simulator keeps only what reached it with an
fsync, as a disk keeps only what was flushed from its cache.
"""

import os

import pytest
from helpers import PAGE
from lazyfs import LazyMount, unavailable

import iommap

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))

ZEROS = b"\0" * 4 * PAGE


@pytest.fixture
def fs(tmp_path):
    with LazyMount(tmp_path) as fs:
        yield fs


@pytest.fixture
def durable(fs):
    """A file of four zero pages, data and entry durable."""
    path = fs.root / "f.bin"
    path.write_bytes(ZEROS)
    for p in (path, fs.root):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return path


def expected(*writes):
    data = bytearray(ZEROS)
    for offset, chunk in writes:
        data[offset : offset + len(chunk)] = chunk
    return bytes(data)


@pytest.mark.parametrize("mode", [None, "sync"])
def test_synced_writes_survive(fs, durable, mode):
    with iommap.open(durable) as m:
        m.pwrite(3 * PAGE - 2, b"durable")
        m.pwrite(0, [b"first", [b" page"]])
        if mode is None:
            m.sync()
        else:
            m.sync(mode)
    fs.power_cut()
    assert durable.read_bytes() == expected((3 * PAGE - 2, b"durable"), (0, b"first page"))


def test_unsynced_writes_are_lost(fs, durable):
    with iommap.open(durable) as m:
        m.pwrite(3 * PAGE - 2, b"durable")
        assert m.pread(3 * PAGE - 2, 7) == b"durable"
    assert durable.read_bytes() == expected((3 * PAGE - 2, b"durable"))  # before the cut
    fs.power_cut()
    assert durable.read_bytes() == ZEROS


def test_a_synced_range_survives_and_the_rest_need_not(fs, durable):
    with iommap.open(durable) as m:
        m.pwrite(PAGE, b"in range")
        m.sync(offset=PAGE, length=PAGE)
    fs.power_cut()
    assert durable.read_bytes()[PAGE : PAGE + 8] == b"in range"


def test_a_shrink_to_empty_is_durable_after_sync(fs, durable):
    # Nothing is left to msync: only the size's own flush makes it durable.
    with iommap.open(durable) as m:
        m.truncate(0)
        m.sync()
    fs.power_cut()
    assert durable.read_bytes() == b""


def test_an_unsynced_shrink_is_lost(fs, durable):
    with iommap.open(durable) as m:
        m.truncate(PAGE)
    fs.power_cut()
    assert durable.read_bytes() == ZEROS


def test_a_grow_is_durable_after_sync(fs, durable):
    with iommap.open(durable) as m:
        m.truncate(6 * PAGE)
        m.pwrite(6 * PAGE - 4, b"tail")
        m.sync()
    fs.power_cut()
    assert durable.read_bytes() == ZEROS + bytes(2 * PAGE - 4) + b"tail"


@pytest.mark.parametrize("size", [None, 2 * PAGE])
def test_a_created_file_is_there_after_its_first_sync(fs, size):
    path = fs.root / "new.bin"
    with iommap.open(path, create=True, size=size) as m:
        if size:
            m.pwrite(size - 3, b"end")
        m.sync()
    fs.power_cut()
    assert path.read_bytes() == (bytes(size - 3) + b"end" if size else b"")


def test_a_created_file_is_lost_without_sync(fs):
    path = fs.root / "new.bin"
    with iommap.open(path, create=True, size=PAGE) as m:
        m.pwrite(0, b"gone")
    assert path.exists()
    fs.power_cut()
    assert not path.exists()
