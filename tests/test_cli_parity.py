"""Each row of the vmtouch and fincore parity tables in docs/cli.md: the
iommap option does what the peer's does, checked against the peer itself
where it is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    COMMAND,
    PAGE,
    SLOWDOWN,
    check_peers,
    need_root,
    needs_peer,
    needs_real_mlock,
    run_iommap,
)

from iommap import pagecache

ROOT = Path(__file__).resolve().parent.parent
VMTOUCH = shutil.which("vmtouch")
FINCORE = shutil.which("fincore")
needs_vmtouch = needs_peer("vmtouch")
needs_fincore = needs_peer("fincore")


@pytest.fixture(autouse=True)
def _peers_present() -> None:
    # Under IOMMAP_REQUIRE_PEERS=1 every comparison here must run.
    check_peers("vmtouch", "fincore")


run = run_iommap


def info_json(*args: str, status: int = 0, **kwargs: Any) -> dict[str, Any]:
    done = run("info", "--json", *args, **kwargs)
    assert done.returncode == status, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def names(doc: dict[str, Any]) -> list[str]:
    return [os.path.basename(f["path"]) for f in doc["files"]]


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()  # from 3.14 a file's buffer holds 128 KiB: fsync would miss it
        os.fsync(f.fileno())
    return path


def can_drop(path: Path) -> bool:
    return pagecache.memory_filesystem(path) is None


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    write(root / "a.idx", 3 * PAGE)
    write(root / "b.tmp", PAGE + 1)
    write(root / "sub" / "c.idx", 8 * PAGE)
    write(root / "sub" / "deeper" / "d.log", 2 * PAGE)
    return root


def vmtouch_totals(*args: str) -> dict[str, str]:
    assert VMTOUCH is not None
    out = subprocess.run([VMTOUCH, *args], capture_output=True, text=True, check=True).stdout
    return {k.strip(): v.strip() for k, v in re.findall(r"^\s*([\w ]+): (.*)$", out, re.M)}


def test_every_row_of_the_parity_tables_names_a_test_that_exists() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    tables = text[text.index("## vmtouch parity") : text.index("## Faster than vmtouch")]
    named = set(re.findall(r"`(test_\w+)`", tables))
    rows = [line for line in tables.splitlines() if line.startswith("| ") and "---" not in line]
    headers = [row for row in rows if row.endswith("| test |")]
    untested = [
        row
        for row in rows
        if row not in headers and "`test_" not in row and "not provided" not in row
    ]
    assert len(headers) == 2 and untested == [] and len(named) >= 15
    here = (ROOT / "tests" / "test_cli_parity.py").read_text()
    elsewhere = (ROOT / "tests" / "test_cli.py").read_text()
    for name in named:
        assert f"def {name}(" in here or f"def {name}(" in elsewhere, name


def test_a_missing_peer_fails_when_peers_are_required(tmp_path: Path) -> None:
    # CI sets IOMMAP_REQUIRE_PEERS=1: there, a comparison that cannot run is
    # a failure, never a skip or a silently shorter test.
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**os.environ, "PATH": str(bare)}
    test = f"{__file__}::test_quiet"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    for required, status in (("1", 1), ("0", 0)):
        env["IOMMAP_REQUIRE_PEERS"] = required
        done = subprocess.run(
            args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120 * SLOWDOWN
        )
        assert done.returncode == status, done.stdout + done.stderr
        assert ("IOMMAP_REQUIRE_PEERS=1 requires" in done.stdout) == (required == "1")


# ---- vmtouch ----------------------------------------------------------------------


@needs_vmtouch
def test_totals_match_vmtouch(tree: Path) -> None:
    pagecache.warm(tree / "a.idx")
    pagecache.evict(tree / "sub" / "c.idx")
    want = vmtouch_totals(str(tree))
    doc = info_json(str(tree))
    t = doc["totals"]
    assert str(t["files"]) == want["Files"] and str(t["directories"]) == want["Directories"]
    resident, total = want["Resident Pages"].split()[0].split("/")
    assert (str(t["resident_pages"]), str(t["total_pages"])) == (resident, total)
    assert t["seconds"] >= 0  # vmtouch's "Elapsed"

    summary = run("info", "-s", str(tree))
    assert summary.returncode == 0
    (line,) = summary.stdout.splitlines()  # the totals alone, as vmtouch prints
    assert line.startswith(f"files 4  directories 3  resident {resident}/{total} pages, ")
    assert re.search(r"elapsed \d+\.\d{3} s$", line)


@needs_vmtouch
def test_verbose_map_per_file(tree: Path) -> None:
    pagecache.warm(tree / "a.idx")
    lines = run("info", "-v", str(tree / "a.idx")).stdout.splitlines()
    assert lines[2] == "[OOO]"
    assert (
        "[OOO]"
        in subprocess.run(
            [str(VMTOUCH), "-v", str(tree / "a.idx")], capture_output=True, text=True
        ).stdout
    )


def test_warm_like_vmtouch_t(tree: Path) -> None:
    if not can_drop(tree):
        pytest.skip("tmpfs keeps every page")
    for _ in pagecache.walk([tree], "evict"):
        pass
    done = run("warm", "-s", str(tree))
    assert done.returncode == 0
    assert "resident 15/15 pages" in done.stdout
    assert pagecache.residency(tree / "sub" / "c.idx").resident_pages == 8


def test_evict_like_vmtouch_e(tree: Path) -> None:
    if not can_drop(tree):
        pytest.skip("tmpfs keeps every page")
    run("warm", str(tree))
    done = run("evict", "--json", str(tree))
    doc = json.loads(done.stdout)
    assert [f["resident_pages"] for f in doc["files"]] == [0, 0, 0, 0]
    assert [f["resident_pages_before"] for f in doc["files"]] == [3, 2, 8, 2]
    if VMTOUCH is not None:
        assert vmtouch_totals(str(tree))["Resident Pages"].startswith("0/15 ")


@needs_real_mlock
def test_lock_like_vmtouch_l(tree: Path) -> None:
    child = subprocess.Popen([*COMMAND, "lock", "--json", str(tree)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        doc = json.loads(child.stdout.readline())
        assert doc["locked"] is True and doc["locked_bytes"] == 14 * PAGE + 1
        status = Path(f"/proc/{doc['pid']}/status").read_text()
        locked_kib = int(re.search(r"VmLck:\s+(\d+)", status)[1])  # type: ignore[index]
        assert locked_kib * 1024 >= 13 * PAGE
        child.send_signal(signal.SIGTERM)
        assert child.wait(10 * SLOWDOWN) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@needs_real_mlock
def test_lock_daemon_with_pidfile(tree: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "lock.pid"
    done = run("lock", "--json", "-d", "-P", str(pidfile), str(tree))
    # The command returns once the files are locked, the locker stays behind.
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    pid = int(pidfile.read_text())
    try:
        assert doc["locked"] is True and doc["pid"] == pid
        status = Path(f"/proc/{pid}/status").read_text()
        assert int(re.search(r"VmLck:\s+(\d+)", status)[1]) * 1024 >= 13 * PAGE  # type: ignore[index]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30 * SLOWDOWN
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pidfile.exists()  # removed as it released the pages
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    failed = run("lock", "-d", "-P", str(pidfile), str(tree / "missing"))
    assert failed.returncode == 1 and not pidfile.exists()


def test_follow_symlinks(tree: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "o.bin", PAGE)
    (tree / "link.bin").symlink_to(outside)
    (tree / "linkdir").symlink_to(outside.parent)
    assert "o.bin" not in names(info_json(str(tree)))
    followed = names(info_json("-f", str(tree)))
    # link.bin and linkdir/o.bin are the same inode: counted once.
    assert followed.count("link.bin") + followed.count("o.bin") == 1 and len(followed) == 5
    assert len(info_json("-f", "--count-hard-links", str(tree))["files"]) == 6
    # Named on the command line, a symlink is followed without -f.
    assert names(info_json(str(tree / "link.bin"))) == ["link.bin"]
    if VMTOUCH is not None:
        assert vmtouch_totals(str(tree))["Files"] == "4"
        assert vmtouch_totals("-f", str(tree))["Files"] == "6"  # vmtouch: nlink 1 twice


def test_one_file_system(tree: Path) -> None:
    need_root("mounts a tmpfs: needs root", "unshare")
    mount = tree / "sub" / "mnt"
    mount.mkdir()
    # In a mount namespace of its own: the mount is gone with the process.
    script = (
        f"mount -t tmpfs none {mount} && head -c 8192 /dev/zero > {mount}/m.bin && "
        f"{' '.join(COMMAND)} info --json {tree} && echo && "
        f"{' '.join(COMMAND)} info --json -F {tree}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60 * SLOWDOWN,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    everything, one_fs = (json.loads(line) for line in done.stdout.split("\n") if line)
    assert "m.bin" in names(everything)
    assert "m.bin" not in names(one_fs) and one_fs["totals"]["skipped"] == 1


def test_ignore_and_include(tree: Path) -> None:
    assert names(info_json("-i", "*.tmp", "-i", "deeper", str(tree))) == ["a.idx", "c.idx"]
    assert names(info_json("-I", "*.idx", str(tree))) == ["a.idx", "c.idx"]
    assert names(info_json("--include", "*.log", str(tree))) == ["d.log"]
    if VMTOUCH is not None:
        assert vmtouch_totals("-i", "*.tmp", "-i", "deeper", str(tree))["Files"] == "2"
        assert vmtouch_totals("-I", "*.idx", str(tree))["Files"] == "2"


def test_max_size(tree: Path) -> None:
    doc = info_json("-m", "2K", str(tree))
    assert names(doc) == [] and doc["totals"]["skipped"] == 4
    assert names(info_json("-m", f"{2 * PAGE}", str(tree))) == ["b.tmp", "d.log"]
    assert names(info_json("--max-size", "1.5G", str(tree))) == [
        "a.idx",
        "b.tmp",
        "c.idx",
        "d.log",
    ]


def test_files_from_list(tree: Path, tmp_path: Path) -> None:
    a, c = tree / "a.idx", tree / "sub" / "c.idx"
    listing = tmp_path / "list"
    listing.write_text(f"{a}\n\n{c}\n")
    assert names(info_json("-b", str(listing))) == ["a.idx", "c.idx"]
    # NUL-separated, from stdin, a name with a newline in it.
    odd = write(tmp_path / "new\nline.bin", PAGE)
    found = subprocess.run(
        ["find", str(tree), str(odd), "-name", "*.bin", "-print0", "-o", "-name", "*.log",
         "-print0"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    done = run("info", "--json", "-0", "-b", "-", input=found.decode())
    assert done.returncode == 0, done.stderr
    assert sorted(names(json.loads(done.stdout))) == ["d.log", "new\nline.bin"]
    # Paths on the command line come first, then the list.
    assert names(info_json(str(c), "-b", str(listing))) == ["c.idx", "a.idx"]
    missing = run("info", "-b", str(tmp_path / "no-list"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == f"iommap info: {tmp_path / 'no-list'}: No such file or directory\n"


def test_hard_links_once(tree: Path) -> None:
    os.link(tree / "a.idx", tree / "sub" / "a-again.idx")
    doc = info_json(str(tree), str(tree / "a.idx"))
    assert names(doc).count("a.idx") + names(doc).count("a-again.idx") == 1
    assert doc["totals"]["files"] == 4
    counted = info_json("--count-hard-links", str(tree))
    assert counted["totals"]["files"] == 5
    if VMTOUCH is not None:
        assert vmtouch_totals(str(tree))["Files"] == "4"
        assert vmtouch_totals("-h", str(tree))["Files"] == "5"


@pytest.mark.parametrize(
    ("spec", "offset", "pages"),
    [("4k-12k", 4096, 2), ("-8k", 0, 2), ("8k", 0, 2), ("12k-", 12288, 5), ("-", 0, 8)],
)
def test_page_range(tree: Path, spec: str, offset: int, pages: int) -> None:
    if PAGE != 4096:
        pytest.skip("the ranges are written for 4 KiB pages")
    c = tree / "sub" / "c.idx"
    pagecache.warm(c)
    (f,) = info_json("-p", spec, str(c))["files"]
    assert (f["offset"], f["total_pages"], f["resident_pages"]) == (offset, pages, pages)
    if VMTOUCH is not None:
        want = vmtouch_totals("-p", spec, str(c))["Resident Pages"].split()[0]
        assert want == f"{pages}/{pages}"


def test_quiet(tree: Path) -> None:
    done = run("info", "-q", str(tree), str(tree / "missing"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("iommap info: ")  # errors still go to stderr


# ---- fincore ----------------------------------------------------------------------


@needs_fincore
@pytest.mark.parametrize("columns", ["RES,PAGES,SIZE,FILE", "PAGES,FILE", "SIZE,RES"])
def test_fincore_columns_match(tree: Path, columns: str) -> None:
    pagecache.warm(tree / "a.idx")
    paths = [str(tree / "a.idx"), str(tree / "b.tmp")]
    for flags in (["-b", "-r", "-n"], ["-b", "-r"]):
        want = subprocess.run(
            [str(FINCORE), *flags, "-o", columns, *paths], capture_output=True, text=True
        ).stdout
        got = run("info", "--bytes", *flags[1:], "-o", columns, *paths)
        assert got.returncode == 0
        assert got.stdout == want


# Names that --raw must escape as fincore does: a backslash (else the literal
# name a\xff and the byte name a\xff print the same), a newline (else a row
# splits), blanks, control bytes, and every byte past ASCII.
ESCAPED_NAMES = [b"a\\xff", b"a\xff", b"new\nline", b"tab\tx", b"sp ace", b"ctl\x01", b"del\x7f"]
ESCAPED_NAMES += [b"caf\xc3\xa9", b"back\\slash", b'q"uote']


@needs_fincore
@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_raw_names_are_escaped_as_fincore_escapes_them(tmp_path: Path) -> None:
    paths = []
    for name in ESCAPED_NAMES:
        path = os.path.join(os.fsencode(tmp_path), name)
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        paths.append(os.fsdecode(path))
    for flags in (["-b", "-r", "-n"], ["-b", "-r"]):
        want = subprocess.run(
            [str(FINCORE), *flags, "-o", "RES,PAGES,SIZE,FILE", *paths], capture_output=True
        ).stdout
        got = subprocess.run(
            [*COMMAND, "info", "--bytes", *flags[1:], "-o", "RES,PAGES,SIZE,FILE", *paths],
            capture_output=True,
        )
        assert got.returncode == 0
        assert got.stdout == want
        assert len(got.stdout.splitlines()) == len(paths) + (flags[-1] == "-r")


def test_output_columns(tree: Path) -> None:
    a = str(tree / "a.idx")
    lines = run("info", "-o", "FILE,TOTAL_PAGES", a).stdout.splitlines()
    assert lines[0].split() == ["FILE", "TOTAL_PAGES"] and lines[1].split()[-1] == "3"
    plus = run("info", "-o", "+DIRTY_PAGES", a).stdout.splitlines()[0].split()
    assert plus == ["SIZE", "TOTAL_PAGES", "PAGES", "RES", "PERCENT", "FILE", "DIRTY_PAGES"]
    assert run("info", "-o", "pages,file", a).stdout.splitlines()[0].split() == ["PAGES", "FILE"]
    bad = run("info", "-o", "PAGES,BOGUS", a)
    assert bad.returncode == 2 and "unknown column: BOGUS" in bad.stderr


def test_json_like_fincore(tree: Path) -> None:
    pagecache.warm(tree / "a.idx")
    for flag in ("--json", "-J"):
        done = run("info", flag, str(tree / "a.idx"))
        (f,) = json.loads(done.stdout)["files"]
        # fincore -J -b: res, pages, size, file; iommap: the same as numbers.
        assert (f["resident_bytes"], f["resident_pages"], f["size"], f["path"]) == (
            3 * PAGE,
            3,
            3 * PAGE,
            str(tree / "a.idx"),
        )
    if FINCORE is not None:
        (peer,) = json.loads(
            subprocess.run(
                [FINCORE, "-J", "-b", str(tree / "a.idx")], capture_output=True, text=True
            ).stdout
        )["fincore"]
        assert (peer["res"], peer["pages"], peer["size"]) == (3 * PAGE, 3, 3 * PAGE)


def test_cachestat_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", 4 * PAGE)
    columns = "DIRTY_PAGES,DIRTY,WRITEBACK_PAGES,WRITEBACK,EVICTED_PAGES,RECENTLY_EVICTED_PAGES"
    done = run("info", "--bytes", "-r", "-n", "-o", columns, str(path))
    assert done.returncode == 0
    cells = done.stdout.split()
    if not pagecache.cachestat_available():
        assert cells == ["?"] * 6
        return
    assert cells[:4] == ["0", "0", "0", "0"]  # written and synced: clean
    if can_drop(path):
        pagecache.evict(path)
        (f,) = info_json(str(path))["files"]
        # Dropped on request, not reclaimed: no "evicted" shadow entries.
        assert f["resident_pages"] == 0 and isinstance(f["evicted_pages"], int)
