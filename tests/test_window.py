"""Windows: open(offset=, length=) maps only [offset, offset + length) of a
file, and every position is relative to the window."""

import errno
import os

import pytest
from helpers import (
    PAGE,
    _under_asan,
    assert_error,
    mappings_of,
    needs_linux,
    pattern,
    read_file,
    run_ok,
)

import iommap

DATA = pattern(8 * PAGE + 100)


@pytest.fixture
def path(make_file):
    return make_file(DATA)


@pytest.mark.parametrize(
    "offset,length",
    [
        (0, 10),
        (PAGE, PAGE),
        (123, 5 * PAGE),  # an offset inside a page: aligned down inside, hidden
        (PAGE + 1, 1),
        (3 * PAGE - 1, 2),
        (len(DATA) - 7, 7),
        (len(DATA), 0),  # at the end: an empty window
    ],
)
def test_positions_are_relative_to_the_window(path, offset, length):
    with iommap.open(path, "read", offset=offset, length=length or None) as m:
        assert len(m) == length
        assert m.position() == length
        assert m.pread(0, length) == DATA[offset : offset + length]
        assert m[:] == DATA[offset : offset + length]
        if length:
            assert m[0] == DATA[offset] and m[-1] == DATA[offset + length - 1]
            assert bytes(m.view()) == DATA[offset : offset + length]
            assert m.gather([0, length - 1], 1) == bytes([DATA[offset], DATA[offset + length - 1]])


@pytest.mark.parametrize("length", [None, 0])
def test_no_length_means_to_the_end_of_the_file(path, length):
    with iommap.open(path, "read", offset=PAGE + 5, length=length) as m:
        assert len(m) == len(DATA) - PAGE - 5
        assert m[:] == DATA[PAGE + 5 :]


def test_writes_land_at_offset_plus_position(path):
    with iommap.open(path, offset=2 * PAGE + 3, length=PAGE) as m:
        m.pwrite(0, b"start")
        m[PAGE - 3 :] = b"end"
        m.scatter([10], 2, b"mi")
        with pytest.raises(iommap.OutOfBoundsError):
            m.pwrite(PAGE - 2, b"past")  # the window ends where it ends
        m.sync()
    expected = bytearray(DATA)
    base = 2 * PAGE + 3
    expected[base : base + 5] = b"start"
    expected[base + PAGE - 3 : base + PAGE] = b"end"
    expected[base + 10 : base + 12] = b"mi"
    assert read_file(path) == bytes(expected)


def test_bytes_before_an_unaligned_window_are_out_of_reach(path):
    # The page the window starts in is mapped from its start, but the handle
    # never shows or writes the bytes before the window.
    with iommap.open(path, offset=PAGE + 100, length=50) as m:
        assert len(m.view()) == 50
        with pytest.raises(iommap.OutOfBoundsError):
            m.pread(50, 1)
        m.advise(0, 0, "dontneed")
        m.sync(offset=10, length=10)
        m.pwrite(0, b"\xff" * 50)
    assert read_file(path)[: PAGE + 100] == DATA[: PAGE + 100]
    assert read_file(path)[PAGE + 150 :] == DATA[PAGE + 150 :]


def test_remove_hint_on_an_unaligned_window_spares_bytes_outside(path):
    with iommap.open(path, offset=PAGE + 100, length=3 * PAGE) as m:
        try:
            m.advise(0, 0, "remove")
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                pytest.skip("this file system cannot punch holes: %s" % exc)
            raise
    got = read_file(path)
    # Only the whole pages inside the window, [2 PAGE, 4 PAGE), are zeros.
    assert got[: 2 * PAGE] == DATA[: 2 * PAGE]
    assert got[2 * PAGE : 4 * PAGE] == bytes(2 * PAGE)
    assert got[4 * PAGE :] == DATA[4 * PAGE :]


@pytest.mark.parametrize(
    "offset,length",
    [(len(DATA) + 1, None), (0, len(DATA) + 1), (len(DATA) - 5, 6), (2**63, None), (1, 2**64)],
)
def test_window_past_the_end_of_the_file_is_out_of_bounds(path, offset, length):
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        iommap.open(path, "read", offset=offset, length=length)
    assert_error(ei, IndexError, "out_of_bounds")
    assert sorted(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize(
    "offset,length,named",
    [
        (2**63, None, "offset 9223372036854775808 is past the end"),
        (2**64, None, "offset 18446744073709551616 is past the end"),
        (2**100, 5, "offset 1267650600228229401496703205376, length 5 passes"),
        (1, 2**64 + 3, "offset 1, length 18446744073709551619 passes"),
    ],
)
def test_window_numbers_are_named_as_given(path, offset, length, named):
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        iommap.open(path, "read", offset=offset, length=length)
    assert_error(ei, IndexError, "out_of_bounds")
    assert named in str(ei.value), str(ei.value)


@pytest.mark.parametrize("bad", [-1, 1.5, "1"])
def test_bad_offset_or_length_is_badarg(path, bad):
    cls = iommap.BadArgumentValueError if bad == -1 else iommap.BadArgumentTypeError
    with pytest.raises(cls):
        iommap.open(path, offset=bad)
    with pytest.raises(cls):
        iommap.open(path, length=bad)


def test_size_grows_the_file_before_the_window_is_placed(tmp_path):
    path = tmp_path / "new.bin"
    with iommap.open(path, create=True, size=4 * PAGE, offset=3 * PAGE, length=PAGE) as m:
        m.pwrite(0, b"last page")
    assert os.path.getsize(path) == 4 * PAGE
    assert read_file(path)[3 * PAGE : 3 * PAGE + 9] == b"last page"


@pytest.mark.parametrize("opts", [{"offset": PAGE}, {"length": PAGE}, {"offset": 1, "length": 1}])
def test_truncate_on_a_window_is_badarg_and_leaves_the_file(path, opts):
    with iommap.open(path, **opts) as m:
        before = len(m)
        with pytest.raises(iommap.BadArgumentValueError) as ei:
            m.truncate(10)
        assert_error(ei, ValueError, "badarg")
        assert len(m) == before
    assert read_file(path) == DATA


def test_offset_zero_without_length_is_the_whole_file(path):
    with iommap.open(path, offset=0, length=None) as m:
        m.truncate(PAGE)  # not a window: truncate works
    assert os.path.getsize(path) == PAGE


def test_window_of_a_descriptor(path):
    with open(path, "rb") as f, iommap.open(f, "read", offset=PAGE, length=16) as m:
        assert m[:] == DATA[PAGE : PAGE + 16]


@needs_linux
def test_residency_and_page_tables_follow_the_window_not_the_file(path):
    with iommap.open(path, "read", offset=PAGE + 1, length=2 * PAGE) as m:
        # [PAGE + 1, 3 PAGE + 1) touches three pages.
        assert len(m.residency()) == 3
        assert m.resident() <= 3 * PAGE
        (entry,) = mappings_of(path)
        assert entry["Size"] * 1024 == 3 * PAGE


@needs_linux
def test_a_window_of_a_sparse_file_larger_than_ram(tmp_path):
    # 64 GiB of file, almost all holes, on a machine with less memory than
    # that: a 4 MiB window costs 4 MiB of address space, page tables, mincore
    # vector and locked memory, wherever it sits in the file.
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    size = max(64 << 30, 2 * ram)
    path = tmp_path / "sparse.bin"
    try:
        with open(path, "wb") as f:
            f.truncate(size)
    except OSError as exc:
        pytest.skip("this file system refuses a %d-byte sparse file: %s" % (size, exc))
    if os.stat(path).st_blocks * 512 > 1 << 20:
        pytest.skip("this file system does not keep holes")
    window = 4 << 20
    offset = size - (24 << 30) + 12345  # deep in the file, not page-aligned
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"marker")
        f.seek(offset + window - 4)
        f.write(b"tail")
    run_ok(
        """
        import iommap
        with iommap.open(PATH, offset=OFFSET, length=WINDOW, lock=LOCK) as m:
            assert len(m) == WINDOW
            assert m[:6] == b"marker" and m[-4:] == b"tail"
            assert m.pread(100, 8) == bytes(8)  # a hole reads as zeros
            pages = (12345 % PAGE + WINDOW + PAGE - 1) // PAGE
            assert len(m.residency()) == pages, len(m.residency())
            m.advise(0, 0, "willneed")
            m.pwrite(WINDOW // 2, b"written")
            entries, current = [], None
            with open("/proc/self/smaps") as f:
                for line in f:
                    fields = line.split()
                    if "-" in fields[0] and not fields[0].endswith(":"):
                        current = {} if line.rstrip().endswith(PATH) else None
                        if current is not None:
                            entries.append(current)
                    elif current is not None and fields[0] in ("Size:", "Locked:"):
                        current[fields[0]] = int(fields[1])
            assert len(entries) == 1, entries
            mapped_kb, locked_kb = entries[0]["Size:"], entries[0]["Locked:"]
            assert mapped_kb * 1024 == pages * PAGE, mapped_kb
            if LOCK:
                assert locked_kb * 1024 == pages * PAGE, locked_kb
        print("OK")
        """,
        PATH=str(path),
        OFFSET=offset,
        WINDOW=window,
        PAGE=PAGE,
        LOCK=not _under_asan(),
        timeout=120,
    )
    with open(path, "rb") as f:
        f.seek(offset + window // 2)
        assert f.read(7) == b"written"
    assert os.stat(path).st_size == size
    assert os.stat(path).st_blocks * 512 < 64 << 20  # still sparse


def test_remap_of_a_window_follows_the_file_end(tmp_path):
    path = tmp_path / "grow.bin"
    path.write_bytes(pattern(2 * PAGE))
    with (
        iommap.open(path, "read", offset=PAGE + 10) as m,
        iommap.open(path, "read", offset=PAGE + 10, length=PAGE - 20) as fixed,
    ):
        assert len(m) == PAGE - 10 and len(fixed) == PAGE - 20
        with open(path, "ab") as f:
            f.write(b"more")
        assert m.remap() == PAGE - 6  # to the end: follows growth
        assert m[-4:] == b"more"
        assert fixed.remap() == PAGE - 20  # a length: never past it
        os.truncate(path, PAGE + 20)
        assert m.remap() == 10 and fixed.remap() == 10  # as much as the file holds
        assert m[:] == pattern(2 * PAGE)[PAGE + 10 : PAGE + 20]
        os.truncate(path, PAGE)
        assert m.remap() == 0 and len(m) == 0  # the file ends before the window
        assert m[:] == b""
