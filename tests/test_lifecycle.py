"""close, the closed state, the context manager, garbage collection, pickling."""

import copy
import gc
import pickle
import warnings

import pytest
from helpers import assert_error, fd_count, is_mapped, read_file

import iommap


def test_close_returns_none_and_is_idempotent(data_file):
    m = iommap.open(data_file)
    assert m.closed is False
    assert m.close() is None
    assert m.closed is True
    assert m.close() is None
    assert m.close() is None
    assert m.closed is True


def test_close_releases_descriptor_and_mapping(data_file):
    before = fd_count()
    m = iommap.open(data_file)
    assert fd_count() == before + 1
    assert is_mapped(data_file)
    m.close()
    assert fd_count() == before
    assert not is_mapped(data_file)


def test_close_keeps_written_data(data_file, data):
    m = iommap.open(data_file)
    m.pwrite(0, b"kept")
    m.close()
    assert read_file(data_file) == b"kept" + data[4:]


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
def test_attributes_readable_after_close(data_file, mode):
    m = iommap.open(data_file, mode)
    m.close()
    assert m.closed is True
    assert m.mode == mode
    assert m.path is data_file


def test_attributes_are_read_only(handle, data_file):
    for name, value in [("closed", True), ("mode", "read"), ("path", "/etc/passwd")]:
        with pytest.raises(AttributeError):
            setattr(handle, name, value)
        with pytest.raises((AttributeError, TypeError)):
            delattr(handle, name)
    assert handle.closed is False
    assert handle.mode == "read_write"
    assert handle.path is data_file


CLOSED_CALLS = {
    "pread": lambda m: m.pread(0, 1),
    "pread-empty": lambda m: m.pread(0, 0),
    "readinto": lambda m: m.readinto(0, bytearray(1)),
    "pwrite": lambda m: m.pwrite(0, b"x"),
    "pwrite-empty": lambda m: m.pwrite(0, b""),
    "sync": lambda m: m.sync(),
    "sync-async": lambda m: m.sync("async"),
    "truncate": lambda m: m.truncate(10),
    "advise": lambda m: m.advise(0, 0, "normal"),
    "position": lambda m: m.position(),
    "len": lambda m: len(m),
    "with": lambda m: m.__enter__(),
}


@pytest.mark.parametrize("call", list(CLOSED_CALLS.values()), ids=list(CLOSED_CALLS))
def test_every_method_but_close_raises_closed(data_file, data, call):
    m = iommap.open(data_file)
    m.close()
    with pytest.raises(iommap.ClosedError) as ei:
        call(m)
    assert_error(ei, ValueError, "closed")
    assert read_file(data_file) == data


def test_with_statement_on_closed_handle(data_file):
    m = iommap.open(data_file)
    m.close()
    with pytest.raises(iommap.ClosedError):
        with m:
            raise AssertionError("entered a closed handle")


def test_context_manager_returns_the_handle_and_closes(data_file):
    m = iommap.open(data_file)
    with m as entered:
        assert entered is m
        assert not m.closed
    assert m.closed


def test_context_manager_closes_on_exception_and_propagates(data_file):
    with pytest.raises(KeyError):
        with iommap.open(data_file) as m:
            raise KeyError("boom")
    assert m.closed


def test_close_inside_with_block(data_file):
    with iommap.open(data_file) as m:
        m.close()
    assert m.closed


def test_unclosed_handle_warns_and_is_closed_on_collection(data_file):
    before = fd_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = iommap.open(data_file)
        m.pwrite(0, b"gc")
        del m
        gc.collect()
    resource = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(resource) == 1, [str(w.message) for w in caught]
    assert fd_count() == before
    assert not is_mapped(data_file)
    assert read_file(data_file)[:2] == b"gc"


def test_unclosed_handle_in_a_cycle(data_file):
    before = fd_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        holder = [iommap.open(data_file)]
        holder.append(holder)
        del holder
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert fd_count() == before
    assert not is_mapped(data_file)


def test_closed_handle_collects_without_warning(data_file):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = iommap.open(data_file)
        m.close()
        del m
        with iommap.open(data_file) as m2:
            pass
        del m2
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_failed_open_leaves_nothing_to_warn_about(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(iommap.Error):
            iommap.open(str(tmp_path / "missing"))
        with pytest.raises(iommap.Error):
            iommap.open(str(tmp_path / "x"), "read", create=True)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused_with_plain_type_error(handle, protocol):
    with pytest.raises(TypeError) as ei:
        pickle.dumps(handle, protocol)
    assert type(ei.value) is TypeError


def test_pickling_a_closed_handle_is_refused(data_file):
    m = iommap.open(data_file)
    m.close()
    with pytest.raises(TypeError):
        pickle.dumps(m)


def test_copying_is_refused(handle):
    # copy goes through the same reduce protocol as pickle; a copied handle
    # would share (and double-close) the descriptor.
    with pytest.raises(TypeError):
        copy.copy(handle)
    with pytest.raises(TypeError):
        copy.deepcopy(handle)


def test_repr_works_open_and_closed(data_file):
    m = iommap.open(data_file)
    assert isinstance(repr(m), str)
    m.close()
    assert isinstance(repr(m), str)
