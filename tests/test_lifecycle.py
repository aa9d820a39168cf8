"""close, the closed state, the context manager, garbage collection, pickling."""

import copy
import gc
import pickle
import threading
import warnings

import pytest
from helpers import assert_error, fd_count, is_mapped, mappings_of, pattern, read_file

import iommap
from iommap import _core


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


@pytest.fixture
def big_file(tmp_path):
    """A file larger than the size from which regions unmap without the GIL."""
    path = tmp_path / "big"
    path.write_bytes(pattern(4 * _core.GIL_RELEASE_BYTES + 123))
    return path


def test_large_region_unmaps_when_the_handle_was_its_last_reference(big_file):
    m = iommap.open(big_file)
    assert is_mapped(big_file)
    m.close()
    assert not is_mapped(big_file)


def test_large_region_unmaps_when_the_last_view_goes(big_file):
    expected = read_file(big_file)
    m = iommap.open(big_file)
    v = m.view()
    m.close()
    assert is_mapped(big_file)
    assert bytes(v) == expected
    del v
    gc.collect()
    assert not is_mapped(big_file)


def test_large_written_private_region_unmaps_on_collection(big_file):
    # A private mapping written all over holds copies of its pages; dropping
    # the handle unclosed unmaps them from the finalizer, file untouched.
    expected = read_file(big_file)
    m = iommap.open(big_file, private=True)
    m.pwrite(0, b"\xff" * len(m))
    with pytest.warns(ResourceWarning):
        del m
        gc.collect()
    assert not is_mapped(big_file)
    assert read_file(big_file) == expected


def test_large_regions_unmap_while_other_threads_read(big_file):
    # Unmapping lets other threads run; theirs must be the bytes of the
    # region they read, and every dropped region must be gone.
    expected = read_file(big_file)
    errors = []
    stop = threading.Event()

    def reader(handle):
        try:
            while not stop.is_set():
                assert handle.pread(0, 4096) == expected[:4096]
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    with iommap.open(big_file, "read") as keeper:
        threads = [threading.Thread(target=reader, args=(keeper,)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(50):
                m = iommap.open(big_file)
                v = m.view()
                # Sizes alternate, so every truncate maps a new region.
                m.truncate(len(m) + 4096 if i % 2 == 0 else len(m) - 4096)
                m.close()  # drops the new region
                del v  # drops the first: the view was its last reference
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == []
        (keepers,) = mappings_of(big_file)  # every region but the keeper's is gone
        assert keepers["perms"].startswith("r")


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
