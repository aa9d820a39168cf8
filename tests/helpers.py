"""Helpers shared by the iommap test suite (fixtures live in conftest.py).

Code that could crash or hang the interpreter (SIGBUS, deadlocks, deep
recursion in C) runs in a fresh child process through :func:`run_py` or
:func:`run_child`, so that a crash or a hang is a test failure with the
child's output, not the end of the test run.  Both go through one runner:
the child inherits the environment (so under ``make sanitize`` or ``make
valgrind`` it is checked by the same tools) minus the variables that would
change its signal handling, and its timeout scales with
IOMMAP_TEST_SLOWDOWN.
"""

import contextlib
import ctypes
import mmap
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import iommap

PAGE = mmap.PAGESIZE

# Under valgrind every child runs 20-50 times slower: timeouts scale.
SLOWDOWN = float(os.environ.get("IOMMAP_TEST_SLOWDOWN", "1"))

# Environment variables that would change how a child process handles
# signals (faulthandler installs a SIGBUS handler at start-up).
_SCRUBBED_ENV = ("PYTHONFAULTHANDLER", "PYTHONDEVMODE", "PYTHONINSPECT")

CAP_IPC_LOCK = 14

# IOMMAP_REQUIRE_PEERS=1 (CI sets it): a peer tool the parity tests compare
# with (vmtouch, fincore) must be installed; a missing one fails those tests
# instead of skipping them.
REQUIRE_PEERS = os.environ.get("IOMMAP_REQUIRE_PEERS") == "1"


def needs_peer(name):
    """Marks a test that runs the peer tool `name`: skipped where it is
    missing, unless peers are required (then :func:`check_peers` fails it)."""
    return pytest.mark.skipif(
        shutil.which(name) is None and not REQUIRE_PEERS, reason=f"{name} is not installed"
    )


def check_peers(*names):
    """Fails the test if peers are required and one of `names` is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing and REQUIRE_PEERS:
        pytest.fail(
            "%s not installed, and IOMMAP_REQUIRE_PEERS=1 requires the parity peers "
            "(`make peers` installs them)" % ", ".join(missing)
        )


def pattern(n, seed=0):
    """Deterministic, position-dependent bytes: no two nearby offsets agree."""
    return bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


def sparse_file(path, size):
    """`path`, made a `size`-byte file that uses no disk space, or a skip."""
    try:
        with open(path, "wb") as f:
            f.truncate(size)
    except OSError as e:
        pytest.skip("this filesystem cannot hold a sparse %d-byte file: %s" % (size, e))
    return path


def sparse_8_tib(path):
    """`path`, made an 8 TiB file that uses no disk space, or a skip."""
    return sparse_file(path, 1 << 43)


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


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

# The machines whose binaries a kernel runs natively: its own and the 32-bit
# one it carries (i386 on x86-64).
_NATIVE = {"x86_64": {"i386", "i486", "i586", "i686"}, "aarch64": {"armv7l", "armv8l"}}


def _emulated_machine():
    """This process's machine when qemu-user runs it (binfmt_misc), else
    None.  qemu-user reports the emulated machine in uname() but cannot hide
    the kernel's own, /proc/sys/kernel/arch, which it passes through."""
    try:
        with open("/proc/sys/kernel/arch") as f:
            kernel = f.read().strip()
    except OSError:
        return None
    machine = os.uname().machine
    if machine == kernel or machine in _NATIVE.get(kernel, ()):
        return None
    return machine


EMULATED = _emulated_machine()


def under_emulation(reason, machines=None):
    """Skips a test where qemu-user itself cannot do what it checks (on
    `machines` only, if given); `reason` says what.  Never applies to a
    native run: the same test passes there."""
    applies = EMULATED is not None and (machines is None or EMULATED in machines)
    return pytest.mark.skipif(applies, reason="qemu-user (%s): %s" % (EMULATED, reason))


# qemu-user 7.2 on s390x (Debian 12's) hands a SIGBUS handler a wrong
# si_addr: for a fault at 0x4002a0f07b it says 0x2a0f07b00000040, the
# address's two 32-bit halves swapped (a plain C handler sees the same, no
# iommap involved).  No fault can then be matched to the copy that took it,
# so every guarded fault is passed on and kills, as it would without iommap.
wrong_fault_address = under_emulation(
    "delivers SIGBUS with a wrong si_addr (its 32-bit halves swapped)", machines={"s390x"}
)


def _under_asan():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


# AddressSanitizer intercepts mlock and makes it a no-op, so nothing is ever
# locked (or refused) in a sanitizer run.
needs_real_mlock = pytest.mark.skipif(_under_asan(), reason="ASan turns mlock into a no-op")


def fallocate_reserves(directory):
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


def assert_error(excinfo_or_exc, cls, reason, errno_=None):
    """The exception is exactly what the README's error table promises."""
    exc = getattr(excinfo_or_exc, "value", excinfo_or_exc)
    assert isinstance(exc, cls), repr(exc)
    assert isinstance(exc, iommap.Error), repr(exc)
    assert exc.reason == reason, repr(exc)
    assert isinstance(exc.reason, str)
    if errno_ is not None:
        assert isinstance(exc, OSError)
        assert exc.errno == errno_, repr(exc)
    return exc


def describe_exit(code):
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


def _run(source, *, timeout, env, cwd, args=()):
    """The one child runner: a CompletedProcess with text output."""
    child_env = dict(os.environ)
    for name in _SCRUBBED_ENV:
        child_env.pop(name, None)
    if env:
        child_env.update(env)
    try:
        return subprocess.run(
            [sys.executable, "-c", source, *args],
            capture_output=True,
            text=True,
            timeout=timeout * SLOWDOWN,
            env=child_env,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            "child still running after %.0f s (deadlock?)\nstdout:\n%s\nstderr:\n%s"
            % (timeout * SLOWDOWN, _text(exc.stdout), _text(exc.stderr))
        )


def _text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def run_py(code, *, timeout=60, env=None, cwd=None, **variables):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout, stderr).

    `code` is a string or a tuple of strings, each dedented on its own and
    then joined (so an indented snippet can follow an unindented prelude).
    Each keyword in `variables` becomes a global of the child, set from its
    repr.  A child still running after `timeout` seconds (scaled by
    IOMMAP_TEST_SLOWDOWN) is killed and the test fails: in these tests a
    hang means a deadlock.
    """
    prelude = "".join("%s = %r\n" % item for item in variables.items())
    if isinstance(code, str):
        code = (code,)
    source = prelude + "\n".join(textwrap.dedent(piece) for piece in code)
    proc = _run(source, timeout=timeout, env=env, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def run_ok(code, **kwargs):
    """run_py, and the child must exit 0 having printed a last line "OK"."""
    rc, out, err = run_py(code, **kwargs)
    assert rc == 0 and out.strip().endswith("OK"), (
        "child failed: rc=%r\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    )
    return out, err


def run_child(code, *, timeout=60, env=None, expect_exit=0, args=()):
    """Runs `code` (dedented) in ``python -c``; fails the test unless the
    child exits with `expect_exit` within `timeout` seconds (scaled by
    IOMMAP_TEST_SLOWDOWN).  Returns the CompletedProcess (text output)."""
    proc = _run(textwrap.dedent(code), timeout=timeout, env=env, cwd=None, args=args)
    if proc.returncode != expect_exit:
        pytest.fail(
            "child: %s (expected %s)\nstdout:\n%s\nstderr:\n%s"
            % (describe_exit(proc.returncode), describe_exit(expect_exit), proc.stdout, proc.stderr)
        )
    return proc


# qemu-user 7.2 maps without MAP_POPULATE: a stdlib mmap.mmap(...,
# flags=MAP_SHARED | MAP_POPULATE) of 128 KiB shows 0 kB resident under it,
# 128 kB natively.
populate_dropped = under_emulation("maps without MAP_POPULATE, so nothing is prefaulted")

# qemu-user does not apply RLIMIT_AS to the emulated process (the limit
# would bind the emulator itself): under a 200 MiB limit a stdlib mmap of
# 512 MiB succeeds under it and fails with ENOMEM natively.
rlimit_as_ignored = under_emulation("does not apply RLIMIT_AS, so no mapping fails for want of it")

# The page-cache counts (iommap.pagecache, iommap info) map the whole file:
# a 32-bit process cannot map a file larger than its address space.
whole_file_fits = pytest.mark.skipif(
    sys.maxsize < 2**32,
    reason="32-bit: the page-cache counts map the whole file, past the address space here",
)


# ---- root, and the devices only root can make ------------------------------


def need_root(why, *tools):
    """Skips the test, saying `why`, unless it runs as root; then skips it
    unless every one of `tools` is installed."""
    if os.geteuid() != 0:
        pytest.skip(why)
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip("needs " + tool)


def need_not_root(why):
    """Skips the test, saying `why`, when it runs as root (root bypasses
    file permissions)."""
    if os.geteuid() == 0:
        pytest.skip(why)


@contextlib.contextmanager
def loop_device(image, *losetup_options):
    """A loop device over the file `image` (root only): yields its path, and
    detaches it on exit.  Skips the test where none can be made."""
    need_root("needs root and losetup", "losetup")
    done = subprocess.run(
        ["losetup", *losetup_options, "--find", "--show", str(image)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip("cannot make a loop device: " + done.stderr.strip())
    device = done.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


# ---- children that meet SIGBUS ----------------------------------------------

# Common set-up for the children of the SIGBUS tests (test_sigbus.py,
# test_signals.py): a file of `pages` pages of distinct bytes, a helper
# asserting a call raises SigbusError as the API documents it.
SIGBUS_PRELUDE = """
import errno, faulthandler, os, signal, sys, threading
import iommap

def content(n):
    return bytes((i * 7 + (i >> 12)) & 0xFF for i in range(n))

def make(path, pages):
    with open(path, "wb") as f:
        f.write(content(pages * page))

def expect_sigbus(call):
    try:
        call()
    except iommap.SigbusError as e:
        assert e.reason == "sigbus", e.reason
        assert e.errno == errno.EFAULT, e.errno
        assert isinstance(e, OSError) and isinstance(e, iommap.Error)
        assert not isinstance(e, iommap.SystemCallError)
        return e
    raise AssertionError("no SigbusError from %r" % (call,))
"""


def sigbus_child(code, tmp_path, *, before="", **kwargs):
    """run_ok of `code` after SIGBUS_PRELUDE (and `before`, code to run
    first), with `path` (tmp_path / "f.bin") and `page` set."""
    return run_ok((before, SIGBUS_PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **kwargs)


def sigbus_child_rc(code, tmp_path, *, before="", **kwargs):
    """The same through run_py: (returncode, stdout, stderr), for children
    that are meant to die."""
    return run_py((before, SIGBUS_PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **kwargs)


def run_strace(trace, argv, *options, timeout=60):
    """Runs `argv` under ``strace -f -o trace`` with `options`; skips the test
    where strace is missing or cannot trace, and fails it if `argv` fails."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace")
    proc = subprocess.run(
        [strace, "-f", *options, "-o", str(trace), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("strace cannot trace here: " + proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    return proc


# ---- the benchmark, run small -----------------------------------------------

# The smallest settings `iommap bench` takes, for tests of its shape (never
# of its speed): a 2 MiB file, a few hundred operations, two repeats.
BENCH_TINY = [
    "--size",
    "2M",
    "--hot",
    "256K",
    "--small-sizes",
    "64,4K",
    "--ops",
    "300",
    "--repeats",
    "2",
    "--no-progress",
]


# ---- the command line, as a user runs it ------------------------------------

# The `iommap` script installed beside this interpreter, or `python -m
# iommap` where there is none (a run from the source tree).
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "iommap")
COMMAND = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "iommap"]


def run_iommap(*args, timeout=60, **kwargs):
    """Runs ``iommap ARGS...``: a CompletedProcess with text output, captured
    unless `kwargs` say otherwise; the timeout scales with
    IOMMAP_TEST_SLOWDOWN."""
    kwargs.setdefault("capture_output", True)
    return subprocess.run([*COMMAND, *args], text=True, timeout=timeout * SLOWDOWN, **kwargs)


def interrupted(argv, *, after=1.0, timeout=60):
    """Starts `argv`, sends it SIGINT (Ctrl-C) `after` seconds later, and
    waits for it to exit: (returncode, stdout, stderr), the output as bytes.
    A child still running `timeout` seconds after the signal is killed.
    Both times scale with IOMMAP_TEST_SLOWDOWN."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(after * SLOWDOWN)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout * SLOWDOWN)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, err


def random_file(path, size):
    """A file of `size` random bytes at `path`, written to disk so that its
    pages are clean (evict can drop them all); returns `path`."""
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    return path


def resident_pages(path):
    """How many pages of the file at `path` are in memory now."""
    with iommap.open(path, "read") as m:
        return m.resident() // PAGE
