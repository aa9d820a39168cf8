"""Errors cross process boundaries: every iommap exception pickles to the same
class with the same reason, errno, strerror, filename and message, so a
failing worker of a process pool gives its parent the error it raised.
Handles do not pickle; each process opens its own."""

import concurrent.futures
import copy
import multiprocessing
import os
import pickle

import pytest
from helpers import run_ok

import iommap


def _attributes(exc):
    return (
        type(exc),
        exc.reason,
        getattr(exc, "errno", None),
        getattr(exc, "strerror", None),
        getattr(exc, "filename", None),
        str(exc),
        exc.args,
    )


# Each case: a failing iommap call, run in the worker and in the parent.
def _fail(case, path):
    if case == "enoent":
        iommap.open(os.path.join(path, "missing"))
    if case == "eisdir":
        iommap.open(path)
    if case == "eacces":
        with iommap.open(os.path.join(path, "data"), "read") as m:
            m.pwrite(0, b"x")
    if case == "efbig":
        with iommap.open(os.path.join(path, "data")) as m:
            m.truncate(2**63)
    if case == "out_of_bounds":
        with iommap.open(os.path.join(path, "data")) as m:
            m.pread(10, 10)
    if case == "badarg_type":
        with iommap.open(os.path.join(path, "data")) as m:
            m.pread("0", 1)
    if case == "badarg_value":
        with iommap.open(os.path.join(path, "data")) as m:
            m.pread(-1, 1)
    if case == "closed":
        m = iommap.open(os.path.join(path, "data"))
        m.close()
        m.pread(0, 1)
    if case == "sigbus":
        # A file of its own: the pool runs cases at once, and the others
        # must not see this one's shrink.
        shrunk = os.path.join(path, "shrunk")
        with iommap.open(shrunk) as m:
            os.truncate(shrunk, 0)
            try:
                m.pread(0, 1)
            finally:
                os.truncate(shrunk, 16)
    raise AssertionError("no error for " + case)


CASES = {
    "enoent": (FileNotFoundError, "enoent"),
    "eisdir": (IsADirectoryError, "eisdir"),
    "eacces": (PermissionError, "eacces"),
    "efbig": (OSError, "efbig"),
    "out_of_bounds": (iommap.OutOfBoundsError, "out_of_bounds"),
    "badarg_type": (iommap.BadArgumentTypeError, "badarg"),
    "badarg_value": (iommap.BadArgumentValueError, "badarg"),
    "closed": (iommap.ClosedError, "closed"),
    "sigbus": (iommap.SigbusError, "sigbus"),
}


def _raise_in_worker(case, path):
    _fail(case, path)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "data").write_bytes(b"0123456789abcdef")
    (tmp_path / "shrunk").write_bytes(b"0123456789abcdef")
    return str(tmp_path)


def _expected(case, path):
    with pytest.raises(iommap.Error) as ei:
        _fail(case, path)
    cls, reason = CASES[case]
    assert isinstance(ei.value, cls) and ei.value.reason == reason
    return ei.value


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_error_pickles_to_the_same_error(workdir, case, protocol):
    exc = _expected(case, workdir)
    clone = pickle.loads(pickle.dumps(exc, protocol))
    assert _attributes(clone) == _attributes(exc)
    assert isinstance(clone, iommap.Error)


@pytest.mark.parametrize("case", sorted(CASES))
def test_copy_gives_the_same_error(workdir, case):
    exc = _expected(case, workdir)
    assert _attributes(copy.copy(exc)) == _attributes(exc)
    assert _attributes(copy.deepcopy(exc)) == _attributes(exc)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_pool_worker_gives_its_parent_the_error_it_raised(workdir, method):
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = {case: pool.submit(_raise_in_worker, case, workdir) for case in sorted(CASES)}
        for case, future in futures.items():
            remote = future.exception(timeout=120)
            local = _expected(case, workdir)
            assert _attributes(remote) == _attributes(local), case


def test_an_error_unpickles_where_its_class_was_never_made(workdir):
    # The errno classes are made on demand: a fresh interpreter that never
    # raised ENOSPC still unpickles an ENOSPCError to the class it would raise.
    exc = iommap._errors.os_error(28, "truncate: fallocate() failed: No space left", "f.bin")
    exc.note = "kept"
    run_ok(
        """
        import pickle, iommap
        from iommap import _errors
        clone = pickle.loads(blob)
        assert type(clone) is _errors._os_error_class(28), type(clone)
        assert type(clone).__name__ == "ENOSPCError"
        assert isinstance(clone, iommap.SystemCallError) and isinstance(clone, OSError)
        assert (clone.reason, clone.errno, clone.filename) == ("enospc", 28, "f.bin")
        assert clone.strerror == "truncate: fallocate() failed: No space left"
        assert str(clone) == expected_str and clone.note == "kept"
        print("OK")
        """,
        blob=pickle.dumps(exc),
        expected_str=str(exc),
    )


def _open_and_return(path):
    return iommap.open(path)


def test_a_handle_cannot_cross_to_a_pool_worker(workdir):
    path = os.path.join(workdir, "data")
    context = multiprocessing.get_context("spawn")
    with iommap.open(path) as m, concurrent.futures.ProcessPoolExecutor(1, context) as pool:
        with pytest.raises(TypeError, match="cannot pickle"):
            pool.submit(len, m).result(timeout=120)
        # Nor back from one: the worker's handle stays in the worker.
        with pytest.raises(TypeError, match="cannot pickle"):
            pool.submit(_open_and_return, path).result(timeout=120)
        assert m.pread(0, 4) == b"0123"
