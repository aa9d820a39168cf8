"""advise() hints beyond the seed's five, each where the running kernel has
it.  Whether the kernel has it is asked of the kernel itself, through the
standard mmap module, on a mapping of the same kind: a hint the kernel lacks
is skipped with the kernel's answer as the reason."""

import ctypes
import errno
import mmap
import os
import re
import sys
from pathlib import Path

import pytest
from helpers import PAGE, assert_error, mappings_of, pattern, read_file, run_ok

import iommap

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="checks the effect in Linux's /proc"
)

# The kernel ABI numbers (include/uapi/asm-generic/mman-common.h).
MADV = {
    "hugepage": 14,
    "nohugepage": 15,
    "free": 8,
    "cold": 20,
    "pageout": 21,
    "populate_read": 22,
    "populate_write": 23,
    "dontdump": 16,
    "dodump": 17,
    "dontfork": 10,
    "dofork": 11,
    "remove": 9,
}
SEED_HINTS = ["normal", "random", "sequential", "willneed", "dontneed"]
SIZE = 4 * PAGE
DATA = pattern(SIZE)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def kernel_answer(path, hint, *, private=False):
    """0 if the kernel takes `hint` on such a mapping, else its errno.

    Asked on a scratch copy: some hints discard data."""
    probe = str(path) + ".probe"
    with open(probe, "wb") as f:
        f.write(DATA)
    with open(probe, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE if private else mmap.MAP_SHARED)
        try:
            buf = (ctypes.c_char * len(mm)).from_buffer(mm)
            try:
                addr = ctypes.addressof(buf)
                rc = _libc.madvise(addr, len(mm), MADV[hint])
                return 0 if rc == 0 else ctypes.get_errno()
            finally:
                del buf
        finally:
            mm.close()
            os.unlink(probe)


def require(path, hint, *, private=False):
    code = kernel_answer(path, hint, private=private)
    if code != 0:
        kind = "private" if private else "shared"
        answer = errno.errorcode.get(code, code)
        pytest.skip(
            "this kernel (%s) answers %s to MADV %s on a %s file mapping"
            % (os.uname().release, answer, hint, kind)
        )


@pytest.fixture
def path(make_file):
    return make_file(DATA)


def flags_of(path):
    (entry,) = mappings_of(path)
    return entry["VmFlags"]


@pytest.mark.parametrize(
    "on,off,flag",
    [("hugepage", "nohugepage", None), ("dontdump", "dodump", "dd"), ("dontfork", "dofork", "dc")],
)
def test_flag_hints_set_and_clear_the_vma_flag(path, on, off, flag):
    require(path, on)
    require(path, off)
    with iommap.open(path) as m:
        m.advise(0, 0, on)
        if flag is None:  # hugepage and nohugepage are two flags
            assert "hg" in flags_of(path) and "nh" not in flags_of(path)
        else:
            assert flag in flags_of(path)
        m.advise(0, 0, off)
        if flag is None:
            assert "nh" in flags_of(path) and "hg" not in flags_of(path)
        else:
            assert flag not in flags_of(path)
        assert m.pread(0, SIZE) == DATA


def test_dontfork_leaves_the_child_without_the_pages(path):
    # The child has no pages behind the handle: it finds the handle closed
    # from the first look (m.closed, repr), before any call, and a call is
    # ClosedError, never a crash; the parent's handle works on.
    require(path, "dontfork")
    with iommap.open(path) as m:
        m.advise(0, 0, "dontfork")
        out, _ = run_ok(
            """
            import os, iommap
            m = iommap.open(PATH)
            m.advise(0, 0, "dontfork")
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    if not m.closed or "closed" not in repr(m):
                        os._exit(6)
                    with open("/proc/self/maps") as f:
                        mapped = PATH in f.read()
                    try:
                        m.pread(0, 4)
                    except iommap.ClosedError:
                        code = 3 if mapped else 0
                    if code == 0 and not m.closed:
                        code = 4
                    try:
                        m[0]
                    except iommap.ClosedError:
                        pass
                    else:
                        code = 5
                    m.close()
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
            assert m.pread(0, 4) == DATA[:4]
            m.advise(0, 0, "dofork")  # the whole mapping: children have it again
            pid = os.fork()
            if pid == 0:
                os._exit(0 if m.pread(0, 4) == DATA[:4] else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            m.close()
            print("OK")
            """,
            PATH=str(path),
            DATA=DATA,
        )
        assert m.pread(0, 4) == DATA[:4]


@pytest.mark.parametrize("mode", ["read", "read_write"])
def test_populate_read_faults_the_pages_in(path, mode):
    require(path, "populate_read")
    with iommap.open(path, mode) as m:
        (entry,) = mappings_of(path)
        assert entry["Rss"] == 0
        m.advise(0, 0, "populate_read")
        (entry,) = mappings_of(path)
        assert entry["Rss"] * 1024 == SIZE
        assert m.pread(0, SIZE) == DATA


@pytest.mark.parametrize("private", [False, True])
def test_populate_write_prefaults_for_writing_without_changing_data(path, private):
    require(path, "populate_write", private=private)
    with iommap.open(path, private=private) as m:
        m.advise(PAGE, 2 * PAGE, "populate_write")
        (entry,) = mappings_of(path)
        assert entry["Rss"] * 1024 >= 2 * PAGE
        assert m.pread(0, SIZE) == DATA
        m.sync()
    assert read_file(path) == DATA


def test_populate_write_needs_a_handle_that_writes(path):
    with iommap.open(path, "read") as m:
        with pytest.raises(PermissionError) as ei:
            m.advise(0, 0, "populate_write")
        exc = assert_error(ei, PermissionError, "eacces", errno.EACCES)
        assert "populate_write" in str(exc)


@pytest.mark.parametrize("hint", ["cold", "pageout"])
@pytest.mark.parametrize("private", [False, True])
def test_cold_and_pageout_lose_nothing(path, hint, private):
    require(path, hint, private=private)
    with iommap.open(path, private=private) as m:
        m.pwrite(PAGE + 3, b"kept")
        m.advise(0, 0, hint)
        m.advise(PAGE, 1, hint)
        assert m.pread(PAGE + 3, 4) == b"kept"
        assert m.pread(0, PAGE) == DATA[:PAGE]
    expected = DATA if private else DATA[: PAGE + 3] + b"kept" + DATA[PAGE + 7 :]
    assert read_file(path) == expected


def test_pageout_drops_the_pages_from_this_process(path):
    require(path, "pageout")
    # Reclaim may skip dirty file pages: page out clean ones, so the result
    # does not hang on when write-back runs.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with iommap.open(path, "read") as m:
        m.pread(0, SIZE)  # fault every page in
        before = mappings_of(path)[0]["Rss"]
        m.advise(0, 0, "pageout")
        after = mappings_of(path)[0]["Rss"]
        assert before * 1024 == SIZE and after < before


def test_free_is_refused_on_a_shared_mapping(path):
    with iommap.open(path) as m:
        with pytest.raises(PermissionError) as ei:
            m.advise(0, 0, "free")
        exc = assert_error(ei, PermissionError, "eacces", errno.EACCES)
        assert '"free"' in str(exc)
        assert m.pread(0, SIZE) == DATA


def test_free_on_a_private_mapping_is_whatever_the_kernel_says(path):
    # Linux takes MADV_FREE on anonymous memory only: on a private file
    # mapping it answers EINVAL, and iommap raises exactly that, naming it.
    code = kernel_answer(path, "free", private=True)
    with iommap.open(path, private=True) as m:
        m.pwrite(0, b"mine")
        if code == 0:
            m.advise(PAGE, PAGE, "free")  # whole pages inside only
            assert m.pread(0, 4) == b"mine"
        else:
            with pytest.raises(OSError) as ei:
                m.advise(0, 0, "free")
            exc = assert_error(ei, OSError, errno.errorcode[code].lower(), code)
            assert "MADV_FREE" in str(exc)
            assert m.pread(0, 4) == b"mine"
    assert read_file(path) == DATA


def test_remove_punches_only_the_whole_pages_inside(path):
    require(path, "remove")
    with iommap.open(path) as m:
        m.advise(PAGE - 10, 2 * PAGE + 20, "remove")  # whole pages [PAGE, 3 PAGE)
        assert m.pread(0, PAGE) == DATA[:PAGE]
        assert m.pread(PAGE, 2 * PAGE) == bytes(2 * PAGE)
        assert m.pread(3 * PAGE, PAGE) == DATA[3 * PAGE :]
        m.advise(10, 20, "remove")  # no whole page inside: nothing happens
        assert m.pread(0, PAGE) == DATA[:PAGE]
    assert read_file(path) == DATA[:PAGE] + bytes(2 * PAGE) + DATA[3 * PAGE :]
    assert os.path.getsize(path) == SIZE


@pytest.mark.parametrize("mode,private", [("read", False), ("read_write", True)])
def test_remove_is_refused_where_it_cannot_change_the_file(path, mode, private):
    with iommap.open(path, mode, private=private) as m:
        with pytest.raises(PermissionError) as ei:
            m.advise(0, 0, "remove")
        assert '"remove"' in str(assert_error(ei, PermissionError, "eacces"))
    assert read_file(path) == DATA


@pytest.mark.parametrize("hint", sorted(MADV))
def test_every_new_hint_is_known(path, hint):
    # Known by name: never badarg.  Either it works, or the error names it.
    with iommap.open(path, private=hint == "free") as m:
        try:
            m.advise(PAGE, PAGE, hint)
        except iommap.BadArgumentValueError:
            raise AssertionError("%r is badarg" % hint) from None
        except OSError as exc:
            assert hint in str(exc) or "MADV_" in str(exc), str(exc)


@pytest.mark.parametrize("hint", ["madv_free", "HUGEPAGE", "populate", "dont_fork", "wipeonfork"])
def test_unknown_hints_stay_badarg(path, hint):
    with iommap.open(path) as m:
        with pytest.raises(iommap.BadArgumentValueError) as ei:
            m.advise(0, 0, hint)
        exc = assert_error(ei, ValueError, "badarg")
        assert "pageout" in str(exc)  # the message lists what is known


def test_hint_checks_come_before_bounds_and_closed(path):
    m = iommap.open(path)
    m.close()
    with pytest.raises(iommap.BadArgumentValueError):
        m.advise(0, 0, "nonsense")
    with pytest.raises(iommap.ClosedError):
        m.advise(0, 0, "cold")


def test_docs_list_every_hint():
    # docs/platforms.md has one table row per hint.
    text = (Path(__file__).resolve().parent.parent / "docs" / "platforms.md").read_text()
    listed = set(re.findall(r'^\| `"([a-z_]+)"` \|', text, re.M))
    assert listed == set(MADV) | set(SEED_HINTS)
