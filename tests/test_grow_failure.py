"""A failed grow restores the file: after a failed truncate(), open(size=) or
open(truncate=True, size=), the file has the size it had before the call,
its content up to that size, and no disk space stays reserved.

Three ways to run out: a small ext4 file system on a loop device, a tiny
tmpfs (both made by the test, as root), and RLIMIT_FSIZE (in a child)."""

import contextlib
import errno
import os
import random
import subprocess
import tempfile

import pytest
from helpers import PAGE, _under_asan, fd_count, need_root, read_file, run_ok

import iommap

MiB = 1 << 20
MOUNT_NEEDS_ROOT = "needs root to mount a file system"


@contextlib.contextmanager
def _mounted(*mount_args):
    point = tempfile.mkdtemp(prefix="iommap-fs-")
    done = subprocess.run(["mount", *mount_args, point], capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(point)
        pytest.skip("cannot mount: " + done.stderr.strip())
    try:
        yield point
    finally:
        subprocess.run(["umount", point], check=False)
        os.rmdir(point)


@pytest.fixture
def small_ext4(tmp_path):
    """An 8 MiB ext4 file system on a loop device, mounted; yields its root."""
    need_root(MOUNT_NEEDS_ROOT, "mkfs.ext4", "mount", "losetup")
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(8 * MiB)
    done = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("mkfs.ext4 failed: " + done.stderr.strip())
    with _mounted("-o", "loop", str(image)) as point:
        yield point


@pytest.fixture
def tiny_tmpfs():
    """A 2 MiB tmpfs, mounted; yields its root."""
    need_root(MOUNT_NEEDS_ROOT, "mount")
    with _mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs") as point:
        yield point


@pytest.fixture(params=["ext4", "tmpfs"])
def full_fs(request):
    """A small file system that a 64 MiB grow cannot fit in."""
    return request.getfixturevalue("small_ext4" if request.param == "ext4" else "tiny_tmpfs")


def _free(point):
    st = os.statvfs(point)
    return st.f_bavail * st.f_frsize


def _assert_as_before(path, content, point, free_before):
    assert os.path.getsize(path) == len(content)
    assert read_file(path) == content
    # No space stays reserved (a block or two of slack for the file system's
    # own bookkeeping, never the megabytes a partial reservation takes).
    assert _free(point) >= free_before - 2 * PAGE, (_free(point), free_before)


def _enospc(excinfo):
    exc = excinfo.value
    assert isinstance(exc, iommap.SystemCallError), repr(exc)
    assert exc.reason in ("enospc", "efbig") and exc.errno in (errno.ENOSPC, errno.EFBIG), exc


def _filled(full_fs, seed):
    """A 1 MiB file of random bytes on `full_fs`, on disk: (path, content,
    the file system's free bytes then)."""
    path = os.path.join(full_fs, "f.bin")
    content = random.Random(seed).randbytes(MiB)
    with open(path, "wb") as f:
        f.write(content)
    os.sync()
    return path, content, _free(full_fs)


def test_failed_truncate_restores_the_file(full_fs):
    path, content, free = _filled(full_fs, 0)
    with iommap.open(path) as m:
        with pytest.raises(iommap.Error) as ei:
            m.truncate(64 * MiB)
        _enospc(ei)
        assert len(m) == MiB
        assert m.pread(0, MiB) == content
        _assert_as_before(path, content, full_fs, free)
        m.pwrite(0, b"still usable")
        m.truncate(MiB + PAGE)  # a grow that fits still works
        assert len(m) == MiB + PAGE
    assert read_file(path)[:12] == b"still usable"


@pytest.mark.parametrize("truncate", [False, True])
def test_failed_open_with_size_restores_the_file(full_fs, truncate):
    path, content, free = _filled(full_fs, 1)
    fds = fd_count()
    with pytest.raises(iommap.Error) as ei:
        iommap.open(path, truncate=truncate, size=64 * MiB)
    _enospc(ei)
    assert fd_count() == fds
    _assert_as_before(path, content, full_fs, free)


def test_failed_open_that_created_the_file_removes_it(full_fs):
    path = os.path.join(full_fs, "new.bin")
    free = _free(full_fs)
    with pytest.raises(iommap.Error) as ei:
        iommap.open(path, create=True, size=64 * MiB)
    _enospc(ei)
    assert not os.path.exists(path)
    assert _free(full_fs) >= free - 2 * PAGE


def test_open_truncate_size_that_fits_empties_and_grows(full_fs):
    path = os.path.join(full_fs, "f.bin")
    with open(path, "wb") as f:
        f.write(random.Random(3).randbytes(MiB))
    with iommap.open(path, truncate=True, size=PAGE) as m:
        assert len(m) == PAGE and m.pread(0, PAGE) == bytes(PAGE)
    assert read_file(path) == bytes(PAGE)
    with iommap.open(path, truncate=True, size=MiB // 2) as m:
        assert len(m) == MiB // 2 and m.pread(0, MiB // 2) == bytes(MiB // 2)


def _mib_file(tmp_path, seed):
    """A 1 MiB file of random bytes in tmp_path; returns its path, a str."""
    path = str(tmp_path / "f.bin")
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(MiB))
    return path


def test_rlimit_fsize_refuses_every_grow_and_changes_nothing(tmp_path):
    path = _mib_file(tmp_path, 2)
    run_ok(
        """
        import errno, os, resource, signal, iommap
        content = open(path, "rb").read()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, resource.RLIM_INFINITY))

        def refused(call):
            try:
                call()
            except iommap.SystemCallError as e:
                assert e.reason == "efbig" and e.errno == errno.EFBIG, e
            else:
                raise AssertionError("grew past RLIMIT_FSIZE")
            assert os.path.getsize(path) == len(content), os.path.getsize(path)
            assert open(path, "rb").read() == content
            assert os.stat(path).st_blocks * 512 < 2 * len(content)

        with iommap.open(path) as m:
            refused(lambda: m.truncate(64 << 20))
            assert len(m) == len(content) and m.pread(0, len(content)) == content
        refused(lambda: iommap.open(path, size=64 << 20))
        refused(lambda: iommap.open(path, truncate=True, size=64 << 20))
        new = path + ".new"
        try:
            iommap.open(new, create=True, size=64 << 20)
        except iommap.SystemCallError as e:
            assert e.reason == "efbig", e
        assert not os.path.exists(new)
        print("OK")
        """,
        path=path,
    )


@pytest.mark.skipif(_under_asan(), reason="ASan reserves terabytes of address space")
def test_grow_whose_mapping_fails_restores_the_file(tmp_path):
    # The file grows first, then the new size is mapped: when mmap fails
    # (here no address space left under RLIMIT_AS), the grow is undone.
    path = _mib_file(tmp_path, 3)
    run_ok(
        """
        import errno, os, resource, iommap
        content = open(path, "rb").read()
        m = iommap.open(path)
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, ((vm << 10) + (64 << 20), resource.RLIM_INFINITY))
        try:
            m.truncate(512 << 20)
        except iommap.SystemCallError as e:
            assert e.reason == "enomem" and e.errno == errno.ENOMEM, e
        else:
            raise AssertionError("mapped 512 MiB under a 64 MiB margin")
        assert os.path.getsize(path) == len(content), os.path.getsize(path)
        assert os.stat(path).st_blocks * 512 < 2 * len(content)
        assert len(m) == len(content) and m.pread(0, len(content)) == content
        print("OK")
        """,
        path=path,
    )
