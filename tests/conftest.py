"""Fixtures for the iommap test suite; the helpers they and the tests
share live in helpers.py."""

import os
import shutil
import signal
import tempfile

import pytest
from helpers import PAGE, fallocate_reserves, pattern

import iommap

# A run started in the background by a shell without job control inherits
# SIGINT ignored, and so would every child: the tests that interrupt a child
# with SIGINT need it to reach Python's handler, as it does from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def page():
    return PAGE


@pytest.fixture
def make_file(tmp_path):
    """make_file(content=b"", name=None) -> path (str) of a new file."""
    counter = [0]

    def make(content=b"", name=None):
        if name is None:
            counter[0] += 1
            name = "file%d.bin" % counter[0]
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)

    return make


@pytest.fixture
def data():
    """Four pages plus a tail of distinct bytes: the default file content."""
    return pattern(4 * PAGE + 123)


@pytest.fixture
def data_file(make_file, data):
    return make_file(data)


@pytest.fixture
def handle(data_file):
    """A read_write shared handle on `data_file`, closed afterwards."""
    m = iommap.open(data_file)
    yield m
    m.close()


@pytest.fixture
def fallocate_works(tmp_path):
    if not fallocate_reserves(str(tmp_path)):
        pytest.skip("this file system does not reserve space with fallocate")


@pytest.fixture
def world_dir():
    """A directory that an unprivileged user can enter, for children that
    give up root (tmp_path's parents are private to root)."""
    path = tempfile.mkdtemp(prefix="iommap-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)
