"""Access modes and shared/private mappings."""

import errno

import pytest
from helpers import PAGE, assert_error, read_file, run_ok

import iommap


def _assert_eacces(excinfo):
    assert_error(excinfo, PermissionError, "eacces", errno.EACCES)
    assert isinstance(excinfo.value, iommap.SystemCallError)


@pytest.mark.parametrize("private", [False, True])
def test_read_mode_reads_and_refuses_writes(data_file, data, private):
    with iommap.open(data_file, "read", private=private) as m:
        assert m.pread(0, len(data)) == data
        buf = bytearray(10)
        assert m.readinto(5, buf) == 10 and buf == data[5:15]
        for payload in (b"x", b"", [b"a", [b"b"]]):
            with pytest.raises(PermissionError) as ei:
                m.pwrite(0, payload)
            _assert_eacces(ei)
        with pytest.raises(PermissionError) as ei:
            m.truncate(10)
        _assert_eacces(ei)
        # Still usable after the refusals.
        assert m.pread(0, 4) == data[:4]
        assert m.position() == len(data)
    assert read_file(data_file) == data


@pytest.mark.parametrize("private", [False, True])
def test_write_mode_writes_and_refuses_reads(data_file, data, private):
    with iommap.open(data_file, "write", private=private) as m:
        with pytest.raises(PermissionError) as ei:
            m.pread(0, 1)
        _assert_eacces(ei)
        with pytest.raises(PermissionError) as ei:
            m.pread(0, 0)
        _assert_eacces(ei)
        buf = bytearray(b"untouched")
        with pytest.raises(PermissionError) as ei:
            m.readinto(0, buf)
        _assert_eacces(ei)
        assert buf == b"untouched"
        m.pwrite(2, b"written")
        assert m.position() == len(data)
    expected = data if private else data[:2] + b"written" + data[9:]
    assert read_file(data_file) == expected


def test_read_write_mode_does_both(data_file, data):
    with iommap.open(data_file, "read_write") as m:
        m.pwrite(PAGE, b"both")
        assert m.pread(PAGE - 1, 6) == data[PAGE - 1 : PAGE] + b"both" + data[PAGE + 4 : PAGE + 5]
    assert read_file(data_file) == data[:PAGE] + b"both" + data[PAGE + 4 :]


# ---- shared ----------------------------------------------------------------


def test_shared_writes_are_visible_to_other_handles_at_once(data_file):
    with iommap.open(data_file) as a, iommap.open(data_file, "read") as b:
        a.pwrite(100, b"shared")
        assert b.pread(100, 6) == b"shared"
        with open(data_file, "rb") as f:
            f.seek(100)
            assert f.read(6) == b"shared"


def test_file_writes_are_visible_in_a_shared_mapping(data_file):
    with iommap.open(data_file, "read") as m:
        with open(data_file, "r+b") as f:
            f.seek(PAGE * 2)
            f.write(b"outside")
            f.flush()
        assert m.pread(PAGE * 2, 7) == b"outside"


def test_a_second_process_sees_shared_writes_without_sync(data_file, data):
    with iommap.open(data_file) as m:
        m.pwrite(PAGE + 1, b"cross-process")
        out, _ = run_ok(
            """
            import iommap
            with open(path, "rb") as f:
                f.seek(offset)
                assert f.read(13) == b"cross-process"
            with iommap.open(path, "read") as m:
                assert m.pread(offset, 13) == b"cross-process"
            print("OK")
            """,
            path=data_file,
            offset=PAGE + 1,
        )
        # And the other way round: the child writes, the open handle sees it.
        run_ok(
            """
            import os, iommap
            m = iommap.open(path)
            m.pwrite(offset, b"from the child")
            print("OK", flush=True)
            os._exit(0)  # no close, no sync
            """,
            path=data_file,
            offset=3 * PAGE,
        )
        assert m.pread(3 * PAGE, 14) == b"from the child"


# ---- private -----------------------------------------------------------------


def test_private_writes_stay_in_the_handle(data_file, data):
    with iommap.open(data_file, private=True) as p, iommap.open(data_file, "read") as s:
        p.pwrite(0, b"mine")
        p.pwrite(PAGE * 3, [b"only", b" here"])
        assert p.pread(0, 4) == b"mine"
        assert p.pread(PAGE * 3, 9) == b"only here"
        assert s.pread(0, 4) == data[:4]
        assert read_file(data_file) == data
        p.sync()
        assert read_file(data_file) == data
    assert read_file(data_file) == data


def test_private_writes_are_invisible_to_a_second_process(data_file, data):
    with iommap.open(data_file, private=True) as m:
        m.pwrite(0, b"secret")
        run_ok(
            """
            with open(path, "rb") as f:
                assert f.read() == expected
            print("OK")
            """,
            path=data_file,
            expected=data,
        )
    assert read_file(data_file) == data


def test_private_never_changes_the_file(data_file, data):
    m = iommap.open(data_file, "read_write", private=True)
    m.pwrite(1, b"a" * 100)
    m.sync()
    m.sync("async")
    with pytest.raises(PermissionError):
        m.truncate(1)
    m.advise(0, 0, "normal")
    m.close()
    assert read_file(data_file) == data


def test_mode_attribute(data_file):
    for mode in ("read", "write", "read_write"):
        for private in (False, True):
            with iommap.open(data_file, mode, private=private) as m:
                assert m.mode == mode


def test_a_forked_child_shares_the_mapping(data_file, data):
    # A shared mapping inherited through fork() is the same pages: the
    # child's writes are the parent's.  In a child interpreter, so that the
    # fork happens in a single-threaded process.
    run_ok(
        """
        import os, iommap
        m = iommap.open(path)
        pid = os.fork()
        if pid == 0:
            try:
                assert m.pread(0, 4) == expected4
                m.pwrite(0, b"kid!")
                code = 0
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert m.pread(0, 4) == b"kid!"
        m.close()
        print("OK")
        """,
        path=data_file,
        expected4=data[:4],
    )
    assert read_file(data_file) == b"kid!" + data[4:]
