"""open() given a file descriptor or a file object, and m.fileno()."""

import contextlib
import errno
import fcntl
import os
import socket

import pytest
from helpers import PAGE, assert_error, pattern, read_file

import iommap

needs_memfd = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no os.memfd_create")


def o_tmpfile(directory):
    """A nameless file in `directory`, or skip where the file system lacks it."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        pytest.skip("no os.O_TMPFILE on this platform")
    try:
        return os.open(directory, flag | os.O_RDWR, 0o600)
    except OSError as exc:
        pytest.skip("O_TMPFILE refused here: %s" % exc)


@needs_memfd
def test_memfd_shared_memory_between_handle_and_descriptor():
    fd = os.memfd_create("iommap-test")
    try:
        with iommap.open(fd, size=3 * PAGE) as m:
            assert len(m) == 3 * PAGE
            assert m.path is None
            m.pwrite(PAGE, b"through the mapping")
            # The bytes are in the memfd: another read of it sees them.
            assert os.pread(fd, 19, PAGE) == b"through the mapping"
            os.pwrite(fd, b"through the fd", 0)
            assert m.pread(0, 14) == b"through the fd"
        # Closing the handle left the caller's descriptor open.
        assert os.fstat(fd).st_size == 3 * PAGE
    finally:
        os.close(fd)


@needs_memfd
def test_memfd_handle_outlives_the_callers_descriptor():
    fd = os.memfd_create("iommap-test")
    os.ftruncate(fd, PAGE)
    m = iommap.open(fd)
    os.close(fd)  # the handle holds its own duplicate
    m.pwrite(0, b"still here")
    assert m.pread(0, 10) == b"still here"
    m.truncate(2 * PAGE)  # the duplicate resizes the memfd
    assert os.fstat(m.fileno()).st_size == 2 * PAGE
    m.close()


@needs_memfd
def test_memfd_passed_to_another_process_over_a_unix_socket():
    # A descriptor received with SCM_RIGHTS maps like any other.
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = os.memfd_create("iommap-shared")
    try:
        with iommap.open(fd, size=PAGE) as m:
            m.pwrite(0, b"from the parent")
            socket.send_fds(parent, [b"x"], [fd])
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child exits with its verdict
                code = 1
                try:
                    _, fds, _, _ = socket.recv_fds(child, 1, 1)
                    with iommap.open(fds[0]) as cm:
                        if cm.pread(0, 15) == b"from the parent":
                            cm.pwrite(0, b"from the child!")
                            code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert m.pread(0, 15) == b"from the child!"
    finally:
        os.close(fd)
        parent.close()
        child.close()


def test_o_tmpfile_scratch_file(tmp_path):
    fd = o_tmpfile(str(tmp_path))
    try:
        with iommap.open(fd, size=2 * PAGE) as m:
            m.pwrite(0, pattern(2 * PAGE))
            m.sync()
            assert os.pread(fd, 2 * PAGE, 0) == pattern(2 * PAGE)
        assert os.listdir(tmp_path) == []  # nameless: nothing to clean up
    finally:
        os.close(fd)


def test_file_object_with_fileno(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(PAGE + 7))
    with open(path, "r+b") as f:
        with iommap.open(f) as m:
            assert m.path is None
            assert m.pread(0, PAGE + 7) == pattern(PAGE + 7)
            m.pwrite(0, b"abc")
            assert m.fileno() != f.fileno()
        assert not f.closed
        f.seek(0)
        assert f.read(3) == b"abc"  # the file object still works
    assert read_file(path)[:3] == b"abc"


def test_file_object_with_unflushed_writes_is_flushed_first(tmp_path):
    # As numpy.memmap(f) sees them: the bytes written to the file object,
    # still in its buffer, are part of the file that is mapped.
    with open(tmp_path / "f.bin", "w+b") as f:
        f.write(b"x" * 100)
        with iommap.open(f) as m:
            assert len(m) == 100
            assert m.pread(0, 100) == b"x" * 100


def test_file_object_flush_exceptions_pass_through_unchanged(tmp_path):
    class Stuck:
        def __init__(self, fd):
            self.fd = fd

        def flush(self):
            raise KeyboardInterrupt("flush")

        def fileno(self):
            return self.fd

    fd = os.open(tmp_path / "f.bin", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(KeyboardInterrupt, match="flush"):
            iommap.open(Stuck(fd))
    finally:
        os.close(fd)


def test_read_only_file_object_maps_in_read_mode(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"read me")
    with open(path, "rb") as f, iommap.open(f, "read") as m:
        assert m.pread(0, 7) == b"read me"
        assert m.mode == "read"


def test_private_mapping_needs_only_a_readable_descriptor(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"original")
    with open(path, "rb") as f, iommap.open(f, private=True) as m:
        m.pwrite(0, b"CHANGED!")
        assert m.pread(0, 8) == b"CHANGED!"
    assert read_file(path) == b"original"


@pytest.mark.parametrize(
    "flags,mode,private,size",
    [
        (os.O_RDONLY, "read_write", False, None),
        (os.O_RDONLY, "write", False, None),
        (os.O_RDONLY, "read_write", True, 2 * PAGE),  # size= writes the file
        (os.O_WRONLY, "read", False, None),  # mmap always reads
        (os.O_WRONLY, "write", False, None),
        (os.O_WRONLY, "read_write", True, None),
    ],
)
def test_mode_must_agree_with_the_descriptor(tmp_path, flags, mode, private, size):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * PAGE)
    fd = os.open(path, flags)
    before = os.listdir("/proc/self/fd")
    try:
        with pytest.raises(PermissionError) as ei:
            iommap.open(fd, mode, private=private, size=size)
        exc = assert_error(ei, PermissionError, "eacces", errno.EACCES)
        assert "descriptor %d" % fd in str(exc) and mode in str(exc)
        assert os.listdir("/proc/self/fd") == before  # no duplicate left behind
        assert read_file(path) == b"x" * PAGE
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_descriptor(tmp_path, content, flags):
    """(path, descriptor) of a new file holding `content`, opened with
    `flags`; the descriptor is closed on exit."""
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    fd = os.open(path, flags)
    try:
        yield path, fd
    finally:
        os.close(fd)


@pytest.mark.parametrize("option", ["create", "truncate"])
def test_create_and_truncate_need_a_path(tmp_path, option):
    with file_descriptor(tmp_path, b"keep", os.O_RDWR) as (path, fd):
        with pytest.raises(iommap.BadArgumentValueError) as ei:
            iommap.open(fd, **{option: True})
        assert_error(ei, ValueError, "badarg")
        assert read_file(path) == b"keep"


def test_size_extends_a_short_descriptor_file(tmp_path):
    with file_descriptor(tmp_path, b"ab", os.O_RDWR) as (path, fd):
        with iommap.open(fd, size=PAGE) as m:
            assert len(m) == PAGE and m.pread(0, 3) == b"ab\0"
        assert os.path.getsize(path) == PAGE


def test_bad_descriptors(tmp_path):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        iommap.open(-1)
    assert_error(ei, ValueError, "badarg")
    with pytest.raises(iommap.BadArgumentValueError):
        iommap.open(2**40)
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory
    os.close(fd)
    with pytest.raises(OSError) as ei:
        iommap.open(fd)  # closed now
    assert_error(ei, OSError, "ebadf", errno.EBADF)
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        iommap.open(True)
    assert_error(ei, TypeError, "badarg")


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="no O_PATH on this platform")
@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
def test_o_path_descriptor_is_named(tmp_path, mode):
    with file_descriptor(tmp_path, b"data", os.O_PATH) as (_path, fd):
        with pytest.raises(iommap.Error) as ei:
            iommap.open(fd, mode)
        assert_error(ei, OSError, "ebadf", errno.EBADF)
        assert "O_PATH" in str(ei.value)


def test_socket_descriptor_is_refused_naming_it():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(iommap.Error) as ei:
            iommap.open(a.fileno(), "read")
        # The reason open(2) gives for a socket by name: one reason either way.
        assert_error(ei, OSError, "enxio", errno.ENXIO)
        assert "socket" in str(ei.value)


def test_directory_descriptor_is_refused(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(iommap.Error) as ei:
            iommap.open(fd, "read")
        assert isinstance(ei.value, OSError)
    finally:
        os.close(fd)


def test_fileno_exceptions_pass_through_unchanged():
    class Broken:
        def fileno(self):
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        iommap.open(Broken())


def test_fileno_returning_a_non_int_is_badarg():
    class Odd:
        def fileno(self):
            return "3"

    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        iommap.open(Odd())
    assert_error(ei, TypeError, "badarg")


def test_path_like_wins_over_fileno(tmp_path):
    # An object that is both (a pathlib.Path subclass with fileno) is a path.
    path = tmp_path / "f.bin"
    path.write_bytes(b"by name")

    class Both(type(path)):
        def fileno(self):
            raise AssertionError("not called")

    with iommap.open(Both(path), "read") as m:
        assert m.pread(0, 7) == b"by name"
        assert m.path == Both(path)


def test_fileno_is_the_handles_own_until_close(data_file):
    m = iommap.open(data_file)
    fd = m.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert os.fstat(fd).st_size == len(m)
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    # A lock taken on it is the file's, as for any descriptor.
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the handle
    with pytest.raises(iommap.ClosedError) as ei:
        m.fileno()
    assert_error(ei, ValueError, "closed")


def test_fileno_serves_sendfile(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(pattern(3 * PAGE))
    out = tmp_path / "out.bin"
    with iommap.open(src, "read") as m, open(out, "wb") as f:
        sent = os.sendfile(f.fileno(), m.fileno(), 0, len(m))
        assert sent == 3 * PAGE
    assert read_file(out) == pattern(3 * PAGE)


def test_descriptor_handle_repr_and_errors_have_no_path(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDWR)
    try:
        m = iommap.open(fd)
        assert "fd=%d" % m.fileno() in repr(m)
        m.close()
        assert "closed" in repr(m)
        assert m.path is None
    finally:
        os.close(fd)


def test_no_descriptor_leaks_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * PAGE)
    fd = os.open(path, os.O_RDWR)
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        with pytest.raises(iommap.OutOfBoundsError):
            iommap.open(fd, offset=2 * PAGE)
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(fd)
