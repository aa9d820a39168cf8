"""The power-cut simulator itself (tests/lazyfs): it keeps exactly what was
made durable by fsync of a file (its data and size) and of a directory (its
entries), and loses the rest when cut."""

import os

import pytest
from lazyfs import LazyMount, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def fsync_path(path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.fixture
def fs(tmp_path):
    with LazyMount(tmp_path) as fs:
        yield fs


def durable_file(fs, name, content):
    path = fs.root / name
    path.write_bytes(content)
    fsync_path(path)
    fsync_path(fs.root)
    return path


def test_a_file_is_a_file_until_the_cut(fs):
    path = fs.root / "f"
    path.write_bytes(b"abc")
    assert path.read_bytes() == b"abc"
    assert sorted(os.listdir(fs.root)) == ["f"]
    os.rename(path, fs.root / "g")
    (fs.root / "d").mkdir()
    assert sorted(os.listdir(fs.root)) == ["d", "g"]
    fs.power_cut()
    assert os.listdir(fs.root) == []


def test_fsynced_data_and_entries_survive(fs):
    path = durable_file(fs, "f", b"durable")
    fs.power_cut()
    assert path.read_bytes() == b"durable"


def test_unsynced_writes_and_size_changes_are_lost(fs):
    path = durable_file(fs, "f", b"0123456789")
    with open(path, "r+b") as f:
        f.write(b"XY")
    os.truncate(path, 4)
    assert path.read_bytes() == b"XY23"
    fs.power_cut()
    assert path.read_bytes() == b"0123456789"


def test_file_fsync_alone_leaves_a_new_entry_out(fs):
    path = fs.root / "new"
    path.write_bytes(b"data")
    fsync_path(path)  # its data, not its name
    fs.power_cut()
    assert not path.exists()


def test_directory_fsync_keeps_entries_with_their_synced_data(fs):
    path = fs.root / "new"
    path.write_bytes(b"old")
    fsync_path(path)
    fsync_path(fs.root)
    path.write_bytes(b"newer")  # not synced
    fs.power_cut()
    assert path.read_bytes() == b"old"


def test_entry_synced_before_its_data_is_empty(fs):
    path = fs.root / "new"
    path.write_bytes(b"data")
    fsync_path(fs.root)
    fs.power_cut()
    assert path.read_bytes() == b""


def test_cut_during_use_and_a_clean_stop(fs, tmp_path):
    durable_file(fs, "f", b"x")
    fs.power_cut()
    fs.power_cut()
    assert (fs.root / "f").read_bytes() == b"x"
    fs.stop()
    assert not os.path.ismount(fs.root)
    fs.start()
    assert (fs.root / "f").read_bytes() == b"x"
