"""iommap.open: paths, modes, options, and the errors it raises."""

import errno
import os
import pathlib
import stat

import pytest
from helpers import (
    PAGE,
    assert_error,
    fd_count,
    mappings_of,
    need_not_root,
    need_root,
    needs_linux,
    needs_real_mlock,
    pattern,
    populate_dropped,
    read_file,
    run_ok,
)

import iommap


class PathLike:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


def test_open_returns_a_mapped_file(data_file, data):
    m = iommap.open(data_file)
    try:
        assert isinstance(m, iommap.MappedFile)
        assert m.position() == len(data)
        assert m.pread(0, len(data)) == data
    finally:
        m.close()


def test_default_mode_is_read_write(data_file):
    with iommap.open(data_file) as m:
        assert m.mode == "read_write"
        m.pwrite(0, b"xy")
        assert m.pread(0, 2) == b"xy"
    assert read_file(data_file)[:2] == b"xy"


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
def test_modes_positional_and_keyword(data_file, mode):
    with iommap.open(data_file, mode) as m:
        assert m.mode == mode
        assert type(m.mode) is str
    with iommap.open(data_file, mode=mode) as m:
        assert m.mode == mode


@pytest.mark.parametrize("mode", ["", "rw", "READ", "r", "read ", "readwrite", "append"])
def test_unknown_mode_is_bad_value(data_file, mode):
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        iommap.open(data_file, mode)
    assert_error(ei, ValueError, "badarg")


@pytest.mark.parametrize("mode", [b"read", 1, ["read"]])
def test_mode_of_wrong_type_is_bad_type(data_file, mode):
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        iommap.open(data_file, mode)
    assert_error(ei, TypeError, "badarg")


@pytest.mark.parametrize(
    "make_path",
    [str, os.fsencode, pathlib.Path, PathLike, lambda p: PathLike(os.fsencode(p))],
    ids=["str", "bytes", "Path", "PathLike-str", "PathLike-bytes"],
)
def test_path_types_and_path_attribute_is_the_given_object(data_file, data, make_path):
    path = make_path(data_file)
    m = iommap.open(path)
    try:
        assert m.path is path
        assert m.pread(0, 16) == data[:16]
    finally:
        m.close()
    assert m.path is path  # still readable after close


@pytest.mark.parametrize("path", [True, None, 1.5, ["x"], object()])
def test_path_of_wrong_type_is_bad_type(path):
    # An int is a file descriptor (test_descriptor.py); a bool is not.
    with pytest.raises(iommap.BadArgumentTypeError) as ei:
        iommap.open(path)
    assert_error(ei, TypeError, "badarg")


def test_path_with_nul_byte_is_bad_value(tmp_path):
    # Python's own open() raises ValueError for an embedded NUL; iommap's
    # version of that is badarg ValueError.
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        iommap.open(str(tmp_path / "a\0b"), create=True)
    assert_error(ei, ValueError, "badarg")
    assert os.listdir(tmp_path) == []


def test_options_are_keyword_only(data_file):
    # Python's argument machinery refuses these before iommap runs: plain
    # TypeError, as for any Python function.
    for call in [
        lambda: iommap.open(data_file, "read", True),
        lambda: iommap.open(data_file, "read", private=True, bogus=True),
        lambda: iommap.open(),
    ]:
        with pytest.raises(TypeError) as ei:
            call()
        assert type(ei.value) is TypeError


# ---- create / truncate / size -------------------------------------------


def test_create_makes_an_empty_file_mode_0644(tmp_path):
    path = str(tmp_path / "new.bin")
    old = os.umask(0)
    try:
        m = iommap.open(path, create=True)
    finally:
        os.umask(old)
    try:
        assert m.position() == 0
        assert len(m) == 0
        assert m.pread(0, 0) == b""
    finally:
        m.close()
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_size == 0


def test_create_honours_umask(tmp_path):
    path = str(tmp_path / "new.bin")
    old = os.umask(0o077)
    try:
        iommap.open(path, create=True).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_create_keeps_an_existing_file(data_file, data):
    with iommap.open(data_file, create=True) as m:
        assert m.pread(0, len(data)) == data
    assert read_file(data_file) == data


def test_create_in_write_mode(tmp_path):
    path = str(tmp_path / "new.bin")
    with iommap.open(path, "write", create=True, size=100) as m:
        m.pwrite(10, b"abc")
    assert read_file(path) == b"\0" * 10 + b"abc" + b"\0" * 87


def test_missing_file_without_create_is_enoent(tmp_path):
    path = str(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError) as ei:
        iommap.open(path)
    exc = assert_error(ei, iommap.SystemCallError, "enoent", errno.ENOENT)
    assert isinstance(exc.strerror, str) and exc.strerror
    # As Python's own open() does, the error names the file.
    assert exc.filename == path
    assert not os.path.exists(path)


def test_missing_directory_with_create_is_enoent(tmp_path):
    path = str(tmp_path / "no-such-dir" / "f.bin")
    with pytest.raises(FileNotFoundError) as ei:
        iommap.open(path, create=True)
    assert_error(ei, iommap.SystemCallError, "enoent", errno.ENOENT)


def test_truncate_empties_an_existing_file(data_file):
    with iommap.open(data_file, truncate=True) as m:
        assert m.position() == 0
    assert os.path.getsize(data_file) == 0


def test_truncate_then_size(data_file):
    with iommap.open(data_file, truncate=True, size=PAGE + 5) as m:
        assert m.position() == PAGE + 5
        assert m.pread(0, PAGE + 5) == b"\0" * (PAGE + 5)
    assert read_file(data_file) == b"\0" * (PAGE + 5)


def test_create_truncate_size_on_a_new_file(tmp_path):
    path = str(tmp_path / "n.bin")
    with iommap.open(path, create=True, truncate=True, size=3 * PAGE) as m:
        assert m.position() == 3 * PAGE
    assert read_file(path) == b"\0" * 3 * PAGE


def test_size_extends_a_short_file_with_zeros(make_file):
    path = make_file(b"abcdef")
    with iommap.open(path, size=PAGE * 2 + 1) as m:
        assert m.position() == PAGE * 2 + 1
        assert m.pread(0, 6) == b"abcdef"
        assert m.pread(6, PAGE * 2 - 5) == b"\0" * (PAGE * 2 - 5)
    assert read_file(path) == b"abcdef" + b"\0" * (PAGE * 2 - 5)


def test_size_leaves_a_longer_file_as_it_is(data_file, data):
    with iommap.open(data_file, size=10) as m:
        assert m.position() == len(data)
        assert m.pread(0, len(data)) == data
    assert read_file(data_file) == data


def test_size_equal_to_file_length(make_file):
    path = make_file(b"12345")
    with iommap.open(path, size=5) as m:
        assert m.pread(0, 5) == b"12345"
    assert read_file(path) == b"12345"


def test_size_zero_on_empty_file(make_file):
    path = make_file(b"")
    with iommap.open(path, size=0) as m:
        assert m.position() == 0


def test_size_accepts_index_objects(make_file):
    class Index:
        def __index__(self):
            return 100

    path = make_file(b"")
    with iommap.open(path, size=Index()) as m:
        assert m.position() == 100


def test_size_reserves_disk_space(make_file, fallocate_works):
    path = make_file(b"x")
    size = 64 * PAGE
    iommap.open(path, size=size).close()
    st = os.stat(path)
    assert st.st_size == size
    assert st.st_blocks * 512 >= size


@pytest.mark.parametrize(
    "size, cls, builtin",
    [
        # A negative size is a bad value, a size of the wrong type a bad type.
        (-1, iommap.BadArgumentValueError, ValueError),
        (-(2**70), iommap.BadArgumentValueError, ValueError),
        ("10", iommap.BadArgumentTypeError, TypeError),
        (10.0, iommap.BadArgumentTypeError, TypeError),
        (b"1", iommap.BadArgumentTypeError, TypeError),
    ],
)
def test_bad_size_is_badarg_and_leaves_the_file(make_file, size, cls, builtin):
    path = make_file(b"abc")
    with pytest.raises(cls) as ei:
        iommap.open(path, size=size)
    assert_error(ei, builtin, "badarg")
    assert read_file(path) == b"abc"


@pytest.mark.parametrize("size", [2**64, 2**200])
def test_impossible_size_is_an_iommap_error_not_overflow(make_file, size):
    # No file can be this large: whatever the refusal, it is an iommap.Error
    # (never OverflowError), and the existing file is left as it was.
    path = make_file(b"abc")
    with pytest.raises(iommap.Error) as ei:
        iommap.open(path, size=size)
    assert not isinstance(ei.value, OverflowError)
    assert isinstance(ei.value, (iommap.SystemCallError, iommap.BadArgumentValueError))
    assert read_file(path) == b"abc"


# ---- "read" refuses create / truncate / size before touching the file ----


@pytest.mark.parametrize(
    "options",
    [
        {"create": True},
        {"truncate": True},
        {"size": 10},
        {"size": 0},
        {"create": True, "truncate": True, "size": 10},
    ],
)
def test_read_mode_refuses_create_truncate_size_on_existing_file(make_file, options):
    # size=0 would change nothing, but "read" mode refuses the option itself,
    # not only its effect.
    path = make_file(b"hello")
    before = os.stat(path)
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        iommap.open(path, "read", **options)
    assert_error(ei, ValueError, "badarg")
    after = os.stat(path)
    assert read_file(path) == b"hello"
    assert after.st_mtime_ns == before.st_mtime_ns
    assert after.st_size == 5


@pytest.mark.parametrize("options", [{"create": True}, {"create": True, "size": 10}])
def test_read_mode_refuses_create_before_creating(tmp_path, options):
    path = str(tmp_path / "missing.bin")
    with pytest.raises(iommap.BadArgumentValueError) as ei:
        iommap.open(path, "read", **options)
    assert_error(ei, ValueError, "badarg")
    assert not os.path.exists(path)


def test_read_mode_accepts_the_default_option_values(data_file, data):
    with iommap.open(data_file, "read", create=False, truncate=False, size=None) as m:
        assert m.pread(0, 8) == data[:8]


# ---- private / lock / populate / nocache --------------------------------


@pytest.mark.parametrize("mode", ["read", "write", "read_write"])
@pytest.mark.parametrize("option", ["private", "lock", "populate", "nocache"])
def test_each_option_opens_in_each_mode(data_file, data, mode, option):
    with iommap.open(data_file, mode, **{option: True}) as m:
        assert m.position() == len(data)
        if mode != "write":
            assert m.pread(PAGE - 3, 10) == data[PAGE - 3 : PAGE + 7]
        if mode != "read":
            m.pwrite(1, b"Q")
            if mode == "read_write":
                assert m.pread(0, 3) == data[:1] + b"Q" + data[2:3]
    expected = data if (mode == "read" or option == "private") else data[:1] + b"Q" + data[2:]
    assert read_file(data_file) == expected


def test_all_options_together(make_file):
    path = make_file(pattern(2 * PAGE))
    with iommap.open(path, lock=True, populate=True, nocache=True, size=3 * PAGE) as m:
        assert m.position() == 3 * PAGE
        assert m.pread(0, 2 * PAGE) == pattern(2 * PAGE)


@populate_dropped
@needs_linux
def test_populate_prefaults_every_page(make_file):
    # MAP_POPULATE on Linux: the pages are in the page tables right after
    # open, before any access (smaps Rss covers the whole mapping).
    size = 32 * PAGE
    path = make_file(pattern(size))
    with iommap.open(path, "read", populate=True) as m:
        (entry,) = mappings_of(path)
        assert entry["Rss"] * 1024 == size
        assert m.position() == size


@needs_real_mlock
@needs_linux
@pytest.mark.parametrize("mode", ["read", "read_write"])
def test_lock_locks_every_page(make_file, mode):
    size = 16 * PAGE
    path = make_file(pattern(size))
    with iommap.open(path, mode, lock=True) as m:
        (entry,) = mappings_of(path)
        assert entry["Locked"] * 1024 == size
        assert "lo" in entry["VmFlags"]
        assert m.pread(0, size) == pattern(size)


@needs_linux
def test_shared_and_private_mappings(data_file):
    with iommap.open(data_file):
        (entry,) = mappings_of(data_file)
        assert "sh" in entry["VmFlags"]
        assert entry["perms"].endswith("s")
    with iommap.open(data_file, private=True):
        (entry,) = mappings_of(data_file)
        assert "sh" not in entry["VmFlags"]
        assert entry["perms"].endswith("p")


@needs_linux
def test_read_mode_maps_without_write_permission(data_file):
    # A "read" handle cannot write even by accident: the pages are PROT_READ.
    with iommap.open(data_file, "read"):
        (entry,) = mappings_of(data_file)
        assert entry["perms"][:2] == "r-"


# ---- files iommap cannot map ---------------------------------------------


def test_directory_read_write_is_eisdir(tmp_path):
    with pytest.raises(IsADirectoryError) as ei:
        iommap.open(str(tmp_path))
    assert_error(ei, iommap.SystemCallError, "eisdir", errno.EISDIR)


def test_directory_read_is_an_os_error_and_leaks_nothing(tmp_path):
    # open(2) of a directory read-only succeeds, so the failure comes later
    # (mmap says ENODEV, or the core checks the file type first and says
    # EISDIR).  Either way: an OSError, and no descriptor is left open.
    before = fd_count()
    with pytest.raises(iommap.SystemCallError) as ei:
        iommap.open(str(tmp_path), "read")
    assert ei.value.reason in ("eisdir", "enodev")
    assert isinstance(ei.value, OSError)
    assert fd_count() == before


def test_permission_denied_is_eacces(make_file):
    need_not_root("root bypasses file permissions")
    path = make_file(b"secret")
    os.chmod(path, 0)
    with pytest.raises(PermissionError) as ei:
        iommap.open(path, "read")
    assert_error(ei, iommap.SystemCallError, "eacces", errno.EACCES)


def test_read_only_file_refuses_read_write_but_opens_read(make_file):
    need_not_root("root bypasses file permissions")
    path = make_file(b"ro")
    os.chmod(path, 0o444)
    with pytest.raises(PermissionError) as ei:
        iommap.open(path)
    assert_error(ei, iommap.SystemCallError, "eacces", errno.EACCES)
    with pytest.raises(PermissionError):
        iommap.open(path, "write")
    with iommap.open(path, "read") as m:
        assert m.pread(0, 2) == b"ro"


def test_permission_denied_after_dropping_root(world_dir):
    # Root bypasses permissions, so when the suite runs as root the check
    # runs in a child that gives up root after importing iommap.
    need_root("covered by test_permission_denied_is_eacces")
    path = os.path.join(world_dir, "secret.bin")
    with open(path, "wb") as f:
        f.write(b"secret")
    os.chmod(path, 0)
    ro = os.path.join(world_dir, "ro.bin")
    with open(ro, "wb") as f:
        f.write(b"ro")
    os.chmod(ro, 0o444)
    run_ok(
        """
        import errno, os, iommap
        os.setgid(65534)
        os.setuid(65534)
        for mode in ("read", "write", "read_write"):
            try:
                iommap.open(path, mode)
            except PermissionError as e:
                assert isinstance(e, iommap.SystemCallError), type(e).__mro__
                assert e.reason == "eacces" and e.errno == errno.EACCES, e
            else:
                raise AssertionError("opened " + mode)
        for mode in ("write", "read_write"):
            try:
                iommap.open(ro, mode)
            except PermissionError as e:
                assert e.reason == "eacces", e
            else:
                raise AssertionError("opened read-only file for " + mode)
        with iommap.open(ro, "read") as m:
            assert m.pread(0, 2) == b"ro"
        # Copy-on-write never writes the file, so (like mmap.ACCESS_COPY) it
        # needs only read access; setting the file up (size=) still needs
        # write access.
        with iommap.open(ro, private=True) as m:
            m.pwrite(0, b"RW")
            assert m.pread(0, 2) == b"RW"
        assert open(ro, "rb").read() == b"ro"
        try:
            iommap.open(ro, private=True, size=100)
        except PermissionError as e:
            assert e.reason == "eacces", e
        else:
            raise AssertionError("size= extended a read-only file")
        print("OK")
        """,
        path=path,
        ro=ro,
    )


def test_failed_opens_leak_no_descriptor(tmp_path, make_file):
    path = make_file(b"abc")
    before = fd_count()
    for _ in range(20):
        with pytest.raises(iommap.Error):
            iommap.open(str(tmp_path / "missing"))
        with pytest.raises(iommap.Error):
            iommap.open(path, "read", size=10)
        with pytest.raises(iommap.Error):
            iommap.open(path, size=2**64)
        with pytest.raises(iommap.Error):
            iommap.open(str(tmp_path))
    assert fd_count() == before


def test_open_close_many_leaks_nothing(data_file):
    before = fd_count()
    for _ in range(200):
        m = iommap.open(data_file)
        m.close()
    assert fd_count() == before
    assert not mappings_of(data_file)
