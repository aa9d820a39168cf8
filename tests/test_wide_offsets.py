"""File offsets and sizes are 64-bit on every machine.  On a 32-bit one
Py_ssize_t and size_t hold 32 bits while off_t holds 64: a file can be far
larger than the address space, and only the part a handle maps has to fit
in it.  These pin the arithmetic that crosses between the two, and the byte
order of buffers of offsets; they run the same on 64-bit machines."""

import array
import errno
import os

import pytest
from helpers import PAGE, assert_error, pattern, sparse_file

import iommap

EIGHT_TIB = 1 << 43
FOUR_GIB = 1 << 32


def test_a_window_at_the_end_of_an_8_tib_file(tmp_path):
    path = str(sparse_file(tmp_path / "huge.bin", EIGHT_TIB))
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"last page", EIGHT_TIB - PAGE)
        os.pwrite(fd, b"end", EIGHT_TIB - 3)
    finally:
        os.close(fd)
    with iommap.open(path, "read", offset=EIGHT_TIB - PAGE, length=PAGE) as m:
        assert len(m) == PAGE
        assert m.pread(0, 9) == b"last page"
        assert m.pread(PAGE - 3, 3) == b"end"
    # To the end of the file, from an offset inside a page.
    with iommap.open(path, "read", offset=EIGHT_TIB - 10) as m:
        assert len(m) == 10
        assert m[:] == bytes(7) + b"end"


def test_a_window_one_byte_past_the_end_of_an_8_tib_file_names_its_size(tmp_path):
    path = str(sparse_file(tmp_path / "huge.bin", EIGHT_TIB))
    with pytest.raises(iommap.OutOfBoundsError) as excinfo:
        iommap.open(path, "read", offset=EIGHT_TIB - PAGE, length=PAGE + 1)
    assert_error(excinfo, iommap.OutOfBoundsError, "out_of_bounds")
    assert "(%d bytes)" % EIGHT_TIB in str(excinfo.value)


def test_writes_through_a_window_past_4_gib_land_there(tmp_path):
    path = str(sparse_file(tmp_path / "big.bin", 2 * FOUR_GIB))
    offset = FOUR_GIB + 123  # past 2**32, not page-aligned
    with iommap.open(path, offset=offset, length=2 * PAGE) as m:
        m.pwrite(PAGE - 2, b"across")
        assert m.pread(PAGE - 2, 6) == b"across"
        assert m.view()[PAGE - 2 : PAGE + 4] == b"across"
        m.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 6, offset + PAGE - 2) == b"across"
        assert os.pread(fd, 6, PAGE - 2 + 123) == bytes(6)  # not 4 GiB lower
    finally:
        os.close(fd)
    assert os.stat(path).st_size == 2 * FOUR_GIB


@pytest.mark.parametrize("size", [2**63, 2**64 - 1, 2**64, 2**100])
def test_a_size_no_file_can_have_is_efbig_and_leaves_the_file(make_file, size):
    path = make_file(b"abc")
    with pytest.raises(iommap.Error) as excinfo:
        iommap.open(path, size=size)
    assert_error(excinfo, OSError, "efbig", errno.EFBIG)
    with open(path, "rb") as f:
        assert f.read() == b"abc"


def test_truncate_after_the_file_grew_past_4_gib_elsewhere(tmp_path):
    # The file's size as the handle reads it is 64-bit: cut to 32 bits it
    # would look smaller than the new size, and the file would stay long.
    path = str(tmp_path / "f.bin")
    data = pattern(PAGE)
    with open(path, "wb") as f:
        f.write(data)
    with iommap.open(path) as m:
        try:
            os.truncate(path, FOUR_GIB + PAGE)
        except OSError as exc:
            pytest.skip("this file system refuses a sparse 4 GiB file: %s" % exc)
        m.truncate(2 * PAGE)
        assert len(m) == 2 * PAGE
        assert m.pread(0, PAGE) == data
    assert os.stat(path).st_size == 2 * PAGE


def _offset_buffers(values):
    yield list(values)
    yield array.array("Q", values)
    np = pytest.importorskip("numpy")
    yield np.array(values, dtype=np.uint64)
    yield np.array(values, dtype=np.int64)


def test_gather_offsets_past_4_gib_never_wrap(make_file):
    # 2**32 + 0 cut to 32 bits is 0, a valid offset: the call must refuse.
    path = make_file(pattern(PAGE))
    with iommap.open(path) as m:
        for offsets in _offset_buffers([0, FOUR_GIB, 1]):
            with pytest.raises(iommap.OutOfBoundsError) as excinfo:
                m.gather(offsets, 1)
            assert_error(excinfo, iommap.OutOfBoundsError, "out_of_bounds")
            assert "offsets[1]" in str(excinfo.value), excinfo.value
            with pytest.raises(iommap.OutOfBoundsError):
                m.scatter(offsets, 1, b"xyz")
        assert m.pread(0, PAGE) == pattern(PAGE)  # nothing written


def test_offsets_in_the_other_byte_order_are_refused(make_file):
    np = pytest.importorskip("numpy")
    path = make_file(pattern(PAGE))
    native = np.array([8, 16], dtype=np.uint64)
    swapped = native.astype(native.dtype.newbyteorder("S"))  # same values, other order
    with iommap.open(path) as m:
        assert m.gather(native, 4) == pattern(PAGE)[8:12] + pattern(PAGE)[16:20]
        assert m.gather(native.astype(native.dtype.newbyteorder("=")), 4) == m.gather(native, 4)
        with pytest.raises(iommap.Error) as excinfo:
            m.gather(swapped, 4)
        assert_error(excinfo, TypeError, "badarg")
        assert "native byte order" in str(excinfo.value)
        with pytest.raises(iommap.Error):
            m.scatter(swapped, 4, b"abcdefgh")
        assert m.pread(0, PAGE) == pattern(PAGE)


def test_an_array_of_the_machine_order_reads_the_same_on_every_machine(make_file):
    # array('Q') holds the machine's order: the same offsets on a
    # little-endian and a big-endian machine.
    path = make_file(pattern(PAGE))
    offsets = array.array("Q", [PAGE - 1, 0, 256])
    with iommap.open(path, "read") as m:
        got = m.gather(offsets, 1)
    data = pattern(PAGE)
    assert bytes(got) == bytes([data[PAGE - 1], data[0], data[256]])


def test_a_range_longer_than_the_machine_can_count_is_badarg(make_file):
    # len(range(2**63)) overflows Py_ssize_t on every machine (2**31 on
    # 32-bit ones): more offsets than memory holds, not an OverflowError.
    path = make_file(pattern(PAGE))
    with iommap.open(path) as m:
        for count in (2**63, 2**64):
            with pytest.raises(iommap.Error) as excinfo:
                m.gather(range(count), 0)
            assert_error(excinfo, ValueError, "badarg")
            with pytest.raises(iommap.Error) as excinfo:
                m.scatter(range(count), 0, b"")
            assert_error(excinfo, ValueError, "badarg")
