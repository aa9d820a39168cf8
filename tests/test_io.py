"""pread, readinto, pwrite, position and len: exact bytes, bounds, argument types."""

import array
import ctypes
import mmap
import os
import tempfile
import tracemalloc

import pytest
from helpers import PAGE, assert_error, read_file, run_ok
from hypothesis import given, settings
from hypothesis import strategies as st

import iommap


class Index:
    """An int-like object, as numpy integers are: accepted via __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


HUGE = [2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65, 2**200]


# ---- position / len -------------------------------------------------------


def test_position_and_len_are_the_mapped_size(handle, data):
    assert handle.position() == len(data)
    assert len(handle) == len(data)
    assert type(handle.position()) is int


# ---- pread ------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset,length",
    [
        (0, 1),
        (0, 100),
        (5, 10),
        (PAGE - 1, 2),
        (PAGE, PAGE),
        (1, 3 * PAGE),
        (4 * PAGE, 123),
        (4 * PAGE + 122, 1),
    ],
)
def test_pread_returns_exact_bytes(handle, data, offset, length):
    got = handle.pread(offset, length)
    assert type(got) is bytes
    assert got == data[offset : offset + length]


def test_pread_whole_file(handle, data):
    assert handle.pread(0, len(data)) == data


def test_pread_large_copy_releasing_gil(make_file):
    size = 64 * 1024 * 5 + 17
    content = os.urandom(size)
    with iommap.open(make_file(content), "read") as m:
        assert m.pread(0, size) == content
        assert m.pread(3, 64 * 1024) == content[3 : 3 + 64 * 1024]


def test_pread_zero_length(handle, data):
    assert handle.pread(0, 0) == b""
    assert handle.pread(17, 0) == b""
    assert handle.pread(len(data), 0) == b""


def test_pread_is_a_copy(handle, data):
    got = handle.pread(0, 4)
    handle.pwrite(0, b"ZZZZ")
    assert got == data[:4]


@pytest.mark.parametrize(
    "offset,length",
    [
        (0, 4 * PAGE + 124),
        (1, 4 * PAGE + 123),
        (4 * PAGE + 123, 1),
        (4 * PAGE + 124, 0),
        (4 * PAGE + 124, 1),
        (10**6, 0),
        (0, 10**9),
        (0, 2**40),
    ],
)
def test_pread_out_of_bounds(handle, offset, length):
    # (0, 2**40): bounds are checked before anything is allocated, so this is
    # out_of_bounds, not MemoryError.
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        handle.pread(offset, length)
    assert_error(ei, IndexError, "out_of_bounds")


@pytest.mark.parametrize("huge", HUGE)
def test_pread_huge_numbers_are_out_of_bounds_never_overflow(handle, huge):
    for offset, length in [
        (huge, 0),
        (huge, 1),
        (0, huge),
        (1, huge),
        (huge, huge),
        (PAGE, huge - PAGE),
    ]:
        with pytest.raises(iommap.OutOfBoundsError) as ei:
            handle.pread(offset, length)
        assert_error(ei, IndexError, "out_of_bounds")
        assert not isinstance(ei.value, OverflowError)


def test_pread_offset_plus_length_wrapping_64_bits(handle):
    # offset + length == 2**64: wraps to 0 in uint64 arithmetic.
    for offset, length in [(1, 2**64 - 1), (2**64 - 1, 1), (2**63, 2**63), (PAGE, 2**64 - PAGE)]:
        with pytest.raises(iommap.OutOfBoundsError):
            handle.pread(offset, length)


@pytest.mark.parametrize(
    "offset,length", [(-1, 0), (0, -1), (-1, -1), (-(2**70), 1), (1, -(2**70))]
)
def test_pread_negative_is_bad_value(handle, offset, length):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.pread(offset, length)
    assert_error(ei, ValueError, "badarg")
    assert not isinstance(ei.value, IndexError)


@pytest.mark.parametrize("bad", [1.0, "1", b"1", None, [1], 1j])
def test_pread_wrong_types_are_bad_type(handle, bad):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.pread(bad, 1)
    assert_error(ei, TypeError, "badarg")
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.pread(0, bad)


def test_pread_accepts_index_and_bool(handle, data):
    # Like Python's own positional APIs (os.pread, sequence indexing), any
    # object with __index__ is an int, and bool is an int.
    assert handle.pread(Index(3), Index(4)) == data[3:7]
    assert handle.pread(True, True) == data[1:2]
    assert handle.pread(False, 2) == data[:2]
    with pytest.raises(iommap.OutOfBoundsError):
        handle.pread(Index(2**70), 1)
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pread(Index(-1), 1)


def test_wrong_argument_counts_are_plain_type_errors(handle):
    # Python's argument machinery: plain TypeError, not an iommap.Error.
    for call in [
        lambda: handle.pread(0),
        lambda: handle.pread(0, 1, 2),
        lambda: handle.pread(),
        lambda: handle.readinto(0),
        lambda: handle.pwrite(0),
        lambda: handle.pwrite(0, b"", 1),
        lambda: handle.truncate(),
        lambda: handle.advise(0, 0),
        lambda: handle.position(1),
        lambda: handle.close(1),
    ]:
        with pytest.raises(TypeError) as ei:
            call()
        assert type(ei.value) is TypeError


# ---- readinto -----------------------------------------------------------


def test_readinto_bytearray(handle, data):
    buf = bytearray(100)
    assert handle.readinto(7, buf) == 100
    assert buf == data[7:107]


def test_readinto_memoryview_slice(handle, data):
    buf = bytearray(b"-" * 20)
    n = handle.readinto(PAGE - 2, memoryview(buf)[5:15])
    assert n == 10
    assert buf == b"-----" + data[PAGE - 2 : PAGE + 8] + b"-----"


def test_readinto_counts_bytes_not_items(handle, data):
    # As Python's readinto: the size is memoryview(buffer).nbytes.
    buf = array.array("d", [0.0] * 5)
    assert handle.readinto(1, buf) == 40
    assert buf.tobytes() == data[1:41]
    buf = array.array("H", [0] * 3)
    assert handle.readinto(0, buf) == 6
    assert buf.tobytes() == data[:6]


def test_readinto_multidimensional_buffer(handle, data):
    buf = bytearray(24)
    view = memoryview(buf).cast("B", (4, 6))
    assert handle.readinto(2, view) == 24
    assert bytes(buf) == data[2:26]
    view = memoryview(bytearray(32)).cast("i", (2, 4))
    assert handle.readinto(0, view) == 32
    assert view.tobytes() == data[:32]


def test_readinto_ctypes_and_mmap_buffers(handle, data):
    cbuf = (ctypes.c_char * 16)()
    assert handle.readinto(3, cbuf) == 16
    assert bytes(cbuf) == data[3:19]
    anon = mmap.mmap(-1, PAGE)
    try:
        assert handle.readinto(PAGE, anon) == PAGE
        assert anon[:] == data[PAGE : 2 * PAGE]
    finally:
        anon.close()


def test_readinto_numpy_arrays(handle, data):
    np = pytest.importorskip("numpy")
    arr = np.zeros(10, dtype=np.uint32)
    assert handle.readinto(4, arr) == 40
    assert arr.tobytes() == data[4:44]
    arr2 = np.zeros((3, 5), dtype=np.uint8)
    assert handle.readinto(0, arr2) == 15
    assert arr2.tobytes() == data[:15]
    fortran = np.zeros((3, 5), dtype=np.uint8, order="F")
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.readinto(0, fortran)
    readonly = np.zeros(4, dtype=np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.readinto(0, readonly)


def test_readinto_large_buffer(make_file):
    size = 300 * 1024 + 5
    content = os.urandom(size)
    with iommap.open(make_file(content), "read") as m:
        buf = bytearray(size)
        assert m.readinto(0, buf) == size
        assert buf == content


def test_readinto_allocates_nothing(make_file):
    # "no allocation": filling a 4 MiB buffer must not make a 4 MiB object
    # on the way (tracemalloc sees every Python allocation).
    size = 4 * 1024 * 1024
    with iommap.open(make_file(os.urandom(size)), "read") as m:
        buf = bytearray(size)
        m.readinto(0, buf)  # warm-up
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            for offset in (0, 1, 4096):
                m.readinto(offset, memoryview(buf)[: size - offset])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - before < 64 * 1024


def test_readinto_empty_buffer(handle, data):
    assert handle.readinto(0, bytearray()) == 0
    assert handle.readinto(len(data), bytearray()) == 0


@pytest.mark.parametrize(
    "buffer",
    [b"abc", memoryview(b"abc"), memoryview(bytearray(3)).toreadonly(), "abc", 3, None, [0, 0]],
    ids=["bytes", "readonly-mv", "toreadonly", "str", "int", "None", "list"],
)
def test_readinto_needs_a_writable_buffer(handle, buffer):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.readinto(0, buffer)
    assert_error(ei, TypeError, "badarg")


def test_readinto_needs_a_contiguous_buffer(handle):
    buf = bytearray(10)
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.readinto(0, memoryview(buf)[::2])
    assert buf == bytearray(10)


@pytest.mark.parametrize("offset,size", [(4 * PAGE + 100, 24), (4 * PAGE + 124, 0), (0, 5 * PAGE)])
def test_readinto_out_of_bounds_leaves_buffer_untouched(handle, offset, size):
    buf = bytearray(b"\xaa" * size)
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        handle.readinto(offset, buf)
    assert_error(ei, IndexError, "out_of_bounds")
    assert buf == b"\xaa" * size


@pytest.mark.parametrize("huge", HUGE)
def test_readinto_huge_offset_out_of_bounds(handle, huge):
    with pytest.raises(iommap.OutOfBoundsError):
        handle.readinto(huge, bytearray(1))
    with pytest.raises(iommap.OutOfBoundsError):
        handle.readinto(huge, bytearray(0))


def test_readinto_offset_types(handle, data):
    buf = bytearray(3)
    assert handle.readinto(Index(5), buf) == 3
    assert buf == data[5:8]
    assert handle.readinto(True, buf) == 3
    assert buf == data[1:4]
    with pytest.raises(iommap.BadArgumentValueError):
        handle.readinto(-1, buf)
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.readinto(1.0, buf)


# ---- pwrite -------------------------------------------------------------


def test_pwrite_bytes_reaches_the_file(handle, data_file, data):
    assert handle.pwrite(10, b"hello") is None
    assert handle.pread(8, 9) == data[8:10] + b"hello" + data[15:17]
    expected = data[:10] + b"hello" + data[15:]
    assert read_file(data_file) == expected
    fd = os.open(data_file, os.O_RDONLY)
    try:
        assert os.pread(fd, 5, 10) == b"hello"
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "payload",
    [
        bytearray(b"abcd"),
        memoryview(b"abcd"),
        memoryview(b"xxabcdxx")[2:6],
        array.array("B", b"abcd"),
        (ctypes.c_char * 4)(*b"abcd"),
    ],
    ids=["bytearray", "memoryview", "mv-slice", "array", "ctypes"],
)
def test_pwrite_bytes_like_objects(handle, data_file, payload):
    handle.pwrite(PAGE - 2, payload)
    assert handle.pread(PAGE - 2, 4) == b"abcd"
    assert read_file(data_file)[PAGE - 2 : PAGE + 2] == b"abcd"


def test_pwrite_typed_array_writes_its_raw_bytes(handle):
    arr = array.array("I", [0x01020304, 0x05060708])
    handle.pwrite(0, arr)
    assert handle.pread(0, 8) == arr.tobytes()


def test_pwrite_list_and_tuple_contiguously(handle, data):
    handle.pwrite(3, [b"ab", bytearray(b"cd"), memoryview(b"ef")])
    assert handle.pread(3, 6) == b"abcdef"
    handle.pwrite(20, (b"x", (b"y", [b"z"]), b""))
    assert handle.pread(19, 5) == data[19:20] + b"xyz" + data[23:24]


def test_pwrite_nested_lists_like_an_iolist(handle, data_file, data):
    payload = [b"a", [b"b", [b"c", [b"d", []], b"e"]], [[[]]], (b"f",), [[b"g"], b"h"]]
    handle.pwrite(PAGE * 2 - 4, payload)
    assert handle.pread(PAGE * 2 - 4, 8) == b"abcdefgh"
    assert read_file(data_file)[PAGE * 2 - 4 : PAGE * 2 + 4] == b"abcdefgh"
    assert read_file(data_file)[PAGE * 2 + 4 :] == data[PAGE * 2 + 4 :]


def test_pwrite_large_list_spanning_pages(handle, data):
    chunks = [bytes([i]) * 1000 for i in range(1, 17)]
    handle.pwrite(1, chunks)
    assert handle.pread(1, 16000) == b"".join(chunks)
    assert handle.pread(0, 1) == data[:1]
    assert handle.pread(16001, 10) == data[16001:16011]


def test_pwrite_subclasses_of_list_and_bytes(handle):
    class Chunks(list):
        pass

    class Data(bytes):
        pass

    handle.pwrite(0, Chunks([Data(b"sub"), (Data(b"class"),)]))
    assert handle.pread(0, 8) == b"subclass"


def test_pwrite_shared_sublist_is_not_a_cycle(handle):
    # The same list twice is a DAG, not a cycle: it is written twice.
    sub = [b"ab", b"c"]
    handle.pwrite(0, [sub, sub, [sub]])
    assert handle.pread(0, 9) == b"abcabcabc"


def test_pwrite_empty_payloads(handle, data_file, data):
    for payload in [b"", [], (), [[], [[]]], bytearray(), [b"", b""]]:
        assert handle.pwrite(5, payload) is None
        assert handle.pwrite(len(data), payload) is None
    assert read_file(data_file) == data


def test_pwrite_at_the_very_end(handle, data_file, data):
    handle.pwrite(len(data) - 2, b"YZ")
    assert read_file(data_file)[-3:] == data[-3:-2] + b"YZ"


def test_pwrite_large_copy(make_file):
    size = 1024 * 1024
    path = make_file(b"\0" * size)
    payload = os.urandom(size - 10)
    with iommap.open(path) as m:
        m.pwrite(10, payload)
        assert m.pread(10, len(payload)) == payload
    assert read_file(path) == b"\0" * 10 + payload


@pytest.mark.parametrize(
    "payload",
    [
        "text",
        5,
        None,
        1.5,
        [b"a", 1],
        [b"a", "b"],
        [b"ok", [None]],
        {b"a": 1},
        {b"a"},
        [True],
        iter([b"a"]),
        (x for x in [b"a"]),
    ],
    ids=[
        "str",
        "int",
        "None",
        "float",
        "list-int",
        "list-str",
        "nested-None",
        "dict",
        "set",
        "list-bool",
        "iterator",
        "generator",
    ],
)
def test_pwrite_wrong_types_are_bad_type_and_write_nothing(handle, data_file, data, payload):
    # Only bytes-like objects and lists/tuples of them are data (no ints, no
    # str, no other iterables).  A bad element anywhere fails the whole call
    # before a byte is written: it is one operation.
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.pwrite(0, payload)
    assert_error(ei, TypeError, "badarg")
    assert read_file(data_file) == data
    assert handle.pread(0, 8) == data[:8]


def test_pwrite_non_contiguous_buffer(handle, data):
    # The API leaves this open: writing the bytes the view shows, or refusing with
    # badarg TypeError, are both fine; writing anything else is not.
    view = memoryview(b"aXbXcX")[::2]
    try:
        handle.pwrite(0, view)
    except iommap.BadArgumentTypeError:
        assert handle.pread(0, 3) == data[:3]
    else:
        assert handle.pread(0, 3) == b"abc"


def _nested(depth):
    payload = b"x"
    for _ in range(depth):
        payload = [payload]
    return payload


def test_pwrite_nesting_depth_limit(handle, data):
    # Depth counts list levels: [b"x"] is 1.  100 is allowed, 101 is badarg.
    handle.pwrite(0, _nested(100))
    assert handle.pread(0, 1) == b"x"
    handle.pwrite(0, (data[:1],))
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.pwrite(0, _nested(101))
    assert_error(ei, ValueError, "badarg")
    assert handle.pread(0, 1) == data[:1]


def test_pwrite_very_deep_nesting_and_cycles_are_badarg(tmp_path):
    # In a child: unbounded recursion in C would crash the interpreter.
    path = str(tmp_path / "f.bin")
    with open(path, "wb") as f:
        f.write(b"0123456789")
    run_ok(
        """
        import iommap
        m = iommap.open(path)
        deep = b"x"
        for _ in range(200000):
            deep = [deep]
        cycle = [b"ab"]
        cycle.append(cycle)
        outer = (b"z", [cycle])
        for payload, what in [
            (deep, "deep nesting"),
            ([[b"a", deep]], "deep nesting"),
            (cycle, "cycle"),
            (outer, "cycle"),
        ]:
            try:
                m.pwrite(0, payload)
            except iommap.BadArgumentValueError as e:
                assert e.reason == "badarg"
            else:
                raise AssertionError(what + " accepted")
        assert m.pread(0, 10) == b"0123456789"
        m.close()
        assert open(path, "rb").read() == b"0123456789"
        print("OK")
        """,
        path=path,
    )


@pytest.mark.parametrize(
    "offset,payload",
    [
        (4 * PAGE + 120, b"abcd"),
        (4 * PAGE + 124, b"a"),
        (4 * PAGE + 124, b""),
        (0, b"x" * (4 * PAGE + 124)),
        (4 * PAGE + 100, [b"a" * 20, [b"b" * 3, b"c"]]),
        (10**12, b"a"),
    ],
)
def test_pwrite_out_of_bounds_writes_nothing(handle, data_file, data, offset, payload):
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        handle.pwrite(offset, payload)
    assert_error(ei, IndexError, "out_of_bounds")
    assert read_file(data_file) == data
    assert handle.pread(0, len(data)) == data


@pytest.mark.parametrize("huge", HUGE)
def test_pwrite_huge_offsets(handle, data_file, data, huge):
    for payload in (b"a", b"", [b"a", b"b"]):
        with pytest.raises(iommap.OutOfBoundsError) as ei:
            handle.pwrite(huge, payload)
        assert not isinstance(ei.value, OverflowError)
    assert read_file(data_file) == data


def test_pwrite_offset_types(handle):
    handle.pwrite(Index(4), b"i")
    handle.pwrite(True, b"t")
    assert handle.pread(1, 1) == b"t"
    assert handle.pread(4, 1) == b"i"
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pwrite(-1, b"a")
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pwrite(-(2**80), b"a")
    for bad in (1.0, "0", None):
        with pytest.raises(iommap.BadArgumentTypeError):
            handle.pwrite(bad, b"a")


# ---- a model check ------------------------------------------------------

SIZE = 3 * PAGE + 7

ops = st.one_of(
    st.tuples(
        st.just("w"), st.integers(0, SIZE + 10), st.lists(st.binary(max_size=PAGE + 3), max_size=4)
    ),
    st.tuples(st.just("r"), st.integers(0, SIZE + 10), st.integers(0, 2 * PAGE)),
    st.tuples(st.just("i"), st.integers(0, SIZE + 10), st.integers(0, PAGE)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, max_size=25))
def test_matches_a_bytearray_model(operations):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.bin")
        with open(path, "wb") as f:
            f.write(bytes(SIZE))
        model = bytearray(SIZE)
        with iommap.open(path) as m:
            for kind, offset, arg in operations:
                if kind == "w":
                    total = sum(len(x) for x in arg)
                    if offset + total > SIZE:
                        with pytest.raises(iommap.OutOfBoundsError):
                            m.pwrite(offset, arg)
                    else:
                        m.pwrite(offset, arg)
                        model[offset : offset + total] = b"".join(arg)
                elif kind == "r":
                    if offset + arg > SIZE:
                        with pytest.raises(iommap.OutOfBoundsError):
                            m.pread(offset, arg)
                    else:
                        assert m.pread(offset, arg) == model[offset : offset + arg]
                else:
                    buf = bytearray(arg)
                    if offset + arg > SIZE:
                        with pytest.raises(iommap.OutOfBoundsError):
                            m.readinto(offset, buf)
                    else:
                        assert m.readinto(offset, buf) == arg
                        assert buf == model[offset : offset + arg]
            assert m.position() == SIZE
        assert read_file(path) == model
