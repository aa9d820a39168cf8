"""The page-cache layer at its edges: ranges that are empty, past the end or
straddle it; options honoured by every command; files that cannot be mapped;
deep trees; failures of the command line.  Each is checked by what a user
sees: the counts, the memory really touched (VmLck, resident pages), the
message and the exit status."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    COMMAND,
    PAGE,
    SLOWDOWN,
    needs_real_mlock,
    random_file,
    resident_pages,
    run_iommap,
    whole_file_fits,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import iommap
from iommap import pagecache

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_iommap(*args, timeout=120, **kwargs)


def run_json(*args: str, status: int = 0) -> dict[str, Any]:
    done = run(*args, "--json")
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def droppable(path: Path) -> Path:
    if pagecache.memory_filesystem(path) is not None or not hasattr(os, "posix_fadvise"):
        pytest.skip("this file system keeps every page in memory")
    return path


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout


def locked_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck line")


# ---- -p: every command, the memory it really touches --------------------------------


@pytest.fixture
def big(tmp_path: Path) -> Path:
    return droppable(random_file(tmp_path / "big.bin", 1024 * PAGE))


def test_info_counts_only_the_range(big: Path) -> None:
    pagecache.evict(big)
    pagecache.warm(big, offset=0, length=4 * PAGE)
    (f,) = run_json("info", "-p", f"{2 * PAGE}-{10 * PAGE}", str(big))["files"]
    assert (f["offset"], f["length"], f["total_pages"], f["resident_pages"]) == (
        2 * PAGE,
        8 * PAGE,
        8,
        2,
    )


def test_warm_reads_only_the_range(big: Path) -> None:
    pagecache.evict(big)
    assert resident_pages(big) == 0
    (f,) = run_json("warm", "-p", f"{8 * PAGE}-{16 * PAGE}", str(big))["files"]
    assert (f["total_pages"], f["resident_pages_before"], f["resident_pages"]) == (8, 0, 8)
    assert resident_pages(big) == 8
    assert pagecache.residency(big, offset=0, length=8 * PAGE).resident_pages == 0


def test_evict_drops_only_the_range(big: Path) -> None:
    # A boundary on 2 MiB: the kernel drops only whole folios, and a large
    # one that the range cuts through stays (as for vmtouch -e -p).
    half = 2 << 20
    if half % PAGE or 1024 * PAGE < 2 * half:
        pytest.skip("written for pages of 4 KiB")
    pagecache.warm(big)
    (f,) = run_json("evict", "-p", f"{half}-", str(big))["files"]
    assert (f["offset"], f["total_pages"], f["resident_pages"]) == (half, 512, 0)
    assert resident_pages(big) == 512  # the first half stays


@linux_only
@needs_real_mlock
@pytest.mark.parametrize("daemon", [False, True])
def test_lock_locks_only_the_range(big: Path, tmp_path: Path, daemon: bool) -> None:
    # vmtouch -l -p 0-8K locks 8 KiB; so must iommap lock -p 0-8K.
    pagecache.evict(big)
    pidfile = tmp_path / "lock.pid"
    args = [*COMMAND, "lock", "--json", "-p", f"0-{2 * PAGE}", str(big)]
    if daemon:
        args += ["-d", "-P", str(pidfile)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    pid = None
    try:
        assert child.stdout is not None
        doc = json.loads(child.stdout.readline())
        pid = doc.get("pid")  # known at once, so a failed check below still ends the daemon
        assert doc["locked"] is True
        (f,) = doc["files"]
        assert (f["size"], f["offset"], f["length"], f["locked_bytes"]) == (
            1024 * PAGE,
            0,
            2 * PAGE,
            2 * PAGE,
        )
        assert doc["locked_bytes"] == 2 * PAGE
        if daemon:
            assert child.wait(30 * SLOWDOWN) == 0
            assert int(pidfile.read_text()) == pid
        assert locked_kib(pid) * 1024 == 2 * PAGE
        assert resident_pages(big) == 2  # locking brought in the range only
    finally:
        if pid is not None and pid != child.pid:
            os.kill(pid, signal.SIGTERM)
        elif child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait(30 * SLOWDOWN)


@needs_real_mlock
def test_lock_function_takes_a_range(big: Path) -> None:
    pagecache.evict(big)
    with pagecache.lock([big], offset=PAGE, length=3 * PAGE) as locked:
        (f,) = locked.files
        assert (f.offset, f.length, f.resident_pages) == (PAGE, 3 * PAGE, 3)
        assert locked.locked_bytes == 3 * PAGE
        assert resident_pages(big) == 3


# ---- ranges: empty, past the end, straddling ------------------------------------------


@pytest.mark.parametrize(
    "offset,length",
    [(1 << 30, 0), (1 << 30, None), (1 << 30, 1 << 20), (2**64, None), (2**64, 2**64), (5, 0)],
)
def test_a_range_with_no_byte_of_the_file_counts_nothing(
    tmp_path: Path, offset: int, length: int | None
) -> None:
    path = random_file(tmp_path / "f.bin", 3 * PAGE)
    r = pagecache.residency(path, offset=offset, length=length)
    assert (r.length, r.total_pages, r.resident_pages, r.resident_bytes) == (0, 0, 0, 0)


def test_info_of_a_range_past_the_end_counts_nothing(tmp_path: Path) -> None:
    path = random_file(tmp_path / "f.bin", 3 * PAGE)
    (f,) = run_json("info", "-p", "1G-1G", str(path))["files"]
    assert (f["length"], f["total_pages"], f["resident_pages"]) == (0, 0, 0)
    (f,) = run_json("info", "-p", "1G-", str(path))["files"]
    assert (f["length"], f["total_pages"]) == (0, 0)


# Files of every shape a range can meet, each with pages 0 and 2 resident
# (where the file system lets pages go) and the rest not.
_SIZES = [0, 1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 5, 6 * PAGE]
_files: dict[int, Path] = {}


def _shaped_file(directory: Path, size: int) -> Path:
    if size not in _files:
        path = directory / f"size-{size}"
        path.write_bytes(os.urandom(size))
        if size and pagecache.memory_filesystem(path) is None:
            pagecache.evict(path, writeback=True)
            with iommap.open(path, "read") as m:
                m.advise(0, 0, "random")
                for page in (0, 2):
                    if page * PAGE < size:
                        m.pread(page * PAGE, 1)
        _files[size] = path
    return _files[size]


_numbers = st.one_of(
    st.integers(0, 8 * PAGE),
    st.sampled_from([PAGE - 1, PAGE, 2**63 - 1, 2**63, 2**64 - 1, 2**64]),
    st.integers(0, 2**70),
)


@pytest.mark.skipif(not pagecache.cachestat_available(), reason="no cachestat(2) to compare")
@settings(max_examples=300, deadline=None)
@given(size=st.sampled_from(_SIZES), offset=_numbers, length=st.one_of(st.none(), _numbers))
def test_both_counting_paths_agree_on_every_range(
    tmp_path_factory: pytest.TempPathFactory, size: int, offset: int, length: int | None
) -> None:
    # cachestat(2) in the core and mincore(2) on a mapping count the same
    # range the same way: empty, past the end, straddling it, or huge.
    path = _shaped_file(tmp_path_factory.getbasetemp(), size)
    by_cachestat = pagecache.residency(path, offset=offset, length=length)
    saved = pagecache._cachestat_missing
    pagecache._cachestat_missing = True
    try:
        by_mincore = pagecache.residency(path, offset=offset, length=length)
    finally:
        pagecache._cachestat_missing = saved
    fields = ("size", "offset", "length", "total_pages", "known", "resident_pages")
    got = [tuple(getattr(r, f) for f in fields) for r in (by_cachestat, by_mincore)]
    assert got[0] == got[1]
    r = by_cachestat
    # What the range holds: no page that does not exist, at most the file.
    assert r.offset % PAGE == 0 and r.offset + r.length <= size
    assert r.total_pages == -(-r.length // PAGE) <= -(-size // PAGE)
    if length == 0 or offset >= size:
        assert (r.length, r.total_pages, r.resident_pages) == (0, 0, 0)


@pytest.mark.parametrize("bad", [-1, -(2**70)])
def test_negative_numbers_are_the_librarys_badarg(tmp_path: Path, bad: int) -> None:
    path = random_file(tmp_path / "f.bin", PAGE)
    for call in (
        lambda: pagecache.residency(path, offset=bad),
        lambda: pagecache.residency(path, length=bad),
        lambda: pagecache.warm(path, offset=bad),
        lambda: pagecache.evict(path, length=bad),
    ):
        with pytest.raises(iommap.BadArgumentValueError) as ei:
            call()
        assert isinstance(ei.value, ValueError) and ei.value.reason == "badarg"


def test_numbers_of_the_wrong_type_are_the_librarys_badarg(tmp_path: Path) -> None:
    path = random_file(tmp_path / "f.bin", PAGE)
    for bad in (1.5, "1", None):
        with pytest.raises(iommap.BadArgumentTypeError):
            pagecache.residency(path, offset=bad)  # type: ignore[arg-type]


# ---- the totals line --------------------------------------------------------------------


def test_the_totals_line_never_claims_more_bytes_than_exist(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.write_bytes(b"x" * 6)
    b.write_bytes(b"y" * 6)
    pagecache.warm(a)
    pagecache.warm(b)
    done = run("info", "-s", str(a), str(b))
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert "resident 2/2 pages, 100.0%" in line
    sizes = re.findall(r"(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB)\b", line)
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    assert sizes and all(float(n) * units[u] <= 12 for n, u in sizes), line


# ---- files that cannot be mapped: one decision --------------------------------------------


def sys_file() -> str:
    for path in (
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/uevent_seqnum",
        "/sys/kernel/profiling",
    ):
        if os.path.exists(path):
            return path
    pytest.skip("no readable /sys file")


@linux_only
def test_a_pseudo_file_is_refused_by_every_function() -> None:
    path = sys_file()
    for call in (
        lambda: pagecache.residency(path),
        lambda: pagecache.warm(path),
        lambda: pagecache.evict(path),
        lambda: pagecache.residency_map(path),
        lambda: list(pagecache.resident_ranges(path)),
        lambda: pagecache.lock([path]),
    ):
        with pytest.raises(iommap.Error) as ei:
            call()
        assert ei.value.reason == "enodev" and "/sys pseudo-file" in str(ei.value)
    (result,) = list(pagecache.walk([path]))
    assert isinstance(result, pagecache.FileError)
    assert result.reason == "enodev" and "/sys pseudo-file" in result.message


@linux_only
@pytest.mark.parametrize("command", ["info", "warm", "evict", "lock"])
def test_a_pseudo_file_is_refused_by_every_command(command: str) -> None:
    path = sys_file()
    done = run(command, path)
    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.startswith(f"iommap {command}: {path}: cannot map a /sys pseudo-file")
    assert len(done.stderr.splitlines()) == 1


def test_a_socket_is_refused_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    try:
        with pytest.raises(iommap.Error) as ei:
            pagecache.residency(path)
        assert isinstance(ei.value, OSError)
        assert ei.value.reason == "enxio" and "socket" in str(ei.value)
        for command in ("info", "warm", "evict", "lock"):
            done = run(command, path)
            no_traceback(done)
            assert done.returncode == 1
            assert done.stderr.startswith(f"iommap {command}: {path}: cannot map a socket")
            assert len(done.stderr.splitlines()) == 1
    finally:
        server.close()


# ---- work bounded by what is resident ---------------------------------------------------


@whole_file_fits
@linux_only
def test_verbose_json_of_a_huge_sparse_file_is_bounded_by_resident_pages(
    tmp_path: Path,
) -> None:
    if not pagecache.cachestat_available():
        pytest.skip("without cachestat(2), mincore must look at every page")
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB, no block of it on disk
    with iommap.open(path, "read") as m:  # two pages in memory, no read-ahead
        m.advise(0, 0, "random")
        m.pread((1 << 39) + 5 * PAGE, 2 * PAGE)
    trace = tmp_path / "trace"
    done = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=mincore", "-o", str(trace), *COMMAND]
        + ["info", "-v", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=300 * SLOWDOWN,
    )
    assert done.returncode == 0, done.stderr
    (f,) = json.loads(done.stdout)["files"]
    first = (1 << 39) // PAGE + 5
    assert f["resident_ranges"] == [[first, first + 2]]
    calls = [line for line in trace.read_text().splitlines() if "mincore(" in line]
    # A 256 MiB chunk per mincore call would be 4096 calls over 1 TiB.
    assert len(calls) <= 4, len(calls)


# ---- evict: the words match what it does ------------------------------------------------


@linux_only
def test_evict_starts_the_write_back_of_dirty_pages(tmp_path: Path) -> None:
    if not pagecache.cachestat_available():
        pytest.skip("the dirty and writeback counts need cachestat(2)")
    path = droppable(random_file(tmp_path / "dirty.bin", 256 * PAGE))
    with open(path, "r+b") as f:
        f.write(b"d" * (256 * PAGE))  # dirty, not synced
    before = pagecache.residency(path)
    if not before.dirty_pages:
        pytest.skip("the kernel wrote the pages back already")
    after = pagecache.evict(path)
    # posix_fadvise(DONTNEED) starts the write-back of the dirty pages (it
    # does not wait for it): none is left dirty; those being written stay
    # cached until the write completes.
    assert after.dirty_pages == 0
    assert (after.resident_pages or 0) >= (after.writeback_pages or 0)
    assert path.read_bytes() == b"d" * (256 * PAGE)
    helps = run("evict", "--help").stdout
    assert "starts writing them back" in " ".join(helps.split())


# ---- deep trees ---------------------------------------------------------------------------


def test_a_5000_level_tree_walks_without_recursion(tmp_path: Path) -> None:
    # Names as short as they go: a path of 5000 levels is longer than
    # PATH_MAX, and the walk reaches every level all the same (each file is
    # opened relative to its directory's descriptor, never by its path).
    root = tmp_path / "t"
    root.mkdir()
    try:
        fd = os.open(root, os.O_RDONLY)
        try:
            for _ in range(5000):
                os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
                os.mkdir("d", dir_fd=fd)
                below = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = below
        finally:
            os.close(fd)
        walk = pagecache.walk([root])
        results = list(walk)
        files = [r for r in results if isinstance(r, pagecache.FileResidency)]
        errors = [r for r in results if isinstance(r, pagecache.FileError)]
        assert len(files) == 5000 and errors == []
        assert files[-1].path == str(root / "f")
        assert walk.totals.files == 5000 and walk.totals.directories == 5001
        done = run("info", "-s", str(root))
        no_traceback(done)
        assert done.returncode == 0
        assert "files 5000  directories 5001" in done.stdout
    finally:
        _remove_deep(tmp_path, "t")


def _remove_deep(parent: Path, name: str) -> None:
    """rm -rf of parent/name, however deep: neither rm -rf nor shutil.rmtree
    (which recurses) reaches past PATH_MAX.  Depth first, by descriptor,
    never more than 100 levels open: a directory deeper than that is moved
    up to `parent` and removed in its turn."""
    top = os.open(parent, os.O_RDONLY)
    pieces = [name]
    # Each level open: its descriptor, its name in the level above, and its
    # subdirectories still to remove.
    stack: list[tuple[int, str, list[str]]] = []

    def enter(name: str, above: int) -> None:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=above)
        subdirs = []
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
        stack.append((fd, name, subdirs))

    try:
        while pieces:
            enter(pieces.pop(), top)
            while stack:
                fd, here, subdirs = stack[-1]
                if not subdirs:
                    stack.pop()
                    os.close(fd)
                    os.rmdir(here, dir_fd=stack[-1][0] if stack else top)
                elif len(stack) < 100:
                    enter(subdirs.pop(), fd)
                else:
                    cut = f"{name}.cut{len(pieces)}"
                    while os.path.lexists(os.path.join(parent, cut)):
                        cut += "+"
                    os.rename(subdirs.pop(), cut, src_dir_fd=fd, dst_dir_fd=top)
                    pieces.append(cut)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
        os.close(top)


# ---- every failure: a message and an exit status ------------------------------------------


@pytest.mark.parametrize("mode", ["foreground", "json", "daemon"])
def test_lock_with_a_pidfile_that_cannot_be_written(tmp_path: Path, mode: str) -> None:
    path = random_file(tmp_path / "f.bin", 4 * PAGE)
    pidfile = tmp_path / "no" / "such" / "dir" / "x.pid"
    args = ["lock", "-P", str(pidfile), str(path)]
    if mode == "json":
        args.append("--json")
    if mode == "daemon":
        args.append("-d")
    done = run(*args)
    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.startswith("iommap lock: ") and len(done.stderr.splitlines()) == 1
    assert str(pidfile) in done.stderr and "No such file or directory" in done.stderr
    if mode == "json":
        doc = json.loads(done.stdout)
        assert doc["locked"] is False
        assert [e["reason"] for e in doc["errors"]] == ["enoent"]
    else:
        assert done.stdout == ""


def test_sigterm_during_info_json_leaves_a_whole_document(tmp_path: Path) -> None:
    # About 40 KiB of JSON: more than the output's buffer, less than a pipe's.
    for i in range(100):
        (tmp_path / f"file-{i:04}-{'x' * 80}").write_bytes(b"x")
    names = "".join(f"{p}\n" for p in sorted(tmp_path.iterdir()))
    # Unbuffered, the records reach the pipe as they are written, whatever
    # the interpreter's buffer (8 KiB up to 3.13, 128 KiB from 3.14).
    child = subprocess.Popen(
        [*COMMAND, "info", "--json", "-b", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # A child that never starts its output fails the test instead of hanging it.
    watchdog = threading.Timer(60 * SLOWDOWN, child.kill)
    watchdog.start()
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(names.encode())
        child.stdin.flush()  # the list stays open: info waits for more
        first = child.stdout.read(1)  # output has begun
        child.send_signal(signal.SIGTERM)
        out = first + child.stdout.read()
        assert child.wait(30 * SLOWDOWN) == 128 + signal.SIGTERM
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.stderr is not None
    err = child.stderr.read().decode()
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    # A file counted by the walk may have been stopped before its record.
    assert doc["totals"]["files"] - 1 <= len(doc["files"]) <= doc["totals"]["files"]


@linux_only
def test_pseudo_files_met_in_a_tree_are_left_out_as_fifos_are() -> None:
    tree = "/sys/kernel/mm/transparent_hugepage"
    if not os.path.isdir(tree):
        pytest.skip(f"no {tree}")
    walk = pagecache.walk([tree])
    assert [r for r in walk if isinstance(r, pagecache.FileResidency)] == []
    t = walk.totals
    assert (t.files, t.errors) == (0, 0) and t.skipped > 0


def test_a_path_with_a_nul_byte_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    good = random_file(tmp_path / "good", PAGE)
    done = run("info", "--json", "-b", "-", input=f"a\0b\n{good}\n")
    no_traceback(done)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert [f["path"] for f in doc["files"]] == [str(good)]
    assert [(e["path"], e["reason"]) for e in doc["errors"]] == [("a\0b", "einval")]


@linux_only
@pytest.mark.parametrize("command", ["info", "lock"])
def test_a_list_that_fails_while_read_is_a_message(command: str) -> None:
    # Reading /proc/self/mem at offset 0 fails with EIO.
    done = run(command, "--json", "-b", "/proc/self/mem")
    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr == f"iommap {command}: /proc/self/mem: Input/output error\n"
    doc = json.loads(done.stdout)
    assert [(e["path"], e["reason"]) for e in doc["errors"]] == [("/proc/self/mem", "eio")]


def test_a_closed_stdin_list_is_a_message(tmp_path: Path) -> None:
    done = run("info", "-b", "-", stdin=subprocess.DEVNULL, pass_fds=())
    assert done.returncode == 0  # an empty list: nothing to do
    closed = subprocess.run(
        [*COMMAND, "info", "-b", "-"], stdin=None, capture_output=True, text=True,
        preexec_fn=lambda: os.close(0), timeout=60 * SLOWDOWN,
    )  # fmt: skip
    no_traceback(closed)
    assert closed.returncode == 1
    assert closed.stderr == "iommap info: -: standard input is closed\n"


def test_lock_offers_no_summary_option_it_would_ignore(tmp_path: Path) -> None:
    path = random_file(tmp_path / "f", PAGE)
    done = run("lock", "-s", str(path))
    assert done.returncode == 2 and "unrecognized arguments: -s" in done.stderr
