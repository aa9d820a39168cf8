"""The command line, driven as a user drives it: the installed `iommap`
script in a subprocess, on real files, checking output and exit status,
with --json parsed."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import iommap

PAGE = mmap.PAGESIZE
SCRIPT = Path(sys.executable).with_name("iommap")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "iommap"]


def run(*args: str, cwd: Path | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=60, **kwargs
    )


def run_json(*args: str, cwd: Path | None = None, status: int = 0) -> dict[str, Any]:
    result = run(*args, "--json", cwd=cwd)
    assert result.returncode == status, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def make_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        os.fsync(f.fileno())
    return path


def resident_pages(path: Path) -> int:
    with iommap.open(path, "read") as m:
        return m.resident() // PAGE


def cache_can_drop(path: Path) -> bool:
    """Whether this file system lets posix_fadvise drop pages (tmpfs cannot)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident_pages(path) == 0


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_file(tmp_path / "data.bin", 40 * PAGE + 123)


# ---- help, version, usage ------------------------------------------------------


def test_help_lists_every_command_with_examples_and_exit_statuses() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("info", "warm", "evict", "lock", "demo"):
        assert f"    {command} " in result.stdout
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


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["info"], ["info", "--bogus", "x"]])
def test_bad_usage_exits_2_with_a_usage_line(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: iommap" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("command", ["info", "warm", "evict", "demo"])
def test_json_is_one_document_on_one_line(command: str, data: Path) -> None:
    args = [command, "--json"] + ([] if command == "demo" else [str(data), str(data.parent)])
    result = run(*args)
    assert result.returncode == (0 if command == "demo" else 1)
    line, rest = result.stdout.split("\n", 1)
    assert rest == "" and json.loads(line)["command"] == command


# ---- info -----------------------------------------------------------------------


def test_info_reports_size_pages_and_residency(data: Path) -> None:
    doc = run_json("info", str(data))
    assert doc["command"] == "info" and doc["page_size"] == PAGE and doc["errors"] == []
    (f,) = doc["files"]
    assert f["path"] == str(data) and f["size"] == 40 * PAGE + 123 and f["pages"] == 41
    assert 0 <= f["resident_pages"] <= 41
    assert f["resident_bytes"] == min(f["resident_pages"] * PAGE, f["size"])
    assert f["percent"] == round(100 * f["resident_pages"] / 41, 2)
    assert "map" not in f

    text = run("info", str(data))
    assert text.returncode == 0 and text.stderr == ""
    header, row = text.stdout.splitlines()
    assert header.split() == ["SIZE", "PAGES", "RESIDENT", "%", "FILE"]
    assert row.split()[2] == "41" and row.endswith(str(data))


def test_info_verbose_map_after_warm_shows_every_page(data: Path) -> None:
    assert run("warm", str(data)).returncode == 0
    (f,) = run_json("info", "-v", str(data))["files"]
    assert f["resident_pages"] == 41 and f["percent"] == 100.0
    assert f["map"] == "O" * 41  # one cell per page up to 64 pages
    assert f["resident_ranges"] == [[0, 41]]

    lines = run("info", "-v", str(data)).stdout.splitlines()
    assert lines[2] == "[" + "O" * 41 + "]"


def test_info_verbose_map_of_a_partly_resident_file(tmp_path: Path) -> None:
    path = make_file(tmp_path / "big.bin", 256 * PAGE)
    if not cache_can_drop(path):
        pytest.skip("this file system keeps pages in memory (tmpfs?)")
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
    assert f == {
        "path": str(tmp_path / "empty"),
        "size": 0,
        "pages": 0,
        "residency_known": True,
        "resident_pages": 0,
        "resident_bytes": 0,
        "percent": 0.0,
        "map": "",
        "resident_ranges": [],
    }


def test_info_goes_on_past_bad_files_and_exits_1(data: Path, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # refused by iommap.open, which never blocks
    args = [str(tmp_path / "missing"), str(tmp_path / "dir"), str(tmp_path / "fifo"), str(data)]
    doc = run_json("info", *args, status=1)
    assert [f["path"] for f in doc["files"]] == [str(data)]
    assert [(e["path"], e["reason"]) for e in doc["errors"]] == [
        (args[0], "enoent"),
        (args[1], "eisdir"),
        (args[2], "enodev"),
    ]

    text = run("info", *args)
    assert text.returncode == 1
    assert text.stderr.splitlines() == [
        f"iommap info: {args[0]}: No such file or directory",
        f"iommap info: {args[1]}: Is a directory",
        f"iommap info: {args[2]}: cannot map a FIFO: only regular files and block devices"
        " can be mapped",
    ]
    assert text.stdout.splitlines()[1].endswith(str(data))


def _drop_dac_capabilities() -> None:
    """In the child: make root obey file permissions (PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            os._exit(99)


def test_permission_denied_is_reported_per_file(data: Path, tmp_path: Path) -> None:
    secret = make_file(tmp_path / "secret.bin", PAGE)
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
    # write; the CLI must not print that as a fact.
    if os.geteuid() != 0:
        pytest.skip("needs a file owned by another user: run as root")
    path = make_file(tmp_path / "theirs.bin", 8 * PAGE)
    os.chown(path, 65534, 65534)  # nobody
    path.chmod(0o444)
    tmp_path.chmod(0o755)
    result = run("info", "-v", "--json", str(path), preexec_fn=_drop_owner_capabilities)
    if result.returncode == 99:
        pytest.skip("cannot drop CAP_FOWNER here")
    assert result.returncode == 0, result.stderr
    (f,) = json.loads(result.stdout)["files"]
    assert f["residency_known"] is False and f["pages"] == 8
    assert f["resident_pages"] is f["percent"] is f["map"] is f["resident_ranges"] is None

    for command in ("info", "evict"):
        text = run(command, str(path), preexec_fn=_drop_owner_capabilities)
        assert text.returncode == 0
        assert text.stdout.splitlines()[1].split()[-3:-1] == ["?", "?"]
        assert "residency shown as ?" in text.stderr
    # As the owner (root keeps CAP_FOWNER) the counts are real.
    (f,) = run_json("info", str(path))["files"]
    assert f["residency_known"] is True and f["resident_pages"] is not None


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    paths = [str(make_file(tmp_path / f"f{i}", PAGE)) for i in range(300)]
    reader = subprocess.Popen(
        [*COMMAND, "info", *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # as `| head -1` does
    stderr = reader.stderr.read().decode()
    reader.wait(30)
    assert "Traceback" not in stderr


# ---- warm and evict -------------------------------------------------------------


def test_evict_then_warm(data: Path) -> None:
    run("warm", str(data))
    doc = run_json("evict", str(data))
    (f,) = doc["files"]
    assert doc["command"] == "evict" and doc["errors"] == []
    assert f["resident_pages_before"] == 41 and f["pages"] == 41
    if cache_can_drop(data):
        assert f["resident_pages"] == 0 and f["percent"] == 0.0
        assert resident_pages(data) == 0

    doc = run_json("warm", str(data))
    (f,) = doc["files"]
    assert doc["command"] == "warm" and doc["errors"] == []
    assert f["resident_pages"] == 41 and f["percent"] == 100.0 and f["seconds"] >= 0
    assert resident_pages(data) == 41

    text = run("evict", str(data))
    assert text.returncode == 0 and text.stderr == ""
    assert text.stdout.splitlines()[0].split() == [
        "SIZE",
        "PAGES",
        "BEFORE",
        "RESIDENT",
        "%",
        "FILE",
    ]


def test_evict_writes_dirty_pages_back_first(tmp_path: Path) -> None:
    path = make_file(tmp_path / "dirty.bin", 16 * PAGE)
    with iommap.open(path) as m:
        m.pwrite(0, b"x" * (16 * PAGE))  # dirty, not synced; unmapped at close
    (f,) = run_json("evict", str(path))["files"]
    if cache_can_drop(path):
        assert f["resident_pages"] == 0
    assert path.read_bytes() == b"x" * (16 * PAGE)


def test_warm_and_evict_report_bad_files(data: Path, tmp_path: Path) -> None:
    for command in ("warm", "evict"):
        doc = run_json(command, str(tmp_path), str(data), status=1)
        assert [e["reason"] for e in doc["errors"]] == ["eisdir"]
        assert [f["path"] for f in doc["files"]] == [str(data)]


def _run_on_terminal(args: list[str]) -> tuple[int, str, bytes]:
    """Run with stderr on a pseudo-terminal; return status, stdout, terminal bytes."""
    import pty

    main_fd, child_fd = pty.openpty()
    child = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=child_fd)
    os.close(child_fd)
    assert child.stdout is not None
    stdout = child.stdout.read().decode()
    status = child.wait(60)
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


# ---- lock -------------------------------------------------------------------------


def _locked_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck line")


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
        assert child.wait(10) == 0
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
        assert child.wait(10) == 0
        assert child.stdout.read() == "released\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_lock_is_all_or_none(data: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    doc = run_json("lock", str(data), str(tmp_path / "missing"), status=1)
    assert time.monotonic() - started < 30  # did not wait for a signal
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
