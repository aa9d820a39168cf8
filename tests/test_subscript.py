"""m[i], m[a:b], their assignments, bool(m) and m.flush(): what code written
against mmap.mmap or bytes reaches for."""

import pytest
from helpers import PAGE, assert_error, pattern, read_file, run_ok

import iommap

DATA = pattern(2 * PAGE + 10)


@pytest.fixture
def m(make_file):
    with iommap.open(make_file(DATA)) as handle:
        yield handle


def test_index_reads_an_int(m):
    assert m[0] == DATA[0]
    assert m[PAGE] == DATA[PAGE]
    assert isinstance(m[5], int)


def test_negative_index_counts_from_the_end(m):
    assert m[-1] == DATA[-1]
    assert m[-len(DATA)] == DATA[0]


@pytest.mark.parametrize(
    "key",
    [
        slice(0, 10),
        slice(PAGE - 3, PAGE + 3),
        slice(None, 5),
        slice(5, None),
        slice(None, None),
        slice(-10, None),
        slice(-10, -2),
        slice(3, -3),
        slice(7, 7),
        slice(len(DATA), None),
        slice(0, 10, 1),
        slice(0, 10, None),
    ],
)
def test_slice_reads_bytes_as_pread(m, key):
    assert m[key] == DATA[key]
    assert type(m[key]) is bytes


@pytest.mark.parametrize(
    "key",
    [
        len(DATA),
        -len(DATA) - 1,
        2**64,
        -(2**64),
        slice(0, len(DATA) + 1),
        slice(-len(DATA) - 1, None),
        slice(10, 5),  # a negative length
        slice(2**70, None),
        slice(None, 2**70),
    ],
)
def test_out_of_range_is_out_of_bounds_never_clamped(m, key):
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        m[key]
    assert_error(ei, IndexError, "out_of_bounds")


@pytest.mark.parametrize("step", [2, -1, 0, 3])
def test_a_step_other_than_one_is_badarg(m, step):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        m[0:10:step]
    assert_error(ei, ValueError, "badarg")
    with pytest.raises(iommap.BadArgumentValueError):
        m[0:10:step] = bytes(10)


@pytest.mark.parametrize("key", [1.0, "1", None, b"x", slice(0.0, 1), slice(0, "2")])
def test_keys_of_wrong_type_are_badarg(m, key):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        m[key]
    assert_error(ei, TypeError, "badarg")


def test_index_objects_are_accepted(m):
    class Index:
        def __init__(self, v):
            self.v = v

        def __index__(self):
            return self.v

    assert m[Index(3)] == DATA[3]
    assert m[Index(1) : Index(4)] == DATA[1:4]


def test_index_exceptions_pass_through(m):
    class Bad:
        def __index__(self):
            raise KeyError("own")

    with pytest.raises(KeyError):
        m[Bad()]
    with pytest.raises(KeyError):
        m[Bad() :]


def test_slice_assignment_writes_as_pwrite(make_file):
    path = make_file(DATA)
    with iommap.open(path) as m:
        m[PAGE - 2 : PAGE + 2] = b"ABCD"
        m[-3:] = bytearray(b"xyz")
        m[:1] = memoryview(b"!")
        m[5:5] = b""
        assert m[PAGE - 2 : PAGE + 2] == b"ABCD"
    expected = bytearray(DATA)
    expected[PAGE - 2 : PAGE + 2] = b"ABCD"
    expected[-3:] = b"xyz"
    expected[:1] = b"!"
    assert read_file(path) == bytes(expected)


def test_index_assignment_takes_a_byte_value(make_file):
    path = make_file(DATA)
    with iommap.open(path) as m:
        m[0] = 0
        m[-1] = 255
        for bad in (256, -1, 2**70):
            with pytest.raises(iommap.BadArgumentValueError):
                m[1] = bad
        for bad in (b"a", 1.0, "a"):
            with pytest.raises(iommap.BadArgumentTypeError):
                m[1] = bad
    assert read_file(path) == b"\0" + DATA[1:-1] + b"\xff"


def test_index_assignment_takes_index_objects_as_mmap_does(make_file):
    np = pytest.importorskip("numpy")

    class Seven:
        def __index__(self):
            return 7

    path = make_file(DATA)
    with iommap.open(path) as m:
        m[0] = np.uint8(7)
        m[1] = Seven()
        m[2] = np.int64(255)
        assert (m[0], m[1], m[2]) == (7, 7, 255)
        with pytest.raises(iommap.BadArgumentValueError):
            m[3] = np.int64(256)
        with pytest.raises(iommap.BadArgumentTypeError):
            m[3] = np.float64(1.0)
    assert read_file(path) == b"\x07\x07\xff" + DATA[3:]


def test_index_assignment_value_exceptions_pass_through(make_file):
    class Boom:
        def __index__(self):
            raise KeyboardInterrupt("value")

    path = make_file(DATA)
    with iommap.open(path) as m:
        with pytest.raises(KeyboardInterrupt, match="value"):
            m[0] = Boom()
    assert read_file(path) == DATA


@pytest.mark.parametrize("data", [b"abc", b"a", b"", b"abcdef"])
def test_length_mismatch_is_badarg_and_writes_nothing(make_file, data):
    path = make_file(DATA)
    with iommap.open(path) as m:
        with pytest.raises(iommap.BadArgumentValueError) as ei:
            m[0:4] = data
        assert_error(ei, ValueError, "badarg")
        assert len(m) == len(DATA)
    assert read_file(path) == DATA


def test_slice_assignment_out_of_range_writes_nothing(make_file):
    path = make_file(DATA)
    with iommap.open(path) as m:
        with pytest.raises(iommap.OutOfBoundsError):
            m[len(DATA) - 2 : len(DATA) + 2] = b"abcd"
        with pytest.raises(iommap.OutOfBoundsError):
            m[len(DATA)] = 1
    assert read_file(path) == DATA


def test_wrong_data_types_are_badarg(m):
    for bad in ("text", 5, [b"ab"], None):
        with pytest.raises(iommap.BadArgumentTypeError):
            m[0:2] = bad
    with pytest.raises(iommap.BadArgumentTypeError):
        del m[0]
    with pytest.raises(iommap.BadArgumentTypeError):
        del m[0:2]


def test_modes(make_file):
    path = make_file(DATA)
    with iommap.open(path, "read") as r:
        assert r[0:3] == DATA[:3]
        with pytest.raises(PermissionError) as ei:
            r[0:3] = b"abc"
        assert_error(ei, PermissionError, "eacces")
    with iommap.open(path, "write") as w:
        w[0:3] = b"abc"
        with pytest.raises(PermissionError):
            w[0:3]
        with pytest.raises(PermissionError):
            w[0]
    with iommap.open(path, private=True) as p:
        p[0:3] = b"zzz"
        assert p[0:3] == b"zzz"
    assert read_file(path)[:3] == b"abc"


def test_closed_handle(m):
    m.close()
    with pytest.raises(iommap.ClosedError) as ei:
        m[0]
    assert_error(ei, ValueError, "closed")
    with pytest.raises(iommap.ClosedError):
        m[0:1] = b"x"


def test_large_slices_round_trip(make_file):
    big = pattern(8 * iommap._core.GIL_RELEASE_BYTES)
    path = make_file(bytes(len(big)))
    with iommap.open(path) as m:
        m[:] = big
        assert m[:] == big
        assert m[-len(big) :] == big
    assert read_file(path) == big


def test_slices_after_truncate_resolve_against_the_new_size(make_file):
    with iommap.open(make_file(DATA)) as m:
        m.truncate(10)
        assert m[-1] == DATA[9]
        assert m[:] == DATA[:10]
        m.truncate(20)
        assert m[-10:] == bytes(10)


def test_bool_is_true_open_empty_or_closed(make_file):
    m = iommap.open(make_file(b""))
    assert len(m) == 0
    assert bool(m) is True
    m.close()
    assert bool(m) is True  # as for a closed file object; no ClosedError


def test_not_iterable_by_accident(m):
    # No per-byte Python loop behind anyone's back: iterate over m[:].
    with pytest.raises(TypeError):
        iter(m)


def test_flush_is_sync(make_file):
    path = make_file(DATA)
    with iommap.open(path) as m:
        m[0:5] = b"flush"
        assert m.flush() is None
        assert m.flush("async") is None
        assert m.flush(offset=PAGE, length=10) is None
        with pytest.raises(iommap.BadArgumentValueError):
            m.flush("later")
        with pytest.raises(iommap.OutOfBoundsError):
            m.flush(offset=len(DATA) + 1)
    assert read_file(path)[:5] == b"flush"


def test_slice_read_after_an_outside_shrink_is_a_sigbus_error(make_file):
    path = make_file(pattern(3 * PAGE))
    run_ok(
        """
        import os, iommap
        m = iommap.open(PATH)
        os.truncate(PATH, PAGE)
        try:
            m[2 * PAGE : 2 * PAGE + 4]
        except iommap.SigbusError as e:
            assert e.reason == "sigbus"
        else:
            raise AssertionError("no SigbusError")
        try:
            m[2 * PAGE] = 1
        except iommap.SigbusError:
            pass
        else:
            raise AssertionError("no SigbusError on write")
        assert m[0:4] == PREFIX
        print("OK")
        """,
        PATH=path,
        PAGE=PAGE,
        PREFIX=pattern(4),
    )
