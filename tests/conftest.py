"""Shared fixtures and helpers for the iommap test suite.

Tests that can crash the interpreter (SIGBUS, deadlocks, deep recursion in C)
run their body in a child process through :func:`run_py`, so that a crash or
a hang is a test failure rather than a dead test run.
"""

import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

import iommap

PAGE = mmap.PAGESIZE

# Environment variables that would change how a child process handles
# signals (faulthandler installs a SIGBUS handler at start-up).
_SCRUBBED_ENV = ("PYTHONFAULTHANDLER", "PYTHONDEVMODE", "PYTHONINSPECT")


def pattern(n, seed=0):
    """Deterministic, position-dependent bytes: no two nearby offsets agree."""
    return bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def mappings_of(path):
    """The /proc/self/smaps entries that map `path`, as dicts.

    Each dict has "perms", the size fields in kB ("Rss", "Locked", ...) as
    ints, and "VmFlags" as a set.  Linux only.
    """
    real = os.path.realpath(os.fsdecode(path))
    entries = []
    current = None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if "-" in fields[0] and not fields[0].endswith(":"):
                current = None
                if len(fields) >= 6 and " ".join(fields[5:]) == real:
                    current = {"perms": fields[1]}
                    entries.append(current)
            elif current is not None:
                key = fields[0].rstrip(":")
                if key == "VmFlags":
                    current[key] = set(fields[1:])
                elif len(fields) >= 2 and fields[1].isdigit():
                    current[key] = int(fields[1])
    return entries


def is_mapped(path):
    return bool(mappings_of(path))


def has_capability(bit):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_IPC_LOCK = 14

needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")


def _under_asan():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


# AddressSanitizer intercepts mlock and makes it a no-op, so nothing is ever
# locked (or refused) in a sanitizer run.
needs_real_mlock = pytest.mark.skipif(_under_asan(), reason="ASan turns mlock into a no-op")


def assert_error(excinfo_or_exc, cls, reason, errno_=None):
    """The exception is exactly what SPEC.md's error table promises."""
    exc = getattr(excinfo_or_exc, "value", excinfo_or_exc)
    assert isinstance(exc, cls), repr(exc)
    assert isinstance(exc, iommap.Error), repr(exc)
    assert exc.reason == reason, repr(exc)
    assert isinstance(exc.reason, str)
    if errno_ is not None:
        assert isinstance(exc, OSError)
        assert exc.errno == errno_, repr(exc)
    return exc


def run_py(code, *, timeout=60, env=None, cwd=None, **variables):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout, stderr).

    `code` is a string or a tuple of strings, each dedented on its own and
    then joined (so an indented snippet can follow an unindented prelude).
    Each keyword in `variables` becomes a global of the child, set from its
    repr.  A child still running after `timeout` seconds is killed and the
    test fails: in these tests a hang means a deadlock.
    """
    prelude = "".join("%s = %r\n" % item for item in variables.items())
    if isinstance(code, str):
        code = (code,)
    source = prelude + "\n".join(textwrap.dedent(piece) for piece in code)
    child_env = dict(os.environ)
    for name in _SCRUBBED_ENV:
        child_env.pop(name, None)
    if env:
        child_env.update(env)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", source],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            "child still running after %ss (deadlock?)\nstdout:\n%s\nstderr:\n%s"
            % (timeout, _text(exc.stdout), _text(exc.stderr))
        )
    return proc.returncode, proc.stdout, proc.stderr


def _text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def run_ok(code, **kwargs):
    """run_py, and the child must exit 0 having printed a last line "OK"."""
    rc, out, err = run_py(code, **kwargs)
    assert rc == 0 and out.strip().endswith("OK"), (
        "child failed: rc=%r\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    )
    return out, err


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


def _fallocate_works(directory):
    """True when this file system really reserves blocks on fallocate."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    probe = os.path.join(directory, ".fallocate-probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = 16 * PAGE
        rc = libc.fallocate(fd, 0, ctypes.c_int64(0), ctypes.c_int64(size))
        return rc == 0 and os.fstat(fd).st_blocks * 512 >= size
    finally:
        os.close(fd)
        os.unlink(probe)


@pytest.fixture
def fallocate_works(tmp_path):
    if not _fallocate_works(str(tmp_path)):
        pytest.skip("this file system does not reserve space with fallocate")


@pytest.fixture
def world_dir():
    """A directory that an unprivileged user can enter, for children that
    give up root (tmp_path's parents are private to root)."""
    path = tempfile.mkdtemp(prefix="iommap-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)
