"""Fixtures for the iommap test suite; the helpers they and the tests
share live in helpers.py."""

import fnmatch
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


# ---- no silent skips -------------------------------------------------------
#
# With IOMMAP_FAIL_UNEXPECTED_SKIPS=1 (as CI runs the suite) a skip is a
# failure unless tests/expected_skips.txt lists it: CI's machine has strace,
# a C compiler, root, /dev/fuse and the peer tools, so a test that needs one
# of them and skips there has lost what it checks.

EXPECTED_SKIPS = os.path.join(os.path.dirname(__file__), "expected_skips.txt")


def _expected_skips():
    """(node id pattern, reason substring) for each line of the list."""
    rules = []
    with open(EXPECTED_SKIPS) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                pattern, _, reason = line.partition(" | ")
                rules.append((pattern.strip(), reason.strip()))
    return rules


def _skip_reason(report):
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _fail_unexpected_skip(report, nodeid):
    if not os.environ.get("IOMMAP_FAIL_UNEXPECTED_SKIPS") or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    for nodeids, expected in _expected_skips():
        if fnmatch.fnmatchcase(nodeid, nodeids) and expected in reason:
            return
    report.outcome = "failed"
    report.longrepr = (
        f"unexpected skip of {nodeid}: {reason}\n"
        f"(IOMMAP_FAIL_UNEXPECTED_SKIPS is set: a skip must be listed in {EXPECTED_SKIPS})"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result(), collector.nodeid)


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
