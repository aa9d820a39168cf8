"""m.resident() and m.residency(): page-cache residency through mincore."""

import os
import time

import pytest
from helpers import PAGE, mappings_of, needs_linux

import iommap

PAGES = 64


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(PAGES * PAGE))
    return path


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_residency_is_one_byte_per_page(data_file):
    with iommap.open(data_file) as m:
        m.pread(0, len(m))  # touch every page
        assert m.residency() == b"\x01" * PAGES
        assert m.resident() == PAGES * PAGE
        assert m.residency(PAGE - 1, 2) == b"\x01\x01"  # two pages touched
        assert m.resident(PAGE - 1, 2) == 2 * PAGE
        assert m.residency(5, 1) == b"\x01"
        assert m.residency(len(m)) == b""
        assert m.resident(len(m), 0) == 0


def mapped_kib(path):
    """The Rss of this process's mappings of `path`, in kB (smaps)."""
    return sum(e.get("Rss", 0) for e in mappings_of(path))


@needs_linux
def test_dontneed_drops_the_mapping_s_pages(data_file):
    # The hint itself is what is checked: the pages leave this process's
    # page tables (its Rss in smaps), which no eviction by the test does.
    with iommap.open(data_file) as m:
        m.pread(0, len(m))  # every page faulted into the mapping
        assert mapped_kib(data_file) == PAGES * PAGE // 1024
        m.advise(0, 0, "dontneed")
        assert mapped_kib(data_file) == 0
        assert m.pread(0, len(m)) == data_file.read_bytes()  # nothing lost
        assert mapped_kib(data_file) == PAGES * PAGE // 1024
        m.advise(PAGE, 2 * PAGE, "dontneed")
        assert mapped_kib(data_file) == (PAGES - 2) * PAGE // 1024


def test_willneed_brings_evicted_pages_back(data_file):
    with iommap.open(data_file) as m:
        evict(data_file)
        if m.resident() == PAGES * PAGE:
            pytest.skip("this filesystem keeps pages resident (tmpfs?)")
        assert 0 in m.residency()
        m.advise(0, 0, "willneed")
        assert wait_for(lambda: m.resident() == PAGES * PAGE)
        assert set(m.residency()) == {1}


def test_every_mode_may_ask(data_file):
    for mode in ("read", "write", "read_write"):
        with iommap.open(data_file, mode) as m:
            assert 0 <= m.resident() <= PAGES * PAGE
            assert len(m.residency()) == PAGES


def test_bounds_and_closed(data_file, tmp_path):
    with iommap.open(data_file) as m:
        with pytest.raises(iommap.OutOfBoundsError):
            m.resident(len(m) + 1)
        with pytest.raises(iommap.OutOfBoundsError):
            m.residency(0, len(m) + 1)
        with pytest.raises(iommap.BadArgumentValueError):
            m.resident(-1)
        with pytest.raises(iommap.BadArgumentTypeError):
            m.residency("0")
    with pytest.raises(iommap.ClosedError):
        m.resident()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with iommap.open(empty) as e:
        assert e.resident() == 0
        assert e.residency() == b""


def test_ranged_sync(data_file):
    with iommap.open(data_file) as m:
        m.pwrite(PAGE + 3, b"ranged")
        m.sync("sync", PAGE + 3, 6)
        m.sync("async", offset=PAGE)
        m.sync(offset=len(m))
        with pytest.raises(iommap.OutOfBoundsError):
            m.sync("sync", len(m), 1)
        with pytest.raises(iommap.BadArgumentValueError):
            m.sync("sync", -1)
    with open(data_file, "rb") as f:
        f.seek(PAGE + 3)
        assert f.read(6) == b"ranged"
