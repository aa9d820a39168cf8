"""open() never blocks, and maps only what it can map as a file: a regular
file, or a block device at its real size.  Everything else is an
iommap.Error naming the file type, before anything is mapped.

Opening a FIFO can wait forever for a writer if done wrong, so each of these
runs in a child process with a timeout: a hang is a test failure, not a
stuck suite."""

import errno
import os
import random
import socket
import stat
import subprocess
import sys

import pytest
from helpers import PAGE, fd_count, loop_device, needs_linux, pattern, read_file, run_ok

import iommap

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux devices")


def _refusal(path, kind, **options):
    """In a child: every mode refuses `path` with ENODEV naming `kind`."""
    run_ok(
        """
        import errno, os, iommap
        before = len(os.listdir("/proc/self/fd"))
        for mode in ("read", "write", "read_write"):
            for private in (False, True):
                try:
                    m = iommap.open(path, mode, private=private, **options)
                except iommap.Error as e:
                    assert isinstance(e, iommap.SystemCallError) and isinstance(e, OSError), e
                    assert e.reason == "enodev" and e.errno == errno.ENODEV, repr(e)
                    assert kind in str(e), str(e)
                    assert e.filename == path, e.filename
                else:
                    raise AssertionError("mapped %s as %r: %r" % (path, mode, m))
        assert len(os.listdir("/proc/self/fd")) == before
        print("OK")
        """,
        timeout=30,
        path=path,
        kind=kind,
        options=options,
    )


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    _refusal(path, "FIFO")
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_fifo_with_a_writer_is_refused_too(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)  # a reader and a writer are there
    try:
        _refusal(path, "FIFO")
    finally:
        os.close(fd)


@pytest.mark.parametrize("options", [{"create": True}, {"truncate": True}, {"size": PAGE}])
def test_fifo_is_refused_whatever_the_options(tmp_path, options):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    run_ok(
        """
        import errno, iommap
        try:
            iommap.open(path, **options)
        except iommap.Error as e:
            assert e.reason == "enodev" and e.errno == errno.ENODEV and "FIFO" in str(e), e
        print("OK")
        """,
        timeout=30,
        path=path,
        options=options,
    )


def test_socket_is_refused_naming_it(tmp_path):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    try:
        # open(2) of a socket fails with ENXIO: that errno stays, the
        # message names the socket (as for a socket's descriptor).
        for mode in ("read", "read_write"):
            with pytest.raises(iommap.SystemCallError) as ei:
                iommap.open(path, mode)
            assert ei.value.errno == errno.ENXIO and ei.value.reason == "enxio"
            assert "socket" in str(ei.value)
    finally:
        server.close()


@linux_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_character_devices_are_refused(device):
    if not os.path.exists(device):
        pytest.skip("no " + device)
    _refusal(device, "character device")


@needs_linux
@pytest.mark.parametrize("path", ["/proc/self/status", "/proc/self/maps", "/proc/version"])
def test_proc_files_whose_size_lies_are_refused(path):
    # st_size says 0 (or anything); the content is made up at each read.
    assert stat.S_ISREG(os.stat(path).st_mode)
    _refusal(path, "/proc")


@needs_linux
def test_sys_files_whose_size_lies_are_refused():
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not os.path.exists(path):
        candidates = [os.path.join("/sys/kernel", n) for n in ("uevent_seqnum", "profiling")]
        path = next((p for p in candidates if os.path.exists(p)), None)
        if path is None:
            pytest.skip("no readable /sys file")
    _refusal(path, "/sys")


def test_directory_stays_eisdir(tmp_path):
    for mode in ("read", "read_write"):
        with pytest.raises(IsADirectoryError) as ei:
            iommap.open(str(tmp_path), mode)
        assert ei.value.reason == "eisdir"


@needs_linux
def test_a_regular_file_is_opened_blocking(make_file):
    # The descriptor was opened O_NONBLOCK so that nothing could block; a
    # regular file gets the flag cleared (its fcntl status flags say so).
    path = make_file(pattern(PAGE))
    real = os.path.realpath(path)
    with iommap.open(path) as m:
        fds = [fd for fd in os.listdir("/proc/self/fd") if _link(fd) == real]
        assert len(fds) == 1
        with open("/proc/self/fdinfo/" + fds[0]) as f:
            flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
        assert not flags & os.O_NONBLOCK, oct(flags)
        assert m.pread(0, PAGE) == pattern(PAGE)


def _link(fd):
    try:
        return os.readlink("/proc/self/fd/" + fd)
    except OSError:
        return None


# ---- block devices: mapped at their real size --------------------------------

IMAGE_SIZE = 4 << 20
# Made once, cheaply: pattern() of 4 MiB takes seconds under the sanitizers.
IMAGE = random.Random(3).randbytes(IMAGE_SIZE)


@pytest.fixture
def block_device(tmp_path):
    """A loop device over a 4 MiB image holding a pattern (root only)."""
    image = tmp_path / "disk.img"
    image.write_bytes(IMAGE)
    with loop_device(image) as device:
        yield device, image


def test_block_device_is_mapped_at_its_real_size(block_device):
    device, image = block_device
    assert stat.S_ISBLK(os.stat(device).st_mode) and os.stat(device).st_size == 0
    before = fd_count()
    with iommap.open(device, "read") as m:
        assert len(m) == IMAGE_SIZE
        assert m.pread(0, PAGE) == IMAGE[:PAGE]
        assert m.pread(IMAGE_SIZE - 100, 100) == IMAGE[-100:]
        with pytest.raises(iommap.OutOfBoundsError):
            m.pread(IMAGE_SIZE, 1)
    assert fd_count() == before


def test_block_device_writes_reach_the_device(block_device):
    device, image = block_device
    with iommap.open(device) as m:
        m.pwrite(PAGE + 7, b"through the device")
        m.sync()
    with open(device, "rb") as f:
        f.seek(PAGE + 7)
        assert f.read(18) == b"through the device"
    subprocess.run(["losetup", "-d", device], check=True)  # flushes its cache
    assert read_file(image)[PAGE + 7 : PAGE + 25] == b"through the device"


def test_block_device_cannot_be_resized(block_device):
    # A device's size is the device's: truncate and size= past it are
    # refused by the OS, and nothing changes.
    device, image = block_device
    with iommap.open(device) as m:
        with pytest.raises(iommap.SystemCallError):
            m.truncate(IMAGE_SIZE * 2)
        assert len(m) == IMAGE_SIZE
        assert m.pread(0, 16) == IMAGE[:16]
    with pytest.raises(iommap.SystemCallError):
        iommap.open(device, size=IMAGE_SIZE * 2)
    with iommap.open(device, "read") as m:
        assert len(m) == IMAGE_SIZE
