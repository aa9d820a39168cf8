"""advise (madvise) and sync (msync)."""

import pytest
from helpers import PAGE, assert_error, read_file

import iommap

HINTS = ["normal", "random", "sequential", "willneed", "dontneed"]
SIZE = 4 * PAGE + 123  # the `data` fixture's length


@pytest.mark.parametrize("hint", HINTS)
@pytest.mark.parametrize(
    "offset,length",
    [
        (0, 0),
        (0, SIZE),
        (1, 10),
        (PAGE - 1, 2),
        (PAGE, PAGE),
        (SIZE - 1, 1),
        (SIZE, 0),
        (7, 0),
        (3 * PAGE + 5, 0),
    ],
)
def test_every_hint_on_any_in_bounds_range(handle, data, hint, offset, length):
    # Unaligned ranges are accepted: the core aligns them to pages inside.
    assert handle.advise(offset, length, hint) is None
    assert handle.pread(0, len(data)) == data


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
@pytest.mark.parametrize("private", [False, True])
def test_advise_in_every_mode(data_file, data, mode, private):
    # Every hint is accepted whatever the handle may do, and changes no byte.
    with iommap.open(data_file, mode, private=private) as m:
        for hint in HINTS:
            assert m.advise(0, 0, hint) is None
            assert m.advise(PAGE, 1, hint) is None
            if mode != "write":
                assert m.pread(0, len(data)) == data
    assert read_file(data_file) == data


def test_dontneed_keeps_shared_data(handle, data_file, data):
    # On a shared mapping the pages live in the page cache: dropping them
    # from this process loses nothing.
    handle.pwrite(PAGE, b"persist")
    handle.advise(0, 0, "dontneed")
    assert handle.pread(PAGE, 7) == b"persist"
    assert read_file(data_file) == data[:PAGE] + b"persist" + data[PAGE + 7 :]


def test_dontneed_keeps_private_changes(data_file, data):
    # Linux's MADV_DONTNEED would throw a private mapping's own changes away
    # and show the file again.  A hint must never lose data: a careful user
    # expects the private writes to stay.
    with iommap.open(data_file, private=True) as m:
        m.pwrite(PAGE + 1, b"mine")
        m.advise(0, 0, "dontneed")
        m.advise(PAGE, PAGE, "dontneed")
        assert m.pread(PAGE + 1, 4) == b"mine"
    assert read_file(data_file) == data


def test_hints_do_not_change_data(handle, data):
    for hint in HINTS:
        handle.advise(PAGE + 3, 2 * PAGE, hint)
        assert handle.pread(0, len(data)) == data


@pytest.mark.parametrize(
    "hint", ["", "NORMAL", "Free", "huge_page", "will_need", "dont_need", "madv_cold"]
)
def test_unknown_hint_is_bad_value(handle, hint):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.advise(0, 0, hint)
    assert_error(ei, ValueError, "badarg")


@pytest.mark.parametrize("hint", [b"normal", 1, None, ["normal"]])
def test_hint_of_wrong_type_is_bad_type(handle, hint):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.advise(0, 0, hint)
    assert_error(ei, TypeError, "badarg")


@pytest.mark.parametrize(
    "offset,length", [(0, SIZE + 1), (SIZE, 1), (SIZE + 1, 0), (1, SIZE), (10**9, 0)]
)
def test_out_of_bounds(handle, offset, length):
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        handle.advise(offset, length, "normal")
    assert_error(ei, IndexError, "out_of_bounds")


@pytest.mark.parametrize("huge", [2**63, 2**64 - 1, 2**64, 2**100])
def test_huge_numbers_are_out_of_bounds(handle, huge):
    for offset, length in [(huge, 0), (0, huge), (1, huge), (huge, huge)]:
        with pytest.raises(iommap.OutOfBoundsError) as ei:
            handle.advise(offset, length, "willneed")
        assert not isinstance(ei.value, OverflowError)


@pytest.mark.parametrize("offset,length", [(-1, 0), (0, -1), (-(2**70), 0)])
def test_negative_is_bad_value(handle, offset, length):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.advise(offset, length, "normal")
    assert_error(ei, ValueError, "badarg")


def test_wrong_number_types(handle):
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.advise(0.0, 0, "normal")
    with pytest.raises(iommap.BadArgumentTypeError):
        handle.advise(0, "0", "normal")


def test_advise_on_empty_file(make_file):
    with iommap.open(make_file(b"")) as m:
        for hint in HINTS:
            m.advise(0, 0, hint)
        with pytest.raises(iommap.OutOfBoundsError):
            m.advise(0, 1, "normal")
        with pytest.raises(iommap.OutOfBoundsError):
            m.advise(1, 0, "normal")


# ---- sync ---------------------------------------------------------------


def test_sync_default_and_modes(handle, data_file, data):
    handle.pwrite(0, b"one")
    assert handle.sync() is None
    handle.pwrite(3, b"two")
    assert handle.sync("sync") is None
    handle.pwrite(6, b"three")
    assert handle.sync("async") is None
    assert read_file(data_file) == b"onetwothree" + data[11:]


def test_sync_mode_by_keyword(handle):
    # The documented signature is sync(mode="sync").
    assert handle.sync(mode="sync") is None
    assert handle.sync(mode="async") is None


@pytest.mark.parametrize("mode", ["", "SYNC", "fsync", "invalidate", "async "])
def test_unknown_sync_mode_is_bad_value(handle, mode):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.sync(mode)
    assert_error(ei, ValueError, "badarg")


@pytest.mark.parametrize("mode", [b"sync", 1, True])
def test_sync_mode_of_wrong_type_is_bad_type(handle, mode):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.sync(mode)
    assert_error(ei, TypeError, "badarg")


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
def test_sync_in_every_mode(data_file, data, mode):
    with iommap.open(data_file, mode) as m:
        m.sync()
        m.sync("async")
    assert read_file(data_file) == data


@pytest.mark.parametrize("mode", ["read_write", "write"])
def test_private_sync_succeeds_and_writes_nothing(data_file, data, mode):
    with iommap.open(data_file, mode, private=True) as m:
        m.pwrite(0, b"private!")
        assert m.sync() is None
        assert m.sync("async") is None
        assert read_file(data_file) == data
        if mode == "read_write":
            assert m.pread(0, 8) == b"private!"
    assert read_file(data_file) == data
