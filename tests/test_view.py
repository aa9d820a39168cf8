"""m.view(): zero-copy memoryviews that outlive close() and truncate()."""

import gc
import subprocess
import sys
import textwrap

import pytest
from helpers import PAGE

import iommap


def mapped_regions(path):
    """How many lines of /proc/self/maps map `path`."""
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if line.rstrip().endswith(str(path)))


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * (2 * PAGE // 256))
    return path


def test_view_is_the_mapped_bytes_without_a_copy(data_file):
    with iommap.open(data_file) as m:
        v = m.view(10, 5)
        assert isinstance(v, memoryview)
        assert bytes(v) == bytes(range(10, 15))
        m.pwrite(10, b"XY")  # a later write through the handle shows in the view
        assert bytes(v[:2]) == b"XY"
        del v


def test_view_defaults_cover_the_whole_mapping(data_file):
    with iommap.open(data_file) as m:
        assert len(m.view()) == 2 * PAGE
        assert len(m.view(PAGE)) == PAGE
        assert len(m.view(2 * PAGE)) == 0
        assert len(m.view(5, 0)) == 0


def test_view_is_writable_for_read_write_and_writes_reach_the_file(data_file):
    with iommap.open(data_file) as m:
        v = m.view(100, 4)
        assert not v.readonly
        v[:] = b"abcd"
        m.sync()
        del v
    with open(data_file, "rb") as f:
        f.seek(100)
        assert f.read(4) == b"abcd"


def test_view_is_read_only_for_read_handles(data_file):
    with iommap.open(data_file, "read") as m:
        v = m.view()
        assert v.readonly
        with pytest.raises(TypeError):
            v[0] = 1
        del v


def test_view_refused_for_write_handles(data_file):
    with iommap.open(data_file, "write") as m:
        with pytest.raises(iommap.Error) as info:
            m.view()
        assert isinstance(info.value, PermissionError)
        assert info.value.reason == "eacces"


def test_private_view_writes_stay_private(data_file):
    original = data_file.read_bytes()
    with iommap.open(data_file, private=True) as m:
        v = m.view(0, 4)
        v[:] = b"priv"
        assert m.pread(0, 4) == b"priv"
        del v
    assert data_file.read_bytes() == original


def test_view_bounds_and_arguments(data_file):
    with iommap.open(data_file) as m:
        with pytest.raises(iommap.OutOfBoundsError):
            m.view(2 * PAGE + 1)
        with pytest.raises(iommap.OutOfBoundsError):
            m.view(PAGE, PAGE + 1)
        with pytest.raises(iommap.OutOfBoundsError) as info:
            m.view(0, 2**200)
        assert info.value.reason == "out_of_bounds"
        with pytest.raises(iommap.BadArgumentValueError):
            m.view(-1)
        with pytest.raises(iommap.BadArgumentTypeError):
            m.view("0")
    with pytest.raises(iommap.ClosedError):
        m.view()


def test_view_survives_close_and_keeps_the_region_mapped(data_file):
    m = iommap.open(data_file)
    v = m.view(0, 16)
    m.close()  # no BufferError, unlike mmap.mmap.close()
    assert bytes(v) == bytes(range(16))
    assert mapped_regions(data_file) == 1
    del v
    gc.collect()
    assert mapped_regions(data_file) == 0


def test_slices_and_numpy_arrays_keep_the_region_alive(data_file):
    np = pytest.importorskip("numpy")
    m = iommap.open(data_file)
    arr = np.frombuffer(m.view(0, 256), dtype=np.uint8)
    piece = m.view()[16:32]
    m.close()
    assert arr.tolist() == list(range(256))
    assert bytes(piece) == bytes(range(16, 32))
    del piece
    gc.collect()
    assert mapped_regions(data_file) == 1  # the array still holds it
    del arr
    gc.collect()
    assert mapped_regions(data_file) == 0


def test_numpy_frombuffer_shares_the_pages(data_file):
    np = pytest.importorskip("numpy")
    with iommap.open(data_file) as m:
        arr = np.frombuffer(m.view(0, 8 * 4), dtype=np.uint64)
        arr[1] = 0x0102030405060708
        assert m.pread(8, 8) == (0x0102030405060708).to_bytes(8, sys.byteorder)
        del arr


def test_view_survives_grow_and_shrink(data_file):
    with iommap.open(data_file) as m:
        before = m.view(0, 2 * PAGE)
        m.truncate(4 * PAGE)  # grow: a new mapping, the old one lives on
        assert len(before) == 2 * PAGE
        assert bytes(before[:4]) == bytes(range(4))
        m.pwrite(0, b"new!")  # shared pages: the old view sees it too
        assert bytes(before[:4]) == b"new!"

        m.truncate(PAGE + 10)  # shrink: page 0 and 1 still exist in the file
        assert bytes(before[PAGE : PAGE + 4]) == bytes(range(4))
        assert len(before) == 2 * PAGE
        del before
    gc.collect()
    assert mapped_regions(data_file) == 0


def test_view_creation_is_constant_time():
    # Viewing a sparse 8 GiB file whole, 1000 times: a copy, or touching every
    # page, would exhaust memory or the timeout. (Speed itself is measured by
    # the benchmark, not asserted here.)  A 32-bit process cannot map 8 GiB:
    # it views the file's last GiB, through a window past 4 GiB.
    code = textwrap.dedent(
        """
        import iommap, os, sys, tempfile
        d = tempfile.mkdtemp()
        p = os.path.join(d, "big.bin")
        with open(p, "wb") as f:
            f.truncate(8 << 30)  # sparse: no disk used
        size = 8 << 30 if sys.maxsize > 2**32 else 1 << 30
        window = {} if size == 8 << 30 else {"offset": (8 << 30) - size, "length": size}
        with iommap.open(p, "read", **window) as m:
            for _ in range(1000):
                v = m.view()
                assert len(v) == size
                del v
        os.unlink(p)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
