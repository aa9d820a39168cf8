"""The error table: classes, reasons, built-in bases, errno; and that a failed
call leaves the handle as it was."""

import errno
import pickle

import pytest
from helpers import PAGE, assert_error, read_file, run_ok

import iommap
from iommap import _errors


def test_public_names():
    for name in [
        "open",
        "MappedFile",
        "Error",
        "BadArgumentTypeError",
        "BadArgumentValueError",
        "ClosedError",
        "OutOfBoundsError",
        "SigbusError",
        "SystemCallError",
        "__version__",
    ]:
        assert hasattr(iommap, name), name
        assert name in iommap.__all__
    assert isinstance(iommap.MappedFile, type)
    assert callable(iommap.open)


@pytest.mark.parametrize(
    "cls,builtin,reason",
    [
        (iommap.BadArgumentTypeError, TypeError, "badarg"),
        (iommap.BadArgumentValueError, ValueError, "badarg"),
        (iommap.ClosedError, ValueError, "closed"),
        (iommap.OutOfBoundsError, IndexError, "out_of_bounds"),
        (iommap.SigbusError, OSError, "sigbus"),
        (iommap.SystemCallError, OSError, None),
    ],
)
def test_class_hierarchy(cls, builtin, reason):
    assert issubclass(cls, iommap.Error)
    assert issubclass(cls, builtin)
    assert issubclass(iommap.Error, Exception)
    if reason is not None:
        assert cls.reason == reason


def test_closed_and_out_of_bounds_are_not_os_errors():
    assert not issubclass(iommap.ClosedError, OSError)
    assert not issubclass(iommap.OutOfBoundsError, (OSError, ValueError))
    assert not issubclass(iommap.BadArgumentTypeError, ValueError)
    assert not issubclass(iommap.BadArgumentValueError, TypeError)


@pytest.mark.parametrize(
    "code,builtin",
    [
        (errno.ENOENT, FileNotFoundError),
        (errno.EACCES, PermissionError),
        (errno.EPERM, PermissionError),
        (errno.EEXIST, FileExistsError),
        (errno.EISDIR, IsADirectoryError),
        (errno.ENOTDIR, NotADirectoryError),
        (errno.EINTR, InterruptedError),
        (errno.ENOMEM, OSError),
        (errno.ENOSPC, OSError),
        (errno.EFBIG, OSError),
        (errno.EINVAL, OSError),
    ],
)
def test_os_errors_carry_errno_name_and_builtin_subclass(code, builtin):
    exc = _errors.os_error(code, "mmap failed")
    assert isinstance(exc, iommap.SystemCallError)
    assert isinstance(exc, builtin)
    assert isinstance(exc, iommap.Error)
    assert exc.errno == code
    assert exc.strerror == "mmap failed"
    assert exc.reason == errno.errorcode[code].lower()
    # One class per errno, so `except type(e)` works across calls.
    assert type(_errors.os_error(code, "again")) is type(exc)


def test_os_error_with_filename():
    exc = _errors.os_error(errno.ENOENT, "open failed", "/x/y")
    assert exc.filename == "/x/y"
    assert "/x/y" in str(exc)


def test_enoent_from_a_real_call(tmp_path):
    with pytest.raises(iommap.Error) as ei:
        iommap.open(str(tmp_path / "nope"))
    exc = assert_error(ei, FileNotFoundError, "enoent", errno.ENOENT)
    assert isinstance(exc, iommap.SystemCallError)
    assert str(exc)


def test_every_error_has_a_message(handle):
    raised = []
    for call in [
        lambda: handle.pread(-1, 0),
        lambda: handle.pread(0.5, 0),
        lambda: handle.pread(0, 10**9),
        lambda: handle.advise(0, 0, "nope"),
    ]:
        with pytest.raises(iommap.Error) as ei:
            call()
        raised.append(ei.value)
    for exc in raised:
        assert isinstance(exc.reason, str) and exc.reason
        assert str(exc)


def test_exceptions_can_be_pickled(handle):
    # A careful user logs or ships exceptions across processes: they survive
    # pickling with their class and reason.
    for call in [lambda: handle.pread(0, 10**9), lambda: handle.pread(-1, 0)]:
        with pytest.raises(iommap.Error) as ei:
            call()
        clone = pickle.loads(pickle.dumps(ei.value))
        assert type(clone) is type(ei.value)
        assert clone.reason == ei.value.reason


# ---- a failed call leaves the handle usable and as it was -----------------


def _snapshot(m):
    return (m.closed, m.mode, m.position(), m.pread(0, m.position()))


def test_failed_calls_leave_the_handle_as_it_was(handle, data_file, data):
    before = _snapshot(handle)
    failures = [
        lambda: handle.pread(0, len(data) + 1),
        lambda: handle.pread(-1, 1),
        lambda: handle.pread("0", 1),
        lambda: handle.readinto(len(data), bytearray(1)),
        lambda: handle.readinto(0, b"ro"),
        lambda: handle.pwrite(len(data) - 1, b"ab"),
        lambda: handle.pwrite(0, [b"ok", 3]),
        lambda: handle.pwrite(0, "str"),
        lambda: handle.truncate(-1),
        lambda: handle.truncate("big"),
        lambda: handle.truncate(2**64),
        lambda: handle.advise(0, len(data) + 1, "normal"),
        lambda: handle.advise(0, 0, "bogus"),
        lambda: handle.sync("bogus"),
        lambda: handle.sync(1),
    ]
    for fail in failures:
        with pytest.raises(iommap.Error):
            fail()
        assert _snapshot(handle) == before
    assert read_file(data_file) == data
    handle.pwrite(0, b"still works")
    assert handle.pread(0, 11) == b"still works"


def test_mapped_file_cannot_be_half_made(tmp_path):
    # iommap.open is the only constructor.  Calling the type
    # directly must either be refused with TypeError or give an object whose
    # methods fail cleanly: never a crash (hence the child process).
    run_ok(
        """
        import iommap
        try:
            m = iommap.MappedFile()
        except TypeError:
            pass
        else:
            for call in (lambda: m.pread(0, 0), lambda: m.position(),
                         lambda: m.pwrite(0, b""), lambda: len(m), lambda: m.sync()):
                try:
                    call()
                except iommap.Error:
                    pass
            m.close()
            del m
        try:
            iommap.MappedFile.__new__(iommap.MappedFile)
        except TypeError:
            pass
        import gc; gc.collect()
        print("OK")
        """,
    )


def test_reasons_are_plain_strings(handle):
    with pytest.raises(iommap.OutOfBoundsError) as ei:
        handle.pread(PAGE * 100, 1)
    assert type(ei.value.reason) is str
    assert ei.value.reason == "out_of_bounds"
