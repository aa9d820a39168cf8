"""Your exceptions are yours: an exception raised by code iommap calls
(__fspath__, __index__, an iterator or sequence given as offsets, __len__, a
buffer exporter) comes out of iommap unchanged, KeyboardInterrupt included.
badarg is only what iommap itself decides.

And strict where a silent wrong answer is possible: offsets given as a
buffer must hold 8-byte integers; every failure iommap decides is an
iommap.Error; messages name numbers as they were given."""

import array
import sys

import pytest
from helpers import PAGE, assert_error, pattern

import iommap

np = pytest.importorskip("numpy")


class Boom(Exception):
    pass


RAISED = [Boom("mine"), RuntimeError("mine"), KeyboardInterrupt(), TypeError("mine too")]


def _ids(exc):
    return type(exc).__name__


@pytest.fixture
def m(data_file):
    with iommap.open(data_file) as h:
        yield h


def _unchanged(exc, call):
    with pytest.raises(BaseException) as ei:
        call()
    assert ei.value is exc, repr(ei.value)


class Raising:
    """Raises `exc` from the one special method each subclass defines."""

    def __init__(self, exc):
        self.exc = exc


# ---- __fspath__ ---------------------------------------------------------------


class RaisingPath(Raising):
    def __fspath__(self):
        raise self.exc


@pytest.mark.parametrize("exc", RAISED, ids=_ids)
def test_fspath_exception_comes_out_unchanged(exc, tmp_path):
    _unchanged(exc, lambda: iommap.open(RaisingPath(exc)))
    _unchanged(exc, lambda: iommap.open(RaisingPath(exc), create=True, size=PAGE))
    assert list(tmp_path.iterdir()) == []


def test_fspath_returning_a_wrong_type_is_badarg():
    class Wrong:
        def __fspath__(self):
            return 42

    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        iommap.open(Wrong())
    assert_error(ei, TypeError, "badarg")


# ---- __index__ ------------------------------------------------------------------


class RaisingIndex(Raising):
    def __index__(self):
        raise self.exc


@pytest.mark.parametrize("exc", RAISED, ids=_ids)
def test_index_exception_comes_out_unchanged(exc, m, data_file):
    bad = RaisingIndex(exc)
    calls = [
        lambda: m.pread(bad, 1),
        lambda: m.pread(0, bad),
        lambda: m.readinto(bad, bytearray(1)),
        lambda: m.pwrite(bad, b"x"),
        lambda: m.truncate(bad),
        lambda: m.sync("sync", bad),
        lambda: m.advise(bad, 0, "normal"),
        lambda: m.view(bad),
        lambda: m.gather([0], bad),
        lambda: m.gather([bad], 1),
        lambda: m.scatter([bad], 1, b"x"),
        lambda: m.resident(bad),
        lambda: iommap.open(data_file, size=bad),
    ]
    for call in calls:
        _unchanged(exc, call)
    assert len(m) == len(pattern(4 * PAGE + 123))


# ---- offsets: iterators, sequences, __len__ --------------------------------------


def _generator(exc):
    yield 0
    raise exc


class RaisingSequence:
    def __init__(self, exc, where):
        self.exc, self.where = exc, where

    def __len__(self):
        if self.where == "len":
            raise self.exc
        return 2

    def __getitem__(self, i):
        if self.where == "getitem" and i == 1:
            raise self.exc
        if i >= 2:
            raise IndexError(i)
        return 0


class RaisingIterable(Raising):
    def __iter__(self):
        raise self.exc


@pytest.mark.parametrize("exc", RAISED, ids=_ids)
@pytest.mark.parametrize("kind", ["generator", "getitem", "len", "iter"])
def test_offsets_exception_comes_out_unchanged(exc, kind, m):
    def offsets():
        if kind == "generator":
            return _generator(exc)
        if kind == "iter":
            return RaisingIterable(exc)
        return RaisingSequence(exc, kind)

    before = m.pread(0, 8)
    _unchanged(exc, lambda: m.gather(offsets(), 4))
    _unchanged(exc, lambda: m.gather(offsets(), 4, out=bytearray(8)))
    _unchanged(exc, lambda: m.scatter(offsets(), 4, b"abcdefgh"))
    assert m.pread(0, 8) == before


def test_offsets_that_are_not_iterable_stay_badarg(m):
    for offsets in (5, None, 1.5, object()):
        with pytest.raises(iommap.BadArgumentTypeError):
            m.gather(offsets, 1)


# ---- buffer exporters (Python 3.12+: __buffer__) ---------------------------------

needs_buffer_protocol = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="classes export buffers from 3.12"
)


class RaisingBuffer(Raising):
    def __buffer__(self, flags):
        raise self.exc


@needs_buffer_protocol
@pytest.mark.parametrize("exc", RAISED, ids=_ids)
def test_buffer_exporter_exception_comes_out_unchanged(exc, m):
    bad = RaisingBuffer(exc)
    before = m.pread(0, 8)
    calls = [
        lambda: m.pwrite(0, bad),
        lambda: m.pwrite(0, [b"ok", bad]),
        lambda: m.readinto(0, bad),
        lambda: m.gather([0], 4, out=bad),
        lambda: m.gather(bad, 4),
        lambda: m.scatter([0], 4, bad),
    ]
    for call in calls:
        _unchanged(exc, call)
    assert m.pread(0, 8) == before


def test_not_a_buffer_stays_badarg(m):
    with pytest.raises(iommap.BadArgumentTypeError):
        m.pwrite(0, object())
    with pytest.raises(iommap.BadArgumentTypeError):
        m.readinto(0, b"read-only")
    with pytest.raises(iommap.BadArgumentTypeError):
        m.readinto(0, memoryview(bytearray(8))[::2])  # not contiguous
    with pytest.raises(iommap.BadArgumentTypeError):
        m.pwrite(0, memoryview(b"abcdefgh")[::2])
    with pytest.raises(iommap.BadArgumentTypeError):
        m.gather([0], 1, out=b"x")
    with pytest.raises(iommap.BadArgumentTypeError):
        m.scatter([0], 1, object())


# ---- strict offsets -------------------------------------------------------------


@pytest.mark.parametrize(
    "offsets",
    [
        np.array([0, 512]).tobytes(),  # 16 bytes: not sixteen 1-byte offsets
        bytearray(16),
        array.array("i", [0, 512]),
        array.array("B", [0, 1]),
        np.array([0, 512], dtype=np.int32),
        np.array([0, 512], dtype=np.uint16),
        np.array([0, 512], dtype=np.float64),
        np.array([0, 512], dtype=np.int64).astype(">i8" if sys.byteorder == "little" else "<i8"),
        memoryview(np.array([0, 512], dtype=np.int64).tobytes()).cast("d"),
    ],
    ids=lambda o: getattr(o, "dtype", type(o).__name__).__str__(),
)
def test_offsets_buffer_must_hold_8_byte_integers(m, offsets):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        m.gather(offsets, 4)
    assert_error(ei, TypeError, "badarg")
    with pytest.raises(iommap.BadArgumentTypeError):
        m.scatter(offsets, 4, bytes(8))


@pytest.mark.parametrize(
    "offsets",
    [
        np.array([0, 512], dtype=np.int64),
        np.array([0, 512], dtype=np.uint64),
        np.array([0, 512], dtype="=i8"),
        np.array([0, 512], dtype="<i8" if sys.byteorder == "little" else ">i8"),
        np.array([0, 7, 512, 9], dtype=np.int64)[::2],  # strided
        array.array("q", [0, 512]),
        array.array("Q", [0, 512]),
        memoryview(array.array("q", [0, 512])),
        [0, 512],
        (0, 512),
        range(0, 1024, 512),
    ],
    ids=str,
)
def test_offsets_accepted(m, offsets, data_file):
    data = pattern(4 * PAGE + 123)
    assert m.gather(offsets, 4) == bytearray(data[0:4] + data[512:516])


def test_two_dimensional_offsets_are_an_iommap_error(m):
    offsets = np.array([[0, 512], [4, 8]], dtype=np.int64)
    for call in (lambda: m.gather(offsets, 4), lambda: m.scatter(offsets, 1, b"abcd")):
        with pytest.raises(iommap.Error) as ei:
            call()
        assert_error(ei, TypeError, "badarg")
    zero_d = np.array(5, dtype=np.int64)
    with pytest.raises(iommap.BadArgumentTypeError):
        m.gather(zero_d, 4)


def test_zero_records_of_any_length_are_zero_bytes(m):
    for length in (0, 1, 2**63, 2**64, 2**100):
        out = m.gather([], length)
        assert type(out) is bytearray and out == bytearray()
        assert m.gather(np.array([], dtype=np.int64), length) == bytearray()
        assert m.scatter([], length, b"") is None


@pytest.mark.parametrize("offset,length", [(2**70, 1), (0, 2**70), (2**64, 2**65), (2**64 - 1, 2)])
def test_out_of_bounds_messages_name_numbers_as_given(m, offset, length):
    calls = {
        "pread": lambda: m.pread(offset, length),
        "pwrite": lambda: m.pwrite(offset, b"x"),
        "advise": lambda: m.advise(offset, length, "normal"),
        "sync": lambda: m.sync("sync", offset, length),
        "view": lambda: m.view(offset, length),
        "resident": lambda: m.resident(offset, length),
        "residency": lambda: m.residency(offset, length),
    }
    for name, call in calls.items():
        if name == "pwrite" and offset < 2**63:
            continue  # pwrite's length is its data's: only a large offset shows
        with pytest.raises(iommap.OutOfBoundsError) as ei:
            call()
        text = str(ei.value)
        assert str(offset) in text, (name, text)
        if name != "pwrite":
            assert str(length) in text, (name, text)
        if 2**64 - 1 not in (offset, length):
            assert str(2**64 - 1) not in text, (name, text)


@pytest.mark.parametrize("offset,length", [(2**70, 1), (0, 2**70), (2**64, 2**65)])
def test_batch_out_of_bounds_messages_name_numbers_as_given(m, offset, length):
    for call in (
        lambda: m.gather([offset], length),
        lambda: m.gather((offset,), length, out=bytearray(0)),
        lambda: m.scatter([offset], length, b""),
    ):
        with pytest.raises(iommap.Error) as ei:
            call()
        text = str(ei.value)
        if isinstance(ei.value, iommap.OutOfBoundsError):
            assert "offsets[" in text and str(offset) in text and str(length) in text, text
            assert str(2**64 - 1) not in text, text
        else:  # len(offsets) * length cannot be a size: refused before reading
            assert isinstance(ei.value, iommap.BadArgumentValueError), text
