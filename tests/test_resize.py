"""truncate: grow, shrink, empty files, locked and private mappings."""

import errno
import os

import pytest
from helpers import (
    CAP_IPC_LOCK,
    PAGE,
    assert_error,
    has_capability,
    mappings_of,
    needs_linux,
    needs_real_mlock,
    pattern,
    populate_dropped,
    read_file,
    rlimit_as_ignored,
    run_ok,
)

import iommap


def test_grow_remaps_and_zero_fills(handle, data_file, data):
    new = len(data) + 3 * PAGE + 5
    assert handle.truncate(new) is None
    assert handle.position() == new
    assert len(handle) == new
    assert os.path.getsize(data_file) == new
    assert handle.pread(0, len(data)) == data
    assert handle.pread(len(data), new - len(data)) == b"\0" * (new - len(data))
    handle.pwrite(new - 4, b"tail")
    assert handle.pread(new - 4, 4) == b"tail"
    assert read_file(data_file) == data + b"\0" * (new - len(data) - 4) + b"tail"


def test_shrink_loses_data_past_the_end(handle, data_file, data):
    handle.truncate(PAGE + 10)
    assert handle.position() == PAGE + 10
    assert read_file(data_file) == data[: PAGE + 10]
    assert handle.pread(0, PAGE + 10) == data[: PAGE + 10]
    with pytest.raises(iommap.OutOfBoundsError):
        handle.pread(PAGE + 10, 1)
    with pytest.raises(iommap.OutOfBoundsError):
        handle.pwrite(PAGE + 9, b"ab")
    # Growing again does not bring the old bytes back.
    handle.truncate(3 * PAGE)
    assert handle.pread(0, PAGE + 10) == data[: PAGE + 10]
    assert handle.pread(PAGE + 10, 2 * PAGE - 10) == b"\0" * (2 * PAGE - 10)


def test_same_size_is_a_no_op(handle, data_file, data):
    handle.truncate(len(data))
    assert handle.position() == len(data)
    assert read_file(data_file) == data


def test_unaligned_sizes(handle, data):
    model = bytearray(data)
    for size in (3 * PAGE + 17, PAGE + 1, 5000, 1, PAGE - 1, 2 * PAGE + 3):
        handle.truncate(size)
        # Shrinking drops bytes for good; growing adds zeros.
        model = model[:size] + bytes(max(0, size - len(model)))
        assert handle.position() == size
        assert handle.pread(0, size) == model
        with pytest.raises(iommap.OutOfBoundsError):
            handle.pread(size, 1)


def test_truncate_to_zero_and_back(handle, data_file):
    handle.truncate(0)
    assert handle.position() == 0
    assert len(handle) == 0
    assert os.path.getsize(data_file) == 0
    assert handle.pread(0, 0) == b""
    with pytest.raises(iommap.OutOfBoundsError):
        handle.pread(0, 1)
    handle.sync()
    handle.advise(0, 0, "normal")
    handle.truncate(100)
    handle.pwrite(0, b"back")
    assert read_file(data_file) == b"back" + b"\0" * 96


@pytest.mark.parametrize("mode", ["read", "read_write", "write"])
def test_empty_file(make_file, mode):
    path = make_file(b"")
    with iommap.open(path, mode) as m:
        assert m.position() == 0
        assert len(m) == 0
        if mode != "write":
            assert m.pread(0, 0) == b""
            assert m.readinto(0, bytearray()) == 0
            with pytest.raises(iommap.OutOfBoundsError):
                m.pread(0, 1)
            with pytest.raises(iommap.OutOfBoundsError):
                m.readinto(0, bytearray(1))
        if mode != "read":
            m.pwrite(0, b"")
            m.pwrite(0, [])
            with pytest.raises(iommap.OutOfBoundsError):
                m.pwrite(0, b"x")
            m.truncate(PAGE)
            m.pwrite(PAGE - 2, b"hi")
        m.advise(0, 0, "willneed")
        m.sync()
        m.sync("async")
    expected = b"" if mode == "read" else b"\0" * (PAGE - 2) + b"hi"
    assert read_file(path) == expected


def test_grow_reserves_disk_space(make_file, fallocate_works):
    path = make_file(b"abc")
    with iommap.open(path) as m:
        m.truncate(128 * PAGE)
        st = os.stat(path)
        assert st.st_size == 128 * PAGE
        assert st.st_blocks * 512 >= 128 * PAGE


def test_write_mode_can_truncate(data_file, data):
    with iommap.open(data_file, "write") as m:
        m.truncate(10)
        assert m.position() == 10
    assert read_file(data_file) == data[:10]


def test_read_mode_truncate_is_eacces(data_file, data):
    with iommap.open(data_file, "read") as m:
        with pytest.raises(PermissionError) as ei:
            m.truncate(10)
        assert_error(ei, iommap.SystemCallError, "eacces", errno.EACCES)
        assert m.position() == len(data)
        assert m.pread(0, len(data)) == data
    assert read_file(data_file) == data


@pytest.mark.parametrize("mode", ["read_write", "write", "read"])
@pytest.mark.parametrize("size", [0, 10, 10 * PAGE])
def test_private_truncate_is_eacces(data_file, data, mode, size):
    # Resizing the file would not be private.
    with iommap.open(data_file, mode, private=True) as m:
        with pytest.raises(PermissionError) as ei:
            m.truncate(size)
        assert_error(ei, iommap.SystemCallError, "eacces", errno.EACCES)
        assert m.position() == len(data)
    assert read_file(data_file) == data


@pytest.mark.parametrize("size", [-1, -(2**80)])
def test_negative_size_is_bad_value(handle, data, size):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        handle.truncate(size)
    assert_error(ei, ValueError, "badarg")
    assert handle.position() == len(data)


@pytest.mark.parametrize("size", [1.0, "10", None, b"1"])
def test_size_of_wrong_type_is_bad_type(handle, size):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        handle.truncate(size)
    assert_error(ei, TypeError, "badarg")


def test_size_accepts_index_and_bool(handle):
    class Index:
        def __index__(self):
            return 77

    handle.truncate(Index())
    assert handle.position() == 77
    handle.truncate(True)
    assert handle.position() == 1


@pytest.mark.parametrize("size", [2**64, 2**64 + 5, 2**200])
def test_impossible_size_fails_cleanly(handle, data_file, data, size):
    # No file can be this large: an iommap.Error (never OverflowError), and
    # the handle and file are as they were.
    with pytest.raises(iommap.Error) as ei:
        handle.truncate(size)
    assert not isinstance(ei.value, OverflowError)
    assert handle.position() == len(data)
    assert handle.pread(0, len(data)) == data
    assert read_file(data_file) == data


def test_other_handles_see_the_new_size_on_their_next_open(data_file):
    with iommap.open(data_file) as m:
        m.truncate(3 * PAGE)
        with iommap.open(data_file, "read") as other:
            assert other.position() == 3 * PAGE


# ---- lock=True --------------------------------------------------------------


@needs_real_mlock
@needs_linux
def test_pages_stay_locked_after_truncate(make_file):
    path = make_file(pattern(4 * PAGE))
    with iommap.open(path, lock=True) as m:
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == 4 * PAGE
        m.truncate(16 * PAGE)
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == 16 * PAGE
        assert "lo" in entry["VmFlags"]
        m.truncate(2 * PAGE)
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == 2 * PAGE
        assert m.pread(0, 2 * PAGE) == pattern(2 * PAGE)
        m.truncate(0)
        assert mappings_of(path) == []
        m.truncate(3 * PAGE)
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == 3 * PAGE


@populate_dropped
@needs_linux
def test_populate_applies_to_the_remapped_region(make_file):
    # truncate maps anew with the handle's options: a grown populate=True
    # mapping is prefaulted like the first one.
    path = make_file(pattern(4 * PAGE))
    with iommap.open(path, populate=True) as m:
        m.truncate(64 * PAGE)
        (entry,) = mappings_of(path)
        assert entry["Rss"] * 1024 == 64 * PAGE


@needs_real_mlock
@needs_linux
def test_lock_with_cap_ipc_lock_ignores_the_rlimit(tmp_path):
    """With CAP_IPC_LOCK, mlock(2) is not bounded by RLIMIT_MEMLOCK: the
    lock succeeds and every page is locked."""
    if not has_capability(CAP_IPC_LOCK):
        pytest.skip("needs CAP_IPC_LOCK")
    path = str(tmp_path / "locked.bin")
    with open(path, "wb") as f:
        f.write(pattern(64 * PAGE))
    run_ok(
        """
        import resource, iommap

        def locked_bytes():
            for line in open("/proc/self/status"):
                if line.startswith("VmLck:"):
                    return int(line.split()[1]) * 1024

        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        with iommap.open(path, lock=True) as m:
            assert locked_bytes() == 64 * page, locked_bytes()
            m.truncate(128 * page)
            assert locked_bytes() == 128 * page, locked_bytes()
        assert locked_bytes() == 0
        print("OK")
        """,
        path=path,
        page=PAGE,
    )


@needs_real_mlock
@needs_linux
def test_lock_failure_is_an_error_not_ignored(world_dir):
    """mlock beyond RLIMIT_MEMLOCK fails, and open/truncate raise.

    Linux's mlock(2): without CAP_IPC_LOCK, a zero RLIMIT_MEMLOCK gives EPERM
    and a non-zero one that is too small gives ENOMEM.  Root usually has
    CAP_IPC_LOCK, so a root child gives up root (and the capability) after
    importing iommap; the file lives where an unprivileged user can open it.
    """
    path = os.path.join(world_dir, "locked.bin")
    with open(path, "wb") as f:
        f.write(pattern(64 * PAGE))
    os.chmod(path, 0o666)
    run_ok(
        """
        import errno, os, resource, iommap

        def fds():
            return len(os.listdir("/proc/self/fd"))

        def set_limit(limit):
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))

        def expect_error(call, reason, code):
            before = fds()
            try:
                call()
            except iommap.SystemCallError as e:
                assert e.reason == reason, (reason, e.reason, e)
                assert e.errno == code, e
                assert isinstance(e, OSError)
            else:
                raise AssertionError("lock failure ignored; wanted " + reason)
            assert fds() == before, "descriptor leaked"

        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)

        # Limits are only ever lowered: an unprivileged process cannot raise
        # its hard limit again.
        set_limit(8 * page)
        expect_error(lambda: iommap.open(path, lock=True), "enomem", errno.ENOMEM)
        expect_error(lambda: iommap.open(path, "read", lock=True, private=True),
                     "enomem", errno.ENOMEM)

        # Growing a locked mapping past the limit is refused too; the handle
        # stays usable.
        os.truncate(path, 4 * page)
        with iommap.open(path, lock=True) as m:
            before = m.pread(0, 4 * page)
            expect_error(lambda: m.truncate(64 * page), "enomem", errno.ENOMEM)
            assert m.pread(0, 4 * page) == before
            m.pwrite(0, b"usable")
            assert m.pread(0, 6) == b"usable"

        set_limit(0)
        expect_error(lambda: iommap.open(path, lock=True), "eperm", errno.EPERM)
        # Without lock=True the limit is irrelevant.
        with iommap.open(path) as m:
            assert m.pread(0, 6) == b"usable"
        print("OK")
        """,
        path=path,
        page=PAGE,
    )


# ---- failures the OS makes: the handle stays as it was -----------------------


@rlimit_as_ignored
def test_failed_grow_leaves_handle_and_file_as_they_were(tmp_path):
    """truncate that the OS refuses changes nothing.

    RLIMIT_FSIZE makes growing past 1 MiB fail with EFBIG (SIGXFSZ ignored);
    RLIMIT_AS makes mapping 256 MiB fail with ENOMEM after the file has
    already grown, so the core must shrink it back.
    """
    path = str(tmp_path / "f.bin")
    with open(path, "wb") as f:
        f.write(pattern(4 * PAGE))
    run_ok(
        """
        import errno, os, resource, signal, iommap

        def fds():
            return len(os.listdir("/proc/self/fd"))

        def vm_size():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

        def expect(call, reason, code):
            try:
                call()
            except iommap.SystemCallError as e:
                assert e.reason == reason and e.errno == code, e
            else:
                raise AssertionError("no " + reason)

        original = open(path, "rb").read()
        m = iommap.open(path)

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        expect(lambda: m.truncate(2 << 20), "efbig", errno.EFBIG)
        assert m.position() == 4 * page
        assert os.path.getsize(path) == 4 * page
        assert m.pread(0, 4 * page) == original
        before = fds()
        expect(lambda: iommap.open(path, size=2 << 20), "efbig", errno.EFBIG)
        assert fds() == before
        assert os.path.getsize(path) == 4 * page
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

        limit = vm_size() + (64 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        expect(lambda: m.truncate(256 << 20), "enomem", errno.ENOMEM)
        assert m.position() == 4 * page
        assert os.path.getsize(path) == 4 * page, os.path.getsize(path)
        assert m.pread(0, 4 * page) == original
        m.pwrite(0, b"usable")
        big = path + ".big"
        with open(big, "wb") as f:
            f.truncate(256 << 20)          # sparse: no disk used
        before = fds()
        expect(lambda: iommap.open(big, "read"), "enomem", errno.ENOMEM)
        assert fds() == before
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)

        m.truncate(8 * page)
        assert m.pread(0, 6) == b"usable"
        m.close()
        print("OK")
        """,
        path=path,
        page=PAGE,
    )
