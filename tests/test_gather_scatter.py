"""m.gather() and m.scatter(): batch copies, all-or-nothing on bounds."""

import array
import random

import pytest
from helpers import run_child, sparse_8_tib

import iommap

SIZE = 64 * 1024 + 123


@pytest.fixture
def m(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(random.Random(1).randbytes(SIZE))
    with iommap.open(path) as handle:
        yield handle


def offsets_kinds(offsets):
    """The same offsets as every accepted kind of container."""
    kinds = [list(offsets), tuple(offsets), array.array("q", offsets), array.array("Q", offsets)]
    try:
        import numpy as np
    except ImportError:
        return kinds
    return kinds + [
        np.array(offsets, dtype=np.int64),
        np.array(offsets, dtype=np.uint64),
    ]


@pytest.mark.parametrize("seed", range(5))
def test_gather_matches_a_loop_of_pread(m, seed):
    rng = random.Random(seed)
    length = rng.choice([1, 7, 64, 4096])
    offsets = [rng.randrange(0, SIZE - length + 1) for _ in range(rng.randrange(0, 300))]
    expected = b"".join(m.pread(o, length) for o in offsets)
    for kind in offsets_kinds(offsets):
        got = m.gather(kind, length)
        assert isinstance(got, bytearray)
        assert got == expected


def test_gather_into_out_returns_out(m):
    out = bytearray(3 * 10)
    assert m.gather([0, 100, 200], 10, out) is out
    assert out == m.pread(0, 10) + m.pread(100, 10) + m.pread(200, 10)
    view = memoryview(bytearray(20))
    assert m.gather([5, 6], 10, out=view) is view


def test_gather_into_numpy_rows(m):
    np = pytest.importorskip("numpy")
    out = np.zeros((3, 8), dtype=np.uint8)
    m.gather(np.array([8, 16, 0]), 8, out)
    assert bytes(out) == m.pread(8, 8) + m.pread(16, 8) + m.pread(0, 8)


def test_gather_out_must_be_writable_and_exact(m):
    with pytest.raises(iommap.BadArgumentValueError):
        m.gather([0, 1], 4, bytearray(7))
    with pytest.raises(iommap.BadArgumentTypeError):
        m.gather([0, 1], 4, bytes(8))


def test_gather_first_bad_offset_fails_the_whole_call(m):
    out = bytearray(b"\xee" * 12)
    with pytest.raises(iommap.OutOfBoundsError) as info:
        m.gather([0, SIZE - 3, SIZE], 4, out)
    assert info.value.reason == "out_of_bounds"
    assert "offsets[1]" in str(info.value)
    assert out == b"\xee" * 12  # nothing copied


def test_gather_rejects_negative_and_wrong_offsets(m):
    for offsets in ([0, -1], array.array("q", [-5])):
        with pytest.raises(iommap.BadArgumentValueError) as info:
            m.gather(offsets, 1)
        assert info.value.reason == "badarg"
    with pytest.raises(iommap.BadArgumentTypeError):
        m.gather([0, 1.5], 1)
    with pytest.raises(iommap.BadArgumentTypeError):
        m.gather(7, 1)
    with pytest.raises(iommap.BadArgumentValueError):
        m.gather([0], -1)


def test_gather_huge_offsets_are_out_of_bounds_not_overflow(m):
    for offsets in ([2**64 + 5], array.array("Q", [2**64 - 1])):
        with pytest.raises(iommap.OutOfBoundsError):
            m.gather(offsets, 1)
    with pytest.raises(iommap.OutOfBoundsError):
        m.gather([0], 2**70)


def test_gather_empty(m):
    assert m.gather([], 10) == bytearray()
    assert m.gather([5, 5], 0) == bytearray()


@pytest.mark.parametrize("seed", range(5))
def test_scatter_matches_a_loop_of_pwrite(tmp_path, seed):
    rng = random.Random(seed)
    base = rng.randbytes(SIZE)
    length = rng.choice([1, 16, 4096])
    offsets = [rng.randrange(0, SIZE - length + 1) for _ in range(rng.randrange(1, 200))]
    data = rng.randbytes(len(offsets) * length)
    for i, kind in enumerate(offsets_kinds(offsets)):
        a, b = tmp_path / f"a{i}.bin", tmp_path / f"b{i}.bin"
        a.write_bytes(base)
        b.write_bytes(base)
        with iommap.open(a) as ma:
            ma.scatter(kind, length, data)
        with iommap.open(b) as mb:  # later overlapping chunks win, as in a loop
            for j, o in enumerate(offsets):
                mb.pwrite(o, data[j * length : (j + 1) * length])
        assert a.read_bytes() == b.read_bytes()


def test_scatter_bad_offset_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"\x00" * 100)
    with iommap.open(path) as m:
        with pytest.raises(iommap.OutOfBoundsError) as info:
            m.scatter([0, 10, 98], 4, b"x" * 12)
        assert "offsets[2]" in str(info.value)
        with pytest.raises(iommap.BadArgumentValueError):
            m.scatter([0, 10], 4, b"x" * 7)
        with pytest.raises(iommap.BadArgumentValueError):
            m.scatter([0, -10], 4, b"x" * 8)
        with pytest.raises(iommap.BadArgumentTypeError):
            m.scatter([0], 1, "x")
    assert path.read_bytes() == b"\x00" * 100


def test_modes_refuse_with_eacces(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"\x00" * 100)
    with iommap.open(path, "write") as m:
        with pytest.raises(PermissionError) as info:
            m.gather([0], 1)
        assert info.value.reason == "eacces"
        m.scatter([0], 1, b"z")
    with iommap.open(path, "read") as m:
        with pytest.raises(PermissionError) as info:
            m.scatter([0], 1, b"y")
        assert info.value.reason == "eacces"
        assert m.gather([0], 1) == b"z"
    with pytest.raises(iommap.ClosedError):
        m.gather([0], 1)
    with pytest.raises(iommap.ClosedError):
        m.scatter([0], 1, b"y")


def test_large_gather_copies_the_same_bytes_as_pread(m):
    # >= 64 KiB in total takes the GIL-releasing path (that it releases the
    # GIL is test_threads.py's to show); the bytes must match.
    offsets = [i % (SIZE - 4096) for i in range(0, 40 * 4096, 4096)]
    assert m.gather(offsets, 4096) == b"".join(m.pread(o, 4096) for o in offsets)


def test_gather_and_scatter_survive_a_shrunk_file(tmp_path):
    # In a child process: if the guard failed, SIGBUS would kill it.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import errno, os, iommap
        page = os.sysconf("SC_PAGE_SIZE")
        path = {str(tmp_path / "shrunk.bin")!r}
        with open(path, "wb") as f:
            f.write(b"a" * 3 * page)
        m = iommap.open(path)
        os.truncate(path, page)
        for call in (lambda: m.gather([0, 2 * page], 8),
                     lambda: m.gather(list(range(0, 3 * page, 64)), 64),
                     lambda: m.gather([2 * page] * 2048, 64),  # 128 KiB: GIL released
                     lambda: m.scatter([0, 2 * page], 8, b"z" * 16)):
            try:
                call()
                print("no error")
            except iommap.SigbusError as e:
                assert e.reason == "sigbus" and e.errno == errno.EFAULT
        assert m.gather([0], 1) == bytearray(b"z")  # scatter wrote its first chunk
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]


def test_a_total_that_wraps_64_bits_is_badarg(tmp_path):
    # 2**21 records of 8 TiB each are exactly 2**64 bytes: a product that
    # wrapped would be 0, and gather would return nothing instead of
    # refusing.  In a child: scatter would copy terabytes from nothing.
    big = sparse_8_tib(tmp_path / "big")
    proc = run_child(
        """
        import array, sys
        import iommap
        try:
            m = iommap.open(sys.argv[1], "read")
        except OSError as e:  # no 8 TiB of address space (a sanitizer's shadow)
            print("skip:", e)
            sys.exit(0)
        offsets = array.array("q", bytes(8 << 21))
        try:
            m.gather(offsets, 1 << 43)
        except iommap.BadArgumentValueError as e:
            assert e.reason == "badarg" and "too large" in str(e), e
        else:
            sys.exit("gather of 2**64 bytes returned")
        print("ok")
        """,
        args=(str(big),),
        timeout=120,
    )
    if proc.stdout.startswith("skip:"):
        pytest.skip(proc.stdout.strip())
    assert proc.stdout.strip() == "ok"
