"""The command line, driven as a user drives it: the installed `iommap`
script in a subprocess, on real files, checking output and exit status,
with --json parsed."""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    COMMAND,
    PAGE,
    SLOWDOWN,
    interrupted,
    need_root,
    needs_real_mlock,
    random_file,
    resident_pages,
    run_iommap,
    whole_file_fits,
)

import iommap
from iommap import pagecache

run = run_iommap


def run_json(*args: str, cwd: Path | None = None, status: int = 0) -> dict[str, Any]:
    result = run(*args, "--json", cwd=cwd)
    assert result.returncode == status, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def cache_can_drop(path: Path) -> bool:
    """Whether this file system lets pages be dropped (tmpfs cannot)."""
    return pagecache.memory_filesystem(path) is None and hasattr(os, "posix_fadvise")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return random_file(tmp_path / "data.bin", 40 * PAGE + 123)


# ---- help, version, usage ------------------------------------------------------


def test_help_lists_every_command_with_examples_and_exit_statuses() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("info", "warm", "evict", "lock", "demo", "bench", "bench-cli"):
        assert re.search(rf"\n    {command}\s", result.stdout), command
    assert "examples:" in result.stdout and "exit status:" in result.stdout


@pytest.mark.parametrize("command", ["info", "warm", "evict", "lock", "demo"])
def test_each_command_has_help_with_examples(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert f"usage: iommap {command}" in result.stdout
    assert "--json" in result.stdout and "examples:" in result.stdout


def test_version_from_the_script_and_python_m() -> None:
    expected = f"iommap {iommap.__version__}\n"
    assert run("--version").stdout == expected
    module = subprocess.run(
        [sys.executable, "-m", "iommap", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0 and module.stdout == expected


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        ([], "usage: iommap [-h]"),
        (["frobnicate"], "usage: iommap [-h]"),
        (["info"], "usage: iommap info "),
        (["info", "--bogus", "x"], "usage: iommap info "),
        (["warm", "x", "--bogus"], "usage: iommap warm "),
        (["evict", "-m", "lots", "x"], "usage: iommap evict "),
        (["info", "-o", "NOPE", "x"], "usage: iommap info "),
        (["info", "-p", "9k-1k", "x"], "usage: iommap info "),
        (["lock", "-0", "x"], "usage: iommap lock "),
    ],
)
def test_bad_usage_shows_the_sub_commands_usage_and_exits_2(args: list[str], usage: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(usage), result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["info", "warm", "evict", "lock"])
def test_bad_usage_with_json_prints_a_json_error_document(command: str) -> None:
    result = run(command, "--json", "--bogus", "x")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["command"] == command
    assert doc["error"] == {"reason": "usage", "message": "unrecognized arguments: --bogus"}
    assert doc["usage"].startswith(f"usage: iommap {command} ")
    assert result.stderr.startswith(f"usage: iommap {command} ")


@pytest.mark.parametrize("command", ["info", "warm", "evict", "demo"])
def test_json_is_one_document_on_one_line(command: str, data: Path) -> None:
    args = [command, "--json"] + ([] if command == "demo" else [str(data), str(data) + ".no"])
    result = run(*args)
    assert result.returncode == (0 if command == "demo" else 1)
    line, rest = result.stdout.split("\n", 1)
    assert rest == "" and json.loads(line)["command"] == command


# ---- info -----------------------------------------------------------------------


def test_info_reports_size_pages_and_residency(data: Path) -> None:
    run("warm", str(data))
    doc = run_json("info", str(data))
    assert doc["command"] == "info" and doc["page_size"] == PAGE and doc["errors"] == []
    (f,) = doc["files"]
    assert f["path"] == str(data) and f["size"] == 40 * PAGE + 123 and f["total_pages"] == 41
    assert f["resident_pages"] == 41 and f["residency_known"] is True
    assert f["resident_bytes"] == 41 * PAGE and f["percent"] == 100.0  # whole pages
    assert (f["offset"], f["length"]) == (0, f["size"])
    assert "map" not in f and "path_base64" not in f
    t = doc["totals"]
    assert (t["files"], t["directories"], t["errors"], t["total_pages"]) == (1, 0, 0, 41)
    assert doc["interrupted"] is False

    text = run("info", str(data))
    assert text.returncode == 0 and text.stderr == ""
    header, row = text.stdout.splitlines()  # one file: no totals line
    assert header.split() == ["SIZE", "TOTAL_PAGES", "PAGES", "RES", "PERCENT", "FILE"]
    # PAGES is the resident pages, as in fincore.
    assert row.split()[:6] == ["160.1", "KiB", "41", "41", "164.0", "KiB"]
    assert row.endswith(f"100.0%  {data}")


def test_info_verbose_map_after_warm_shows_every_page(data: Path) -> None:
    assert run("warm", str(data)).returncode == 0
    (f,) = run_json("info", "-v", str(data))["files"]
    assert f["resident_pages"] == 41 and f["percent"] == 100.0
    assert f["map"] == "O" * 41  # one cell per page up to 64 pages
    assert f["resident_ranges"] == [[0, 41]]

    lines = run("info", "-v", str(data)).stdout.splitlines()
    assert lines[2] == "[" + "O" * 41 + "]"


def test_info_verbose_map_of_a_partly_resident_file(tmp_path: Path) -> None:
    path = random_file(tmp_path / "big.bin", 256 * PAGE)
    if not cache_can_drop(path):
        pytest.skip("this file system keeps pages in memory (tmpfs?)")
    run("evict", str(path))
    with iommap.open(path, "read") as m:
        m.advise(0, 0, "random")  # no read-ahead: only the pages read come in
        for page in (*range(8), 128, 129):
            m.pread(page * PAGE, 1)
    (f,) = run_json("info", "-v", str(path))["files"]
    assert f["resident_ranges"] == [[0, 8], [128, 130]]
    assert f["resident_pages"] == 10
    assert f["map"] == "OO" + " " * 30 + "o" + " " * 31  # 4 pages a cell


def test_info_of_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").touch()
    (f,) = run_json("info", "-v", str(tmp_path / "empty"))["files"]
    assert f["size"] == f["total_pages"] == f["resident_pages"] == f["resident_bytes"] == 0
    assert f["percent"] == 0.0 and f["map"] == "" and f["resident_ranges"] == []


def test_info_goes_on_past_bad_files_and_exits_1(data: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # refused by iommap.open, which never blocks
    args = [str(tmp_path / "missing"), str(tmp_path / "fifo"), str(data)]
    doc = run_json("info", *args, status=1)
    assert [f["path"] for f in doc["files"]] == [str(data)]
    assert [(e["path"], e["reason"]) for e in doc["errors"]] == [
        (args[0], "enoent"),
        (args[1], "enodev"),
    ]
    assert doc["totals"]["errors"] == 2

    text = run("info", *args)
    assert text.returncode == 1
    assert text.stderr.splitlines() == [
        f"iommap info: {args[0]}: No such file or directory",
        f"iommap info: {args[1]}: cannot map a FIFO: only regular files and block devices"
        " can be mapped",
    ]
    assert text.stdout.splitlines()[1].endswith(str(data))
    assert text.stdout.splitlines()[2].startswith("files 1  directories 0  errors 2  ")


def _drop_dac_capabilities() -> None:
    """In the child: make root obey file permissions (PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            os._exit(99)


def test_permission_denied_is_reported_per_file(data: Path, tmp_path: Path) -> None:
    secret = random_file(tmp_path / "secret.bin", PAGE)
    secret.chmod(0)
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        if not sys.platform.startswith("linux"):
            pytest.skip("root reads any file; dropping that needs Linux capabilities")
        kwargs["preexec_fn"] = _drop_dac_capabilities
    result = run("info", "--json", str(secret), str(data), **kwargs)
    if result.returncode == 99:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["errors"] == [
        {"path": str(secret), "reason": "eacces", "message": "Permission denied"}
    ]
    assert [f["path"] for f in doc["files"]] == [str(data)]
    assert f"iommap info: {secret}: Permission denied" in result.stderr


def _drop_owner_capabilities() -> None:
    """In the child: make root an ordinary user before a file it does not own."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 3):  # CAP_DAC_OVERRIDE, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            os._exit(99)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux mincore rule")
def test_residency_linux_hides_is_unknown_not_100_percent(tmp_path: Path) -> None:
    # mincore(2) says "all resident" for a file the caller neither owns nor may
    # write, and cachestat(2) refuses; the CLI must not print that as a fact.
    need_root("needs a file owned by another user: run as root")
    path = random_file(tmp_path / "theirs.bin", 8 * PAGE)
    os.chown(path, 65534, 65534)  # nobody
    path.chmod(0o444)
    tmp_path.chmod(0o755)
    result = run("info", "-v", "--json", str(path), preexec_fn=_drop_owner_capabilities)
    if result.returncode == 99:
        pytest.skip("cannot drop CAP_FOWNER here")
    assert result.returncode == 0, result.stderr
    (f,) = json.loads(result.stdout)["files"]
    assert f["residency_known"] is False and f["total_pages"] == 8
    assert f["resident_pages"] is f["percent"] is f["map"] is f["resident_ranges"] is None
    assert json.loads(result.stdout)["totals"]["unknown"] == 1

    for command in ("info", "evict"):
        text = run(
            command, "-o", "PAGES,PERCENT,FILE", str(path), preexec_fn=_drop_owner_capabilities
        )
        assert text.returncode == 0
        assert text.stdout.splitlines()[1].split()[:2] == ["?", "?"]
        assert "residency shown as ?" in text.stderr
    # As the owner (root keeps CAP_FOWNER) the counts are real.
    (f,) = run_json("info", str(path))["files"]
    assert f["residency_known"] is True and f["resident_pages"] is not None


# ---- output that cannot be written ---------------------------------------------------


def test_a_closed_pipe_exits_141_without_a_word(tmp_path: Path) -> None:
    # More output than stdout's buffer (128 KiB from Python 3.14) and the
    # pipe's together, so that writes go on after the reader is gone.
    paths = [str(random_file(tmp_path / f"f{i}", PAGE)) for i in range(3000)]
    reader = subprocess.Popen(
        [*COMMAND, "info", "-r", *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # as `| head -1` does
    stderr = reader.stderr.read().decode()
    assert reader.wait(30 * SLOWDOWN) == 141
    assert stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_a_message_and_exit_1(data: Path) -> None:
    with open("/dev/full", "w") as full:
        result = run("info", str(data), stdout=full, stderr=subprocess.PIPE, capture_output=False)
    assert result.returncode == 1
    assert result.stderr == "iommap: cannot write output: No space left on device\n"
    with open("/dev/full", "w") as full:
        result = run(
            "info", "--json", str(data), stdout=full, stderr=subprocess.PIPE, capture_output=False
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_a_closed_stdout_is_a_message_and_exit_1(data: Path) -> None:
    result = run("info", str(data), stdout=subprocess.DEVNULL, capture_output=False,
                 stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "iommap: cannot write output: standard output is closed\n"
    # Nothing to write, nothing to complain about.
    quiet = run("info", "-q", str(data), stdout=subprocess.DEVNULL, capture_output=False,
                stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_name_the_output_cannot_encode_is_escaped(tmp_path: Path) -> None:
    path = random_file(tmp_path / "caf\u00e9.bin", PAGE)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    result = run("info", "-o", "SIZE,FILE", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].endswith("caf\\xe9.bin")
    doc = json.loads(run("info", "--json", str(path), env=env).stdout)
    assert doc["files"][0]["path"] == str(path)  # JSON escapes it as \u00e9


@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_json_keeps_names_that_are_not_utf8_recoverable(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/data-\xff\xfe.bin"
    with open(raw, "wb") as f:
        f.write(b"x" * PAGE)
    doc = run_json("info", os.fsdecode(raw))
    (f,) = doc["files"]
    assert f["path"].endswith("data-\\xff\\xfe.bin")
    assert base64.b64decode(f["path_base64"]) == raw
    text = run("info", "-o", "FILE", os.fsdecode(raw))
    assert text.returncode == 0 and text.stdout.splitlines()[1].endswith("data-\\xff\\xfe.bin")


# ---- warm and evict -------------------------------------------------------------


def test_evict_then_warm(data: Path) -> None:
    run("warm", str(data))
    doc = run_json("evict", str(data))
    (f,) = doc["files"]
    assert doc["command"] == "evict" and doc["errors"] == []
    assert f["resident_pages_before"] == 41 and f["total_pages"] == 41
    if cache_can_drop(data):
        assert f["resident_pages"] == 0 and f["percent"] == 0.0
        assert resident_pages(data) == 0

    doc = run_json("warm", str(data))
    (f,) = doc["files"]
    assert doc["command"] == "warm" and doc["errors"] == []
    assert f["resident_pages"] == 41 and f["percent"] == 100.0
    assert resident_pages(data) == 41

    text = run("evict", str(data))
    assert text.returncode == 0 and text.stderr == ""
    assert text.stdout.splitlines()[0].split() == [
        "SIZE",
        "TOTAL_PAGES",
        "BEFORE",
        "PAGES",
        "RES",
        "PERCENT",
        "FILE",
    ]


def _dirty_file(path: Path, pages: int) -> Path:
    random_file(path, pages * PAGE)
    with open(path, "r+b") as f:
        os.fsync(f.fileno())
        f.seek(0)
        f.write(b"x" * (pages * PAGE))  # dirty, not synced
    return path


def test_evict_leaves_dirty_pages(tmp_path: Path) -> None:
    path = _dirty_file(tmp_path / "dirty.bin", 64)
    if not cache_can_drop(path):
        pytest.skip("tmpfs keeps every page")
    (f,) = run_json("evict", str(path))["files"]
    # No forced write-back: the pages not yet written when it ran stay.
    assert f["resident_pages_before"] == 64 and f["resident_pages"] > 0
    assert path.read_bytes() == b"x" * (64 * PAGE)


def test_evict_writeback_drops_dirty_pages(tmp_path: Path) -> None:
    # Straight from dirty: a plain evict first would start the write-back
    # itself and leave nothing for --writeback to do.
    path = _dirty_file(tmp_path / "dirty.bin", 64)
    if not cache_can_drop(path):
        pytest.skip("tmpfs keeps every page")
    (f,) = run_json("evict", "--writeback", "-o", "DIRTY_PAGES", str(path))["files"]
    assert (f["resident_pages_before"], f["resident_pages"]) == (64, 0)
    assert f["dirty_pages"] in (0, None)
    assert path.read_bytes() == b"x" * (64 * PAGE)


def test_evict_on_tmpfs_says_the_pages_cannot_go(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or pagecache.memory_filesystem(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    path = shm / f"iommap-test-{os.getpid()}.bin"
    try:
        path.write_bytes(b"x" * (4 * PAGE))
        result = run("evict", str(path))
        assert result.returncode == 0
        assert result.stderr == (
            f"iommap evict: {path}: on tmpfs, which keeps files only in memory:"
            " its pages cannot be evicted\n"
        )
        assert result.stdout.splitlines()[1].split()[3] == "4"  # still resident
    finally:
        path.unlink()


def test_warm_and_evict_report_bad_files(data: Path, tmp_path: Path) -> None:
    for command in ("warm", "evict"):
        doc = run_json(command, str(tmp_path / "missing"), str(data), status=1)
        assert [e["reason"] for e in doc["errors"]] == ["enoent"]
        assert [f["path"] for f in doc["files"]] == [str(data)]


def _run_on_terminal(args: list[str], columns: int = 80) -> tuple[int, str, bytes]:
    """Run with stderr on a pseudo-terminal of `columns` columns; return
    status, stdout, the terminal's bytes."""
    import fcntl
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    child = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=child_fd)
    os.close(child_fd)
    assert child.stdout is not None
    stdout = child.stdout.read().decode()
    status = child.wait(60 * SLOWDOWN)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    return status, stdout, seen


def test_warm_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)  # sparse: reading it costs no disk
    status, stdout, terminal = _run_on_terminal(["warm", str(big)])
    assert status == 0 and stdout.splitlines()[1].endswith(str(big))
    assert b"] 100.0%  64.0 MiB / 64.0 MiB" in terminal
    assert terminal.startswith(b"\r") and terminal.endswith(b"\r")  # erased when done

    status, _, terminal = _run_on_terminal(["warm", "--no-progress", str(big)])
    assert status == 0 and terminal == b""
    piped = run("warm", str(big))
    assert piped.returncode == 0 and piped.stderr == ""
    run("evict", str(big))


@pytest.mark.parametrize("columns", [20, 33, 200])
def test_the_progress_bar_never_wraps(tmp_path: Path, columns: int) -> None:
    big = tmp_path / ("a-rather-long-directory-name-" * 3) / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    status, _, terminal = _run_on_terminal(["warm", str(big)], columns)
    assert status == 0
    lines = [part for part in terminal.split(b"\r") if part.strip()]
    assert lines and all(len(line) <= columns - 1 for line in lines), lines
    assert b"100.0%" in lines[-1]
    run("evict", str(big))


def test_ctrl_c_during_warm_prints_what_was_done_and_exits_130(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(4):
        with open(tree / f"f{i}.bin", "wb") as f:
            f.truncate(1 << 30)  # sparse: warming reads zeros, no disk
    # One second in, it is inside the first gigabyte.
    returncode, out, err = interrupted([*COMMAND, "warm", "--json", str(tree)], after=1.0)
    assert returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True and len(doc["files"]) < 4
    assert doc["totals"]["files"] == len(doc["files"])
    assert b"interrupted at " in err and b"Traceback" not in err
    for name in tree.iterdir():
        pagecache.evict(name)


# ---- lock -------------------------------------------------------------------------


def _locked_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck line")


@needs_real_mlock
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_lock_holds_pages_until_interrupted(data: Path, tmp_path: Path, stop: int) -> None:
    (tmp_path / "empty").touch()
    child = subprocess.Popen(
        [*COMMAND, "lock", "--json", str(data), str(tmp_path / "empty")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        doc = json.loads(child.stdout.readline())  # once everything is locked
        assert doc["locked"] is True and doc["errors"] == []
        assert [f["locked_bytes"] for f in doc["files"]] == [40 * PAGE + 123, 0]
        assert resident_pages(data) == 41
        if Path("/proc/self/status").exists() and doc["pid"] == child.pid:
            assert _locked_kib(child.pid) * 1024 >= 41 * PAGE
        child.send_signal(stop)
        assert child.wait(10 * SLOWDOWN) == 0
        assert child.stdout.read() == ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_lock_text_output_and_release(data: Path) -> None:
    child = subprocess.Popen([*COMMAND, "lock", str(data)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("locked 1 file, 160.1 KiB in memory (pid ")
        assert first.endswith("); Ctrl-C to release\n")
        child.send_signal(signal.SIGINT)
        assert child.wait(10 * SLOWDOWN) == 0
        assert child.stdout.read() == "released\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_lock_is_all_or_none(data: Path, tmp_path: Path) -> None:
    doc = run_json("lock", str(data), str(tmp_path / "missing"), status=1)
    assert doc["locked"] is False and doc["files"] == []
    assert [e["reason"] for e in doc["errors"]] == ["enoent"]


# ---- demo -------------------------------------------------------------------------


def test_demo_json_tells_the_story(tmp_path: Path) -> None:
    doc = run_json("demo", "--dir", str(tmp_path))
    assert doc["command"] == "demo"
    reads = [s["read"] for s in doc["steps"] if "read" in s]
    assert reads[0] == "hello, mapped world"
    (fault,) = [s for s in doc["steps"] if "sigbus" in s]
    if fault["sigbus"]:
        assert fault["reason"] == "sigbus" and fault["errno"] == 14
    assert doc["steps"][-1]["closed"] is True
    assert list(tmp_path.iterdir()) == []  # the demo cleaned up


@whole_file_fits
def test_ctrl_c_in_the_middle_of_a_1_tib_file_answers(tmp_path: Path) -> None:
    # Without cachestat (forced here), info asks mincore 256 MiB of file at a
    # time; a 1 TiB sparse file takes minutes that way, and Ctrl-C is seen
    # between two of those calls.
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(1 << 40)
    code = (
        "import sys; from iommap import pagecache; pagecache._cachestat_missing = True; "
        "from iommap.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    returncode, out, err = interrupted(
        [sys.executable, "-c", code, "info", "--json", str(path)], after=1.0, timeout=30
    )
    assert returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["files"] == []
    assert f"interrupted at {path}".encode() in err
