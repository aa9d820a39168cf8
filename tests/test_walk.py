"""pagecache.walk's directory walk (the C core's): order, filters, depth.

The walk reads each directory whole, sorts it by name and goes depth first
from an explicit stack, with every file opened relative to its directory.
These tests hold it to what a walk in Python with os.scandir gives (the
reference below), on trees that make the C side work: names that are not
UTF-8, patterns, links, trees deeper than the descriptors it keeps open.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import run_ok

from iommap import pagecache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file systems")


def reference(
    top: Any,
    *,
    follow: bool = False,
    ignore: tuple[str, ...] = (),
    include: tuple[str, ...] = (),
    max_size: int | None = None,
) -> list[Any]:
    """The paths a walk gives, in order, by os.scandir: directories sorted
    by name, depth first, each inode once."""
    out: list[Any] = []
    seen: set[tuple[int, int]] = set()
    dirs: set[tuple[int, int]] = set()

    def name_ok(name: Any, patterns: tuple[str, ...]) -> bool:
        text = os.fsdecode(name)
        return any(fnmatch.fnmatchcase(text, p) for p in patterns)

    def file(path: Any) -> None:
        if include and not name_ok(os.path.basename(path), include):
            return
        st = os.stat(path, follow_symlinks=follow)
        if max_size is not None and st.st_size > max_size:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        out.append(path)

    def directory(path: Any) -> None:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in dirs:
            return
        dirs.add((st.st_dev, st.st_ino))
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if ignore and name_ok(entry.name, ignore):
                continue
            if entry.is_file(follow_symlinks=follow):
                file(entry.path)
            elif entry.is_dir(follow_symlinks=follow):
                directory(entry.path)

    directory(top)
    return out


def walked(top: Any, **options: Any) -> list[Any]:
    results = list(pagecache.walk([top], **options))
    assert all(isinstance(r, pagecache.FileResidency) for r in results), results
    return [r.path for r in results]


def make(path: Path | bytes, size: int = 10) -> None:
    with open(path, "wb") as f:
        f.write(b"x" * size)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Files and directories whose names sort differently as bytes and as
    code points, links of each kind, a FIFO, a hard link."""
    top = tmp_path / "top"
    top.mkdir()
    raw = os.fsencode(top)
    for name in (b"a.txt", b"B.txt", b"\xc3\xa9t\xc3\xa9", b"\xff-raw", b"\xee\x80\x80-pua", b"z"):
        make(os.path.join(raw, name))
    (top / "sub").mkdir()
    (top / "sub" / "deeper").mkdir()
    make(top / "sub" / "deeper" / "one.log", 5000)
    make(top / "sub" / "two.txt", 20)
    os.link(top / "a.txt", top / "sub" / "hard-a")
    os.symlink("a.txt", top / "link-file")
    os.symlink("sub", top / "link-dir")
    os.symlink("missing", top / "dangling")
    os.mkfifo(top / "fifo")
    return top


@pytest.mark.parametrize("as_bytes", [False, True])
@pytest.mark.parametrize("follow", [False, True])
def test_the_walk_gives_what_scandir_gives(tree: Path, as_bytes: bool, follow: bool) -> None:
    top: Any = os.fsencode(tree) if as_bytes else str(tree)
    assert walked(top, follow_symlinks=follow) == reference(top, follow=follow)


@pytest.mark.parametrize(
    "ignore, include",
    [
        (("*.txt",), ()),
        ((), ("*.txt",)),
        (("?",), ()),
        (("*-*",), ("*",)),
        (("\udcff*",), ()),  # a byte that is not UTF-8, as os.fsdecode names it
        (("é*",), ()),
        (("[ab]*",), ()),  # brackets: matched by fnmatch itself
        ((), ("[!a]*", "*.log")),
        (("deeper",), ()),
    ],
)
def test_patterns_match_as_fnmatch_does(
    tree: Path, ignore: tuple[str, ...], include: tuple[str, ...]
) -> None:
    for top in (str(tree), os.fsencode(tree)):
        got = walked(top, ignore=ignore, include=include)
        assert got == reference(top, ignore=ignore, include=include)


def test_max_size_and_totals(tree: Path) -> None:
    walk = pagecache.walk([tree], max_size=100)
    paths = [r.path for r in walk]
    assert paths == reference(str(tree), max_size=100)
    t = walk.totals
    assert t.files == len(paths)
    assert t.directories == 3
    # one.log is over the limit; the hard link, the links not followed, the
    # dangling one and the FIFO are left out.
    assert t.skipped == 6
    assert t.size == sum(os.path.getsize(p) for p in paths)


def remove_deep(top: str) -> None:
    """rm -r of a tree too deep for shutil.rmtree's recursion."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    while fds:
        entries = sorted(os.scandir(fds[-1]), key=lambda e: e.name)
        sub = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                os.unlink(e.name, dir_fd=fds[-1])
        if sub:
            fds.append(os.open(sub[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
            continue
        fd = fds.pop()
        os.close(fd)
        if fds:
            os.rmdir(next(e.name for e in os.scandir(fds[-1]) if e.is_dir()), dir_fd=fds[-1])
    os.rmdir(top)


def make_chain(top: str, depth: int, file_name: str = "f") -> None:
    """top/d/d/.../d, `depth` levels below top, a file in every one."""
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
        os.close(os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def test_a_tree_5000_levels_deep_walks(tmp_path: Path) -> None:
    # Deeper than any path may be long (PATH_MAX), deeper than the
    # interpreter's recursion limit, deeper than the descriptors the walk
    # keeps open: every file, deepest first (d sorts before f), no
    # descriptor left behind.
    top = str(tmp_path / "deep")
    make_chain(top, 5000)
    try:
        before = open_descriptors()
        walk = pagecache.walk([top])
        paths = [r.path for r in walk]
        assert open_descriptors() == before
        assert len(paths) == 5000
        assert paths[0] == top + "/d" * 5000 + "/f"
        assert paths[-1] == top + "/d/f"
        assert walk.totals.directories == 5001
        assert walk.totals.errors == 0
    finally:
        remove_deep(top)


def test_a_followed_link_deep_down_comes_back_to_the_right_directory(tmp_path: Path) -> None:
    # The walk closes the descriptors of directories high up a deep branch
    # and opens them again on the way back: through ".." where that is the
    # same directory, else by name from an ancestor still open (".." of a
    # directory reached through a symlink is not the link's directory).
    top = str(tmp_path / "top")
    elsewhere = str(tmp_path / "elsewhere")
    make_chain(elsewhere, 300, "g")
    os.mkdir(top)
    os.mkdir(os.path.join(top, "m"))
    os.symlink(elsewhere, os.path.join(top, "m", "a"))
    make(Path(top, "m", "b"))
    make(Path(top, "z"))
    try:
        paths = walked(top, follow_symlinks=True)
        assert len(paths) == 302
        assert paths[-2:] == [os.path.join(top, "m", "b"), os.path.join(top, "z")]
        assert paths == reference(top, follow=True)
    finally:
        remove_deep(elsewhere)


def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make(tmp_path / "a" / "f")
    os.symlink("..", tmp_path / "a" / "up")
    walk = pagecache.walk([tmp_path], follow_symlinks=True)
    assert [r.path for r in walk] == [str(tmp_path / "a" / "f")]
    assert walk.totals.directories == 2


def test_an_unreadable_directory_is_an_error_and_the_walk_goes_on(world_dir: str) -> None:
    # Root reads every directory, so the walk runs in a child that gives up
    # root first when the suite runs as root.
    top = os.path.join(world_dir, "tree")
    os.mkdir(top, 0o755)
    os.mkdir(os.path.join(top, "closed"), 0)
    make(Path(top) / "open")
    run_ok(
        """
        import os
        from iommap import pagecache
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        results = list(pagecache.walk([top]))
        assert isinstance(results[0], pagecache.FileError), results
        assert results[0].path == os.path.join(top, "closed"), results
        assert results[0].reason == "eacces", results
        assert results[1].path == os.path.join(top, "open"), results
        print("OK")
        """,
        top=top,
    )
    os.chmod(os.path.join(top, "closed"), stat.S_IRWXU)


def test_results_are_the_named_tuples_the_docs_promise(tmp_path: Path) -> None:
    make(tmp_path / "f", 5000)
    (r,) = pagecache.walk([tmp_path])
    assert type(r) is pagecache.FileResidency
    assert r._fields[0] == "path" and len(r) == 13
    assert r._replace(size=1).size == 1
    assert r._asdict()["length"] == 5000
    assert r == pagecache.FileResidency(*r)
    assert hash(r) == hash(tuple(r))
    assert r.percent is not None and 0 <= r.percent <= 100


def test_empty_directories_are_entered_and_counted(tmp_path: Path) -> None:
    # An empty directory has no entries to sort (under UBSan, sorting none
    # from no array was an error).
    (tmp_path / "empty").mkdir()
    (tmp_path / "one" / "empty").mkdir(parents=True)
    walk = pagecache.walk([tmp_path])
    assert list(walk) == []
    assert walk.totals.directories == 4 and walk.totals.files == 0
