"""Signal coexistence: iommap's SIGBUS guard beside every other SIGBUS user.

Each arrangement of handlers (faulthandler, signal.signal, SIG_IGN, and a
native library with its own handler, built here with cc from
tests/native/sigbus_peer.c) is run twice in fresh interpreters: once with
iommap imported, opened and faulting, once without iommap at all.  The two
runs must end the same way: the same exit status or signal, the same
faulthandler report, the same count of faults the other library recovered,
the same Python handler calls.  In the run with iommap, every fault inside an
iommap copy must be a SigbusError.

Then single arrangements, each in its own child: a fault that is not
iommap's (a stdlib mapping, the caller's own buffer, kill(2)) still kills
or reaches the handler installed before, and faulthandler, enabled before
or after import, before or after open(), gets what is not iommap's.

Every case runs in a subprocess with a timeout: a death or a hang is a
failure of the test, not of the run.
"""

import os
import shutil
import signal
import subprocess

import pytest
from helpers import run_ok, run_py, sigbus_child, sigbus_child_rc, wrong_fault_address

NATIVE = os.path.join(os.path.dirname(__file__), "native", "sigbus_peer.c")
FATAL = "Fatal Python error: Bus error"
RUNS = 25  # faults of each kind per process

# One child program for both runs.  WITH says whether iommap takes part;
# STEPS install and remove handlers in order; ENDING is the last SIGBUS, one
# that is not iommap's.  It prints what it observed, one "KEY value" a line.
CHILD = """
import ctypes, errno, faulthandler, mmap, os, signal, sys, threading, time

page = mmap.PAGESIZE
iommap = m = peer = None
py_hits = []
guarded = 0

# A stdlib mapping of another file, shrunk: touching its second page is a
# SIGBUS that is no business of iommap's, with or without it.
with open(PATH + ".other", "wb") as f:
    f.write(b"o" * 4 * page)
other_fd = os.open(PATH + ".other", os.O_RDWR)
other = mmap.mmap(other_fd, 4 * page)
os.truncate(PATH + ".other", page)
other_addr = ctypes.addressof(ctypes.c_char.from_buffer(other))


def guarded_fault(length=1):
    # A copy out of pages that vanished: with iommap in the chain, always a
    # SigbusError, whatever else handles SIGBUS.
    global guarded
    try:
        m.pread(2 * page, length)
    except iommap.SigbusError as e:
        assert e.reason == "sigbus" and e.errno == errno.EFAULT
        guarded += 1
    else:
        raise AssertionError("no SigbusError")


def step(name):
    global iommap, m, peer
    # "!" marks a step after which iommap's handler may be out of the chain
    # until the next re-arm: no guarded fault is tried right after it.
    window = name.endswith("!")
    name = name.rstrip("!")
    if name == "import":
        if WITH:
            import iommap
    elif name == "open":
        if WITH:
            with open(PATH, "wb") as f:
                f.write(b"x" * 32 * page)
            m = iommap.open(PATH)
            os.truncate(PATH, page)
    elif name == "rearm":
        if WITH:
            iommap.rearm_guard()
    elif name == "large":
        if WITH:
            guarded_fault(16 * page)  # releases the GIL: re-arms first
    elif name == "fh":
        faulthandler.enable()
    elif name == "fh_off":
        faulthandler.disable()
    elif name == "py":
        signal.signal(signal.SIGBUS, lambda signum, frame: py_hits.append(signum))
    elif name == "ign":
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
    elif name == "dfl":
        signal.signal(signal.SIGBUS, signal.SIG_DFL)
    elif name.startswith("peer-"):
        peer = ctypes.CDLL(PEER_LIB)
        peer.peer_page.restype = ctypes.c_void_p
        peer.peer_entries.restype = ctypes.c_long
        how = ["peer-jump", "peer-fix", "peer-return"].index(name)
        assert peer.peer_install(os.fsencode(PATH + ".peer"), how) == 0
    else:
        raise ValueError(name)
    if m is not None and not window:
        guarded_fault()


for name in STEPS:
    step(name)

# The other library's faults, interleaved with iommap's: neither leaves
# state behind that changes how the next fault of the other is handled.
outcomes = {}
print("LOOP", flush=True)
for i in range(RUNS):
    if peer is not None:
        value = peer.peer_touch()
        outcomes[value] = outcomes.get(value, 0) + 1
    if m is not None:
        guarded_fault(1 if i % 2 else 3 * page)
if peer is not None:
    print("PEER", sorted(outcomes.items()), peer.peer_entries(), flush=True)
    if ENDING == "peer-copy":
        # A copy into the other library's page, which faults there: it is
        # the library's to fix.  With iommap the copy is iommap's own
        # (readinto); the guard passes the fault on and the copy completes.
        assert peer.peer_reset() == 0  # the page is the shrunk file's again
        target = (ctypes.c_char * page).from_address(peer.peer_page())
        source = bytes(range(256)) * (page // 256)
        if m is not None:
            with open(PATH, "r+b") as f:
                f.write(source)
            m.readinto(0, memoryview(target).cast("B"))
        else:
            ctypes.memmove(target, source, page)
        print("COPIED", bytes(target) == source, peer.peer_entries(), flush=True)
        if m is not None:
            guarded_fault()
# Nothing a handler blocked while it ran stays blocked after it: iommap's
# recovery jumps out of the other library's handler too.
print("BLOCKED", sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])), flush=True)
print("PY", len(py_hits), flush=True)
print("GUARDED", guarded, flush=True)

if ENDING == "kill":
    os.kill(os.getpid(), signal.SIGBUS)
elif ENDING == "raise":
    signal.raise_signal(signal.SIGBUS)
elif ENDING == "pthread_kill":
    # From another (native) thread to this one.
    native = ctypes.CDLL(PEER_LIB)
    native.peer_kill_from_thread.argtypes = [ctypes.c_ulong]
    assert native.peer_kill_from_thread(threading.get_ident()) == 0
elif ENDING == "fault":
    ctypes.string_at(other_addr + page, 1)
elif ENDING == "view":
    # With iommap, a view of its own mapping; without, the stdlib mapping.
    if m is not None:
        m.view()[2 * page]
    else:
        other[2 * page]
for _ in range(50):  # a handled signal runs its Python handler soon after
    if len(py_hits) > 0:
        break
    time.sleep(0.01)
print("PY", len(py_hits), flush=True)
print("ALIVE", flush=True)
"""


@pytest.fixture(scope="module")
def peer_lib(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("needs a C compiler to build the native peer library")
    out = tmp_path_factory.mktemp("peer") / "sigbus_peer.so"
    # The compiler runs without the sanitizer runtime a sanitize run preloads.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-pthread", "-o", str(out), NATIVE],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )
    return str(out)


def run_arrangement(tmp_path, peer_lib, steps, ending, with_iommap, env=None, timeout=60):
    directory = tmp_path / ("with" if with_iommap else "without")
    directory.mkdir(exist_ok=True)
    return run_py(
        CHILD,
        timeout=timeout,
        env=env,
        PATH=str(directory / "f.bin"),
        PEER_LIB=peer_lib,
        WITH=with_iommap,
        STEPS=steps,
        ENDING=ending,
        RUNS=RUNS,
    )


def outcome(rc, out, err):
    """What must match with and without iommap: the exit status or signal,
    faulthandler's reports and the other library's messages, and every
    observation printed, except iommap's own count."""
    report = [line for line in err.splitlines() if line.startswith(("Fatal Python error", "peer:"))]
    seen = [line for line in out.splitlines() if not line.startswith("GUARDED")]
    return rc, report, seen


def guarded_count(out):
    counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("GUARDED")]
    return counts[0] if counts else None


def compare(tmp_path, peer_lib, steps, ending):
    without = run_arrangement(tmp_path, peer_lib, steps, ending, False)
    with_ = run_arrangement(tmp_path, peer_lib, steps, ending, True)
    assert outcome(*with_) == outcome(*without), (
        "with iommap: rc=%r\n%s\n%s\nwithout: rc=%r\n%s\n%s" % (with_ + without)
    )
    return with_, without


def expected_guarded(steps, ending):
    """SigbusErrors the run with iommap counts: one after open and after
    each later step that keeps iommap in the chain, one per large step, one
    per loop run, one after a copy into the other library's page."""
    after_open = steps[steps.index("open") :]
    checked = sum(1 for s in after_open if not s.endswith("!"))
    return checked + steps.count("large") + RUNS + (ending == "peer-copy")


# Arrangements in which iommap's handler is in the chain at every guarded
# fault: each is one row of the table in docs/truncation.md.
ARRANGEMENTS = {
    "nothing else": ["import", "open"],
    "faulthandler before import": ["fh", "import", "open"],
    "faulthandler between import and open": ["import", "fh", "open"],
    "faulthandler on and off before open": ["import", "fh", "fh_off", "open"],
    "faulthandler between import and open, off after": ["import", "fh", "open", "fh_off"],
    "faulthandler after open, rearm_guard": ["import", "open", "fh!", "rearm"],
    "faulthandler after open, a large copy": ["import", "open", "fh!", "large"],
    "faulthandler before import, off after open, rearm_guard": [
        "fh",
        "import",
        "open",
        "fh_off!",
        "rearm",
    ],
    "signal.signal before import": ["py", "import", "open"],
    "signal.signal between import and open": ["import", "py", "open"],
    "signal.signal after open, rearm_guard": ["import", "open", "py!", "rearm"],
    "signal.signal after open, a large copy": ["import", "open", "py!", "large"],
    "SIG_IGN before import": ["ign", "import", "open"],
    "SIG_IGN after open, rearm_guard": ["import", "open", "ign!", "rearm"],
    "SIG_DFL restored after open, rearm_guard": ["py", "import", "open", "dfl!", "rearm"],
}

ENDINGS = ["kill", "raise", "pthread_kill", "fault", "view"]


# A Python-level handler returns from a real fault without curing it, so the
# fault repeats forever, with iommap or without: those two endings are
# test_a_python_handler_loops_on_a_real_fault_as_without_iommap.
ARRANGEMENT_CASES = [
    pytest.param(steps, ending, id="%s-%s" % (name, ending))
    for name, steps in ARRANGEMENTS.items()
    for ending in ENDINGS
    if not ("py" in [s.rstrip("!") for s in steps] and ending in ("fault", "view"))
]


@pytest.mark.parametrize("steps,ending", ARRANGEMENT_CASES)
def test_handlers_see_what_they_would_without_iommap(tmp_path, peer_lib, steps, ending):
    (rc, out, err), _ = compare(tmp_path, peer_lib, steps, ending)
    assert guarded_count(out) == expected_guarded(steps, ending), out
    # No recovered fault of iommap's printed a faulthandler report: the
    # reports match the run without iommap, which has no such faults.


def hangs(tmp_path, peer_lib, steps, ending, with_iommap, marker, seconds=3):
    """Whether the child, having printed `marker`, is still running after
    `seconds` (scaled by IOMMAP_TEST_SLOWDOWN)."""
    try:
        run_arrangement(tmp_path, peer_lib, steps, ending, with_iommap, timeout=seconds)
    except pytest.fail.Exception as e:
        if "still running" in str(e):
            assert marker in str(e), str(e)  # it got as far as the loop
            return True
        raise
    return False


@pytest.mark.parametrize("order", ["before import", "after open, rearm_guard"])
def test_a_python_handler_loops_on_a_real_fault_as_without_iommap(tmp_path, peer_lib, order):
    steps = (
        ["py", "import", "open"] if order == "before import" else ["import", "open", "py!", "rearm"]
    )
    assert hangs(tmp_path, peer_lib, steps, "fault", False, "GUARDED 0")
    assert hangs(
        tmp_path, peer_lib, steps, "fault", True, "GUARDED %d" % expected_guarded(steps, "fault")
    )


PEERS = ["peer-jump", "peer-fix", "peer-return"]
PEER_ORDERS = {
    "before import": ["{peer}", "import", "open"],
    "between import and open": ["import", "{peer}", "open"],
    "after open": ["import", "open", "{peer}"],
    "after faulthandler, between import and open": ["fh", "import", "{peer}", "open"],
    "before faulthandler after open": ["import", "open", "{peer}", "fh!", "rearm"],
}


def peer_cases():
    for peer in PEERS:
        for order, steps in PEER_ORDERS.items():
            steps = [s.format(peer=peer) for s in steps]
            endings = ["fault", "kill"] if peer != "peer-return" else ["fault"]
            if peer == "peer-fix":
                endings.append("peer-copy")
            for ending in endings:
                yield pytest.param(steps, ending, id="%s %s-%s" % (peer, order, ending))


@pytest.mark.parametrize("steps,ending", list(peer_cases()))
def test_a_native_library_recovers_its_faults_as_without_iommap(tmp_path, peer_lib, steps, ending):
    (rc, out, err), (rc0, out0, err0) = compare(tmp_path, peer_lib, steps, ending)
    if "fh!" in steps:
        # faulthandler in front of the library reports the library's first
        # fault as fatal and re-raises it, which the library passes on to
        # the default action: it dies, with iommap as without.
        assert rc == -signal.SIGBUS and FATAL in err, (rc, err)
        return
    if "peer-return" in steps:
        # Returning without a fix loops on the fault, with iommap or not.
        assert rc == 7 and "peer: looped 1000" in err, (rc, err)
        return
    peer_line = [line for line in out.splitlines() if line.startswith("PEER")]
    expected = -1 if "peer-jump" in steps else ord("Z")
    assert peer_line == ["PEER [(%d, %d)] %d" % (expected, RUNS, RUNS)], out
    assert guarded_count(out) == expected_guarded(steps, ending), out
    if ending == "peer-copy":
        assert "COPIED True %d" % (RUNS + 1) in out, out


# ---- the window: changes after the last re-arm point ----------------------
# iommap gets back in front at open(), at copies of 64 KiB or more, and at
# rearm_guard().  A change made after the last of these, followed by a small
# guarded copy, is what chaining cannot see; docs/truncation.md describes
# each case, and these tests hold the documented behaviour to its word.


def test_faulthandler_enabled_after_the_last_rearm_point(tmp_path, peer_lib):
    # faulthandler is in front: it sees the first guarded fault, prints its
    # report, uninstalls itself and re-raises; iommap recovers.  faulthandler
    # then stays uninstalled: the next real crash kills without a report.
    rc, out, err = run_arrangement(tmp_path, peer_lib, ["import", "open", "fh!"], "fault", True)
    assert guarded_count(out) == expected_guarded(["import", "open", "fh!"], "fault"), out
    assert rc == -signal.SIGBUS, (rc, out, err)
    assert err.count(FATAL) == 1 and "in guarded_fault" in err, err


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(["py", "import", "open", "dfl!"], id="SIG_DFL restored"),
        pytest.param(["fh", "import", "open", "fh_off!"], id="faulthandler from before import off"),
    ],
)
def test_default_action_restored_after_the_last_rearm_point(tmp_path, peer_lib, steps):
    # Restoring SIG_DFL takes iommap's handler out with the one it replaces:
    # the first small guarded fault kills, as any SIGBUS would.
    rc, out, err = run_arrangement(tmp_path, peer_lib, steps, "kill", True)
    assert rc == -signal.SIGBUS and "GUARDED" not in out, (rc, out, err)
    # A large copy first re-arms: then it is a SigbusError like any other.
    rc, out, err = run_arrangement(tmp_path, peer_lib, steps + ["large"], "kill", True)
    assert guarded_count(out) == expected_guarded(steps + ["large"], "kill"), (rc, out, err)
    assert rc == -signal.SIGBUS, (rc, out, err)


def test_python_handler_installed_after_the_last_rearm_point(tmp_path, peer_lib):
    # signal.signal's handler does not chain: iommap's is out of the chain
    # and a small guarded fault loops in it, as a real fault would.
    assert hangs(tmp_path, peer_lib, ["import", "open", "py!"], "kill", True, "LOOP")


def test_pthread_kill_during_a_guarded_copy_reaches_the_other_handler(tmp_path, peer_lib):
    # A SIGBUS sent by another thread while this one copies is not a fault
    # of the copy: the copy completes and the Python handler runs, each time.
    # (It looks like a re-raised fault, SI_TKILL from this process, but it
    # interrupts the copy itself rather than a system call.)
    out, err = run_ok(
        """
        import ctypes, signal, threading, time
        import iommap
        hits = []
        signal.signal(signal.SIGBUS, lambda signum, frame: hits.append(signum))
        native = ctypes.CDLL(PEER_LIB)
        native.peer_kill_later.argtypes = [ctypes.c_ulong, ctypes.c_uint]
        size = 64 << 20
        with open(PATH, "wb") as f:
            f.truncate(size)
        m = iommap.open(PATH)
        buf = bytearray(size)
        m.readinto(0, buf)                      # pages in, buffer touched
        start = time.perf_counter()
        m.readinto(0, buf)
        copy_us = int((time.perf_counter() - start) * 1e6)
        errors = 0
        for i in range(40):
            native.peer_kill_later(threading.get_ident(), copy_us * (i % 8 + 1) // 10)
            try:
                m.readinto(0, buf)
            except iommap.SigbusError:
                errors += 1
            deadline = time.monotonic() + 5
            while len(hits) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            if errors or len(hits) < i + 1:
                break
        print(errors, len(hits))
        assert errors == 0 and len(hits) == 40, (errors, len(hits))
        print("OK")
        """,
        PATH=str(tmp_path / "f.bin"),
        PEER_LIB=peer_lib,
    )


def test_any_call_that_releases_the_gil_rearms(tmp_path, peer_lib):
    # A pwrite of many small pieces is one large copy: it re-arms too, so a
    # Python handler installed after open() does not see its fault.
    sigbus_child(
        """
        make(path, 64)
        m = iommap.open(path)
        os.truncate(path, page)
        signal.signal(signal.SIGBUS, lambda signum, frame: None)
        try:
            m.pwrite(0, [b"p" * 1000] * 100)   # 100 KB, the fault past page 1
        except iommap.SigbusError:
            print("OK")
        """,
        tmp_path,
        timeout=30,
    )


def test_many_displacements_keep_the_chain(tmp_path):
    # Each re-arm over a new handler takes a fresh entry point; past the last
    # one, the last is reused with a new link.  Either way guarded faults
    # stay SigbusErrors and other signals reach the newest handler.
    sigbus_child(
        """
        import time
        make(path, 4)
        m = iommap.open(path)
        os.truncate(path, page)
        hits = []
        for i in range(100):
            signal.signal(signal.SIGBUS, lambda signum, frame, i=i: hits.append(i))
            iommap.rearm_guard()
            try:
                m.pread(2 * page, 1)
            except iommap.SigbusError:
                pass
            else:
                raise AssertionError("no SigbusError")
            if i % 10 == 9:
                os.kill(os.getpid(), signal.SIGBUS)
                for _ in range(100):
                    if len(hits) > i // 10:
                        break
                    time.sleep(0.01)
        assert hits == list(range(9, 100, 10)), hits
        print("OK")
        """,
        tmp_path,
    )


# ==== the chain, seen from single arrangements ===========================
#
# A shrunk file under an iommap handle, and one SIGBUS that is not iommap's.

# ---- faults outside iommap go where they went before ---------------------

# A stdlib mmap (no guard) of another file, `mm`, shrunk under it.
SHRUNK_STDLIB_MMAP = """
        import ctypes, mmap
        other = path + ".other"
        with open(other, "wb") as f:
            f.write(b"x" * 2 * page)
        fd = os.open(other, os.O_RDWR)
        mm = mmap.mmap(fd, 2 * page)
        os.truncate(other, 0)
"""

UNRELATED = {
    # A real fault: a stdlib mmap (no guard) of a file that shrank.
    "stdlib-mmap": SHRUNK_STDLIB_MMAP
    + """
        address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        ctypes.string_at(address + page, 1)
    """,
    # A real fault during an iommap copy, but in the caller's buffer (a
    # stdlib mmap of another file that shrank), not in iommap's pages: not
    # iommap's to recover.
    "foreign-buffer": SHRUNK_STDLIB_MMAP
    + """
        m.readinto(0, memoryview(mm)[:page])
    """,
    # A signal sent by kill(2): no faulting address at all.
    "kill": """
        os.kill(os.getpid(), signal.SIGBUS)
        import time
        time.sleep(5)
    """,
}


def killed_after_surviving(tmp_path, head, unrelated):
    """Runs `head` (which survives a guarded fault), then the `unrelated`
    SIGBUS: the child must have printed SURVIVED, and then died of SIGBUS
    before it could print NOT KILLED.  Returns its stderr."""
    code = head + '\n        print("SURVIVED", flush=True)\n' + unrelated
    code += '\n        print("NOT KILLED", flush=True)\n'
    rc, out, err = sigbus_child_rc(code, tmp_path)
    assert "SURVIVED" in out and "NOT KILLED" not in out, (rc, out, err)
    assert rc == -signal.SIGBUS, (rc, out, err)
    return err


SURVIVE = """
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
"""


@wrong_fault_address
@pytest.mark.parametrize("kind", list(UNRELATED))
def test_unrelated_sigbus_still_kills(tmp_path, kind):
    killed_after_surviving(tmp_path, SURVIVE, UNRELATED[kind])


def test_unrelated_fault_while_another_thread_is_in_a_guarded_copy(tmp_path):
    # The guard is per thread: a fault on the main thread must not be taken
    # for the guarded copy running on another.
    code = """
        make(path, 64)
        m = iommap.open(path)
        stop = False
        def reader():
            while not stop:
                m.pread(0, 64 * page)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        import time
        time.sleep(0.05)
    """
    killed_after_surviving(tmp_path, code, UNRELATED["stdlib-mmap"])


@wrong_fault_address
def test_python_handler_installed_before_import_is_chained(tmp_path):
    # A handler installed before iommap (here Python's own, for a kill(2)
    # signal) still gets the signals that are not iommap's; guarded faults
    # never reach it.
    sigbus_child(
        SURVIVE
        + """
        expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        assert hits == [], hits
        os.kill(os.getpid(), signal.SIGBUS)
        for _ in range(100):
            if hits:
                break
            time.sleep(0.01)
        assert hits == [signal.SIGBUS], hits
        print("OK")
        """,
        tmp_path,
        before="""
        import os, signal, time
        hits = []
        signal.signal(signal.SIGBUS, lambda signum, frame: hits.append(signum))
        """,
    )


@wrong_fault_address
def test_ignored_sigbus_stays_ignored(tmp_path):
    # SIG_IGN was "the handler installed before": a kill(2) SIGBUS is ignored.
    sigbus_child(
        SURVIVE
        + """
        os.kill(os.getpid(), signal.SIGBUS)
        import time; time.sleep(0.1)
        print("OK")
        """,
        tmp_path,
        before="""
        import signal
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
        """,
    )


# ---- faulthandler --------------------------------------------------------


@wrong_fault_address
def test_open_after_faulthandler_puts_iommap_in_front(tmp_path):
    # faulthandler.enable() after import, then iommap.open: iommap's handler
    # is in front again, so guarded faults never reach faulthandler.
    out, err = sigbus_child(
        """
        faulthandler.enable()
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        for _ in range(3):
            expect_sigbus(lambda: m.pread(2 * page, 1))
            expect_sigbus(lambda: m.readinto(2 * page, bytearray(4)))
            expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        print("OK")
        """,
        tmp_path,
    )
    assert FATAL not in err, err


@wrong_fault_address
@pytest.mark.parametrize("kind", list(UNRELATED))
def test_unrelated_fault_still_reaches_faulthandler(tmp_path, kind):
    head = "\n        faulthandler.enable()" + SURVIVE
    err = killed_after_surviving(tmp_path, head, UNRELATED[kind])
    assert FATAL in err, err


@wrong_fault_address
def test_guarded_fault_recovered_with_faulthandler_in_front(tmp_path):
    # faulthandler enabled after the last iommap.open stays in front: it sees
    # the fault first, dumps, and re-raises; iommap recognises the re-raised
    # signal on a thread inside a guarded copy and recovers all the same.
    out, err = sigbus_child(
        """
        make(path, 32)
        m = iommap.open(path)
        faulthandler.enable()
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        expect_sigbus(lambda: m.pread(0, 32 * page))          # without the GIL
        expect_sigbus(lambda: m.readinto(0, bytearray(32 * page)))
        expect_sigbus(lambda: m.pwrite(2 * page, b"x"))
        assert m.pread(0, 8) == content(8)
        print("OK")
        """,
        tmp_path,
    )
    # The set-up really put faulthandler in front: it reported the fault.
    assert FATAL in err, err


def test_faulthandler_in_front_then_unrelated_fault_kills(tmp_path):
    head = """
        make(path, 3)
        m = iommap.open(path)
        faulthandler.enable()
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
    """
    killed_after_surviving(tmp_path, head, UNRELATED["stdlib-mmap"])


@wrong_fault_address
def test_faulthandler_enabled_before_import(tmp_path):
    # python -X faulthandler: faulthandler was there first; iommap goes in
    # front of it and chains to it.
    out, err = sigbus_child(
        """
        assert faulthandler.is_enabled()
        make(path, 3)
        m = iommap.open(path)
        os.truncate(path, page)
        expect_sigbus(lambda: m.pread(2 * page, 1))
        print("OK")
        """,
        tmp_path,
        env={"PYTHONFAULTHANDLER": "1"},
    )
    assert FATAL not in err, err
