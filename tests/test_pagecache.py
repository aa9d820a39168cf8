"""iommap.pagecache: residency, warm, evict, lock and walk by path."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PAGE, whole_file_fits

import iommap
from iommap import pagecache


def make_file(path: Path, size: int, *, sync: bool = True) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()  # from 3.14 a file's buffer holds 128 KiB: fsync would miss it
        if sync:
            os.fsync(f.fileno())
    return path


def can_drop(path: Path) -> bool:
    """Whether this file system lets pages go (tmpfs keeps them)."""
    return pagecache.memory_filesystem(path) is None


def resident(path: Path) -> int:
    with iommap.open(path, "read") as m:
        return m.resident() // PAGE


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_file(tmp_path / "data.bin", 10 * PAGE + 5)


@pytest.fixture(params=["cachestat", "mincore"])
def counting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with cachestat(2) (where the kernel has it) and with the
    mincore fallback that older kernels and other systems get."""
    if request.param == "cachestat":
        if not pagecache.cachestat_available():
            pytest.skip("no cachestat(2) on this kernel")
    else:
        monkeypatch.setattr(pagecache, "_cachestat_missing", True)
    return str(request.param)


def test_page_size_is_the_cores():
    assert pagecache.PAGE_SIZE == iommap._core.PAGE_SIZE == os.sysconf("SC_PAGE_SIZE")


def test_residency_is_a_typed_named_tuple(data: Path, counting: str) -> None:
    pagecache.warm(data)
    r = pagecache.residency(data)
    assert isinstance(r, tuple) and type(r) is pagecache.FileResidency
    assert r.path == str(data)  # os.fspath of the path given
    assert (r.size, r.offset, r.length, r.total_pages) == (10 * PAGE + 5, 0, 10 * PAGE + 5, 11)
    assert r.known and r.resident_pages == 11 and r.percent == 100.0
    assert r.resident_bytes == 11 * PAGE  # whole pages, as fincore's RES
    assert r.resident_pages_before is None
    if counting == "cachestat":
        assert r.dirty_pages == 0 and r.writeback_pages == 0
        assert r.evicted_pages is not None and r.recently_evicted_pages is not None
    else:
        assert r.dirty_pages is r.writeback_pages is r.evicted_pages is None
    with pytest.raises(AttributeError):
        r.size = 0  # type: ignore[misc]


def test_bytes_and_str_paths_come_back_as_given(data: Path) -> None:
    assert pagecache.residency(os.fsencode(data)).path == os.fsencode(data)
    assert pagecache.residency(str(data)).path == str(data)


def test_residency_of_a_range(data: Path, counting: str) -> None:
    pagecache.evict(data)
    with iommap.open(data, "read") as m:
        m.advise(0, 0, "random")
        m.pread(3 * PAGE, 1)
    r = pagecache.residency(data, offset=2 * PAGE + 100, length=2 * PAGE)
    # The range starts on its page: pages 2, 3 and 4 (the end is inside 4).
    assert (r.offset, r.length, r.total_pages) == (2 * PAGE, 2 * PAGE + 100, 3)
    if can_drop(data):
        assert r.resident_pages == 1
    past = pagecache.residency(data, offset=100 * PAGE)
    assert (past.offset, past.length, past.total_pages, past.resident_pages) == (
        10 * PAGE,  # page-aligned, as every range's start
        0,
        0,
        0,
    )
    assert past.percent == 0.0


def test_empty_file(tmp_path: Path, counting: str) -> None:
    (tmp_path / "empty").touch()
    r = pagecache.residency(tmp_path / "empty")
    assert (r.size, r.total_pages, r.resident_pages, r.percent) == (0, 0, 0, 0.0)
    assert pagecache.residency_map(tmp_path / "empty") == ""
    assert list(pagecache.resident_ranges(tmp_path / "empty")) == []


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: None, FileNotFoundError),
        (lambda p: p.mkdir(), IsADirectoryError),
        (lambda p: os.mkfifo(p), OSError),
    ],
)
def test_what_is_not_a_regular_file_raises(tmp_path: Path, make, error) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x"
    make(path)
    for call in (pagecache.residency, pagecache.warm, pagecache.evict):
        with pytest.raises(error) as info:
            call(path)
        if path.exists() and stat.S_ISFIFO(path.stat().st_mode):
            # iommap.open's refusal, naming the type (and it did not block).
            assert isinstance(info.value, iommap.Error) and info.value.reason == "enodev"
            assert "cannot map a FIFO" in str(info.value)


def test_negative_range_is_a_value_error(data: Path) -> None:
    with pytest.raises(ValueError):
        pagecache.residency(data, offset=-1)
    with pytest.raises(ValueError):
        pagecache.warm(data, length=-1)
    with pytest.raises(ValueError):
        pagecache.walk([data], offset=-1)
    with pytest.raises(ValueError):
        pagecache.walk([data], "read")


def test_warm_then_evict_report_before_and_after(data: Path, counting: str) -> None:
    if not can_drop(data):
        pytest.skip("tmpfs keeps every page")
    pagecache.evict(data)
    seen: list[tuple[int, int]] = []
    r = pagecache.warm(data, on_progress=lambda done, total: seen.append((done, total)))
    assert r.resident_pages_before == 0 and r.resident_pages == 11
    assert resident(data) == 11
    assert seen[-1] == (10 * PAGE + 5, 10 * PAGE + 5)
    r = pagecache.evict(data)
    assert r.resident_pages_before == 11 and r.resident_pages == 0
    assert resident(data) == 0


def test_warm_of_a_range_brings_only_that_range(data: Path) -> None:
    if not can_drop(data):
        pytest.skip("tmpfs keeps every page")
    pagecache.evict(data)
    with iommap.open(data, "read") as m:
        m.advise(0, 0, "random")
    r = pagecache.warm(data, offset=4 * PAGE, length=2 * PAGE)
    assert (r.offset, r.total_pages, r.resident_pages) == (4 * PAGE, 2, 2)
    with iommap.open(data, "read") as m:
        assert m.residency(4 * PAGE, 2 * PAGE) == b"\1\1"


def _dirty_file(path: Path, pages: int) -> Path:
    make_file(path, pages * PAGE)
    with open(path, "r+b") as f:
        os.fsync(f.fileno())
        f.seek(0)
        f.write(b"y" * (pages * PAGE))  # dirty in the page cache, not written back
    return path


def test_evict_leaves_dirty_pages(tmp_path: Path) -> None:
    # Without writeback, eviction only starts write-back: the pages still
    # dirty or being written when it drops the clean ones stay.
    path = _dirty_file(tmp_path / "dirty.bin", 64)
    if not can_drop(path):
        pytest.skip("tmpfs keeps every page")
    r = pagecache.evict(path)
    assert r.resident_pages_before == 64
    assert r.resident_pages > 0
    assert path.read_bytes() == b"y" * (64 * PAGE)


def test_evict_with_writeback_drops_dirty_pages(tmp_path: Path) -> None:
    # Straight from dirty, no plain evict first (that would start the
    # write-back itself and leave nothing for writeback=True to do).
    path = _dirty_file(tmp_path / "dirty.bin", 64)
    if not can_drop(path):
        pytest.skip("tmpfs keeps every page")
    if pagecache.cachestat_available():
        assert pagecache.residency(path).dirty_pages == 64
    r = pagecache.evict(path, writeback=True)
    assert (r.resident_pages_before, r.resident_pages) == (64, 0)
    assert path.read_bytes() == b"y" * (64 * PAGE)


def test_dirty_pages_are_counted(tmp_path: Path) -> None:
    if not pagecache.cachestat_available():
        pytest.skip("no cachestat(2) on this kernel")
    path = make_file(tmp_path / "d.bin", 8 * PAGE)
    with open(path, "r+b") as f:
        f.write(b"z" * (8 * PAGE))
        f.flush()
        r = pagecache.residency(path)
        # Writeback may have started already: every page is one or the other.
        assert r.dirty_pages is not None and r.writeback_pages is not None
        assert r.dirty_pages + r.writeback_pages <= 8
        os.fsync(f.fileno())
    assert pagecache.residency(path).dirty_pages == 0


def test_residency_map_and_ranges(tmp_path: Path, counting: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = make_file(tmp_path / "big.bin", 256 * PAGE)
    if not can_drop(path):
        pytest.skip("tmpfs keeps every page")
    pagecache.evict(path)
    with iommap.open(path, "read") as m:
        m.advise(0, 0, "random")  # no read-ahead: only the pages read come in
        for page in (*range(8), 128, 129, 255):
            m.pread(page * PAGE, 1)
    # Chunks of 3 pages: runs that cross a chunk's end are still one run.
    monkeypatch.setattr(pagecache, "_CHUNK", 3 * PAGE)
    assert list(pagecache.resident_ranges(path)) == [(0, 8), (128, 130), (255, 256)]
    assert pagecache.residency_map(path) == "OO" + " " * 30 + "o" + " " * 30 + "o"
    assert pagecache.residency_map(path, 4) == "o oo"  # 64 pages a cell
    assert list(pagecache.resident_ranges(path, offset=4 * PAGE, length=130 * PAGE)) == [
        (4, 8),
        (128, 130),
    ]


def _under_sanitizer() -> bool:
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


@whole_file_fits
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM")
@pytest.mark.skipif(_under_sanitizer(), reason="AddressSanitizer's shadow memory counts in RSS")
@pytest.mark.parametrize("fallback", [False, True])
def test_memory_stays_bounded_on_a_1_tib_file(tmp_path: Path, fallback: bool) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB, no data
    # A fresh process reports its own high-water mark (VmHWM), not this one's.
    # mincore over a sparse range looks up every page: the fallback is asked
    # about 128 GiB (a 32 MiB vector in one piece), cachestat about it all.
    length = (1 << 37) if fallback else None
    code = f"""
import iommap.pagecache as p
p._cachestat_missing = {fallback}
r = p.residency({str(path)!r}, length={length})
assert r.total_pages == ({length} or (1 << 40)) // p.PAGE_SIZE and r.resident_pages == 0, r
assert p.residency_map({str(path)!r}, length={length}) == " " * 64
assert list(p.resident_ranges({str(path)!r}, length=1 << 34)) == []
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 40 * 1024  # KiB


def test_walk_streams_results_and_totals(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    a = make_file(tree / "a.bin", PAGE)
    b = make_file(tree / "sub" / "b.bin", 3 * PAGE)
    consumed: list[str] = []

    def paths() -> Iterator[str]:
        for p in (str(tree), str(tmp_path / "missing")):
            consumed.append(p)
            yield p

    walk = pagecache.walk(paths())
    it = iter(walk)
    first = next(it)
    # The first result is out before the list of paths is read to its end.
    assert consumed == [str(tree)]
    rest = list(it)
    results = [first, *rest]
    files = sorted(r.path for r in results if isinstance(r, pagecache.FileResidency))
    assert files == [str(a), str(b)]
    (error,) = [r for r in results if isinstance(r, pagecache.FileError)]
    assert (error.path, error.reason, error.errno) == (str(tmp_path / "missing"), "enoent", 2)
    t = walk.totals
    assert (t.files, t.directories, t.errors, t.skipped) == (2, 2, 1, 0)
    assert (t.size, t.total_pages) == (4 * PAGE, 4)
    assert t.seconds >= 0 and 0 <= t.percent <= 100
    with pytest.raises(RuntimeError):
        list(walk)


def test_walk_counts_an_inode_once(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bin", PAGE)
    os.link(a, tmp_path / "b.bin")
    walk = pagecache.walk([tmp_path, a])
    assert len([r for r in walk if isinstance(r, pagecache.FileResidency)]) == 1
    assert walk.totals.skipped == 2
    walk = pagecache.walk([tmp_path, a], count_hard_links=True)
    assert len(list(walk)) == 3 and walk.totals.files == 3


def test_walk_symlinks(tmp_path: Path) -> None:
    target = make_file(tmp_path / "target.bin", PAGE)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.bin").symlink_to(target)
    (tree / "dirlink").symlink_to(tmp_path / "other")
    (tmp_path / "other").mkdir()
    make_file(tmp_path / "other" / "o.bin", PAGE)
    (tree / "loop").symlink_to(tree)

    assert [r.path for r in pagecache.walk([tree])] == []  # not followed inside a tree
    followed = sorted(str(r.path) for r in pagecache.walk([tree], follow_symlinks=True))
    assert followed == [str(tree / "dirlink" / "o.bin"), str(tree / "link.bin")]
    # Named, a symlink is followed.
    (r,) = pagecache.walk([tree / "link.bin"])
    assert r.path == str(tree / "link.bin") and r.size == PAGE


def test_walk_patterns_and_max_size(tmp_path: Path) -> None:
    make_file(tmp_path / "keep.idx", PAGE)
    make_file(tmp_path / "big.idx", 5 * PAGE)
    make_file(tmp_path / "skip.tmp", PAGE)
    (tmp_path / "cache").mkdir()
    make_file(tmp_path / "cache" / "c.idx", PAGE)

    def names(**options: object) -> list[str]:
        return sorted(os.path.basename(r.path) for r in pagecache.walk([tmp_path], **options))  # type: ignore[arg-type]

    assert names(ignore=["*.tmp", "cache"]) == ["big.idx", "keep.idx"]
    assert names(include=["*.idx"]) == ["big.idx", "c.idx", "keep.idx"]
    assert names(max_size=PAGE) == ["c.idx", "keep.idx", "skip.tmp"]
    walk = pagecache.walk([tmp_path], include=["k*"], max_size=PAGE)
    assert [os.path.basename(r.path) for r in walk] == ["keep.idx"]
    assert walk.totals.skipped == 3


def test_walk_skips_special_files_in_trees_but_names_them(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    make_file(tmp_path / "f.bin", PAGE)
    walk = pagecache.walk([tmp_path])
    assert [os.path.basename(r.path) for r in walk] == ["f.bin"]
    assert walk.totals.skipped == 1
    (error,) = pagecache.walk([tmp_path / "fifo"])
    assert isinstance(error, pagecache.FileError) and error.reason == "enodev"


def test_walk_warm_and_evict(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bin", 4 * PAGE)
    if not can_drop(a):
        pytest.skip("tmpfs keeps every page")
    (r,) = pagecache.walk([tmp_path], "evict")
    assert r.resident_pages == 0 and resident(a) == 0
    progress: list[tuple[object, int, int]] = []
    (r,) = pagecache.walk(
        [tmp_path], "warm", on_progress=lambda p, d, t: progress.append((p, d, t))
    )
    assert r.resident_pages_before == 0 and r.resident_pages == 4
    assert progress[-1] == (str(a), 4 * PAGE, 4 * PAGE)


def test_lock_all_or_none(data: Path, tmp_path: Path) -> None:
    with pagecache.lock([data]) as locked:
        assert locked.locked_bytes == data.stat().st_size
        (f,) = locked.files
        assert f.resident_pages == f.total_pages == 11
        assert resident(data) == 11
    locked.close()  # idempotent
    with pytest.raises(FileNotFoundError):
        pagecache.lock([data, tmp_path / "missing"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file systems")
def test_memory_filesystem() -> None:
    if os.path.isdir("/dev/shm") and os.statvfs("/dev/shm"):
        assert pagecache.memory_filesystem("/dev/shm") in ("tmpfs", None)
    assert pagecache.memory_filesystem("/proc/self/status") is None
