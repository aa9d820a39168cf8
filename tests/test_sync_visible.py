"""What sync() did, seen in the kernel's own counts of the file's pages.

Reading a file back shows nothing about sync: the page cache outlives the
writing process.  cachestat(2) (Linux 6.5 and later, through
iommap.pagecache) counts the file's dirty pages and those under write-back:
after sync("sync") there are none left in the range it covered, and without
it the pages written through the mapping stay dirty (the kernel writes them
back on its own only after about 30 s).
"""

import os

import pytest
from helpers import PAGE

import iommap
from iommap import pagecache

PAGES = 64

needs_cachestat = pytest.mark.skipif(
    not pagecache.cachestat_available(), reason="no cachestat(2) on this kernel (Linux < 6.5)"
)


def unwritten(path, offset=0, length=None):
    """Pages of the range that are dirty or under write-back."""
    r = pagecache.residency(path, offset=offset, length=length)
    return r.dirty_pages + r.writeback_pages


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"\0" * PAGES * PAGE)
    with open(p, "rb+") as f:
        os.fsync(f.fileno())
    if unwritten(p):
        pytest.fail("a freshly fsynced file has dirty pages")
    return p


def dirty_all(m, path):
    m.pwrite(0, b"\1" * PAGES * PAGE)
    n = pagecache.residency(path).dirty_pages
    if n != PAGES:
        pytest.skip(f"the kernel wrote {PAGES - n} pages back at once (memory pressure?)")


@needs_cachestat
def test_sync_leaves_no_dirty_page(path):
    with iommap.open(path) as m:
        dirty_all(m, path)
        m.sync()
        assert unwritten(path) == 0
        dirty_all(m, path)
        m.sync("sync")
        assert unwritten(path) == 0
    assert path.read_bytes() == b"\1" * PAGES * PAGE


@needs_cachestat
def test_sync_of_a_range_writes_at_least_its_pages(path):
    # The file system may write more than the range (ext4's journal commit
    # writes the whole inode's data): only the range's side is checked.
    with iommap.open(path) as m:
        dirty_all(m, path)
        m.sync(offset=8 * PAGE + 1, length=8 * PAGE)  # touches pages 8..16
        assert unwritten(path, 8 * PAGE, 9 * PAGE) == 0
        dirty_all(m, path)
        m.sync(offset=40 * PAGE)  # length 0: to the end
        assert unwritten(path, 40 * PAGE) == 0


@needs_cachestat
def test_writes_without_sync_stay_dirty(path):
    # The other side: the counts do see the difference sync makes.
    with iommap.open(path) as m:
        dirty_all(m, path)
        m.pread(0, PAGES * PAGE)
        m.sync("async")  # schedules at most; waits for nothing
    # close is no sync either
    assert unwritten(path) > 0


@needs_cachestat
def test_private_sync_writes_nothing(path):
    with iommap.open(path) as shared, iommap.open(path, private=True) as private:
        dirty_all(shared, path)
        private.pwrite(0, b"\2" * PAGE)
        private.sync()
        assert pagecache.residency(path).dirty_pages == PAGES


def meminfo_kib(*fields):
    """The sum of those /proc/meminfo fields, in kB: the whole machine's."""
    with open("/proc/meminfo") as f:
        values = dict(line.split(":", 1) for line in f)
    return sum(int(values[name].split()[0]) for name in fields)


@pytest.mark.skipif(
    pagecache.cachestat_available(), reason="cachestat(2) is here: the exact counts are used"
)
@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="no /proc/meminfo")
def test_sync_drains_dirty_memory_without_cachestat(tmp_path):
    # The fallback for kernels before 6.5: the machine's Dirty + Writeback
    # counts, with 64 MiB written so that other writers barely show.
    mib = 1 << 20
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * 64 * mib)
    os.sync()
    with iommap.open(path) as m:
        m.pwrite(0, b"\1" * 64 * mib)
        before = meminfo_kib("Dirty", "Writeback")
        if before < 48 * 1024:
            pytest.skip("the kernel started writing back at once (memory pressure?)")
        m.sync()
        after = meminfo_kib("Dirty", "Writeback")
    assert before - after >= 48 * 1024, (before, after)
