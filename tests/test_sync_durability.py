"""sync() makes the file's data and size durable in every state, and the
first sync() after open(create=True) makes the new directory entry durable
too.  A power cut cannot be simulated here, so the test is the system calls
themselves, traced by strace: the right calls, on the right descriptors, in
the right order.  sync("async") keeps its meaning and cost: it schedules the
write-back (MS_ASYNC) and waits for nothing."""

import os
import re
import sys
import textwrap

import pytest
from helpers import PAGE, run_strace

import iommap

TRACED = "msync,fsync,fdatasync,openat,getppid"


# The traced script's start: `d` is its directory, `mark()` a marker call,
# and existing_file() makes `path`, an 8 KiB file, before the part traced.
SCRIPT_HEAD = """import os, sys, iommap
d = sys.argv[1]
mark = os.getppid
path = os.path.join(d, "f.bin")

def existing_file():
    open(path, "wb").write(b"x" * 8192)
"""


def _trace(tmp_path, body):
    """Runs `body` under strace; returns the traced calls between each pair of
    os.getppid() markers (`mark()` in the body), as lists of
    (call, first argument with its path, rest)."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_HEAD + textwrap.dedent(body))
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "trace.txt"
    run_strace(
        out, [sys.executable, str(script), str(work)], "-y", "-e", "trace=" + TRACED, timeout=120
    )
    sections, current = [], None
    for line in out.read_text().splitlines():
        found = re.match(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)", line)
        if found is None:
            continue
        name, args, result = found.groups()
        if name == "getppid":
            if current is not None:
                sections.append(current)
            current = []
        elif current is not None:
            if name == "openat" and (str(work) not in args or result == "-1"):
                continue  # the interpreter's own imports; open()'s O_EXCL try
            assert result != "-1", line
            current.append((name, args))
    return sections, str(work)


def _names(section, work):
    """Each call as name:what, what being 'file', 'dir' or the flags."""
    calls = []
    for name, args in section:
        if name == "msync":
            calls.append("msync:" + ("async" if "MS_ASYNC" in args else "sync"))
        elif name == "openat":
            calls.append("openat:dir" if "O_DIRECTORY" in args else "openat:" + args)
        else:
            target = re.search(r"<([^>]*)>", args).group(1)
            calls.append(name + (":dir" if target == work else ":file"))
    return calls


def _durable(calls):
    """fdatasync or fsync: either makes data and size durable."""
    return [c.replace("fdatasync:", "fsync:") for c in calls]


def test_steady_state_sync_is_one_msync(tmp_path):
    sections, work = _trace(
        tmp_path,
        """
        existing_file()
        with iommap.open(path) as m:
            m.pwrite(0, b"abc")
            mark(); m.sync(); mark()
            m.pwrite(5000, b"abc")
            mark(); m.sync("sync", 4096, 4096); mark()
        """,
    )
    assert _names(sections[0], work) == ["msync:sync"]
    assert _names(sections[2], work) == ["msync:sync"]


def test_sync_of_an_empty_mapping_makes_the_size_durable(tmp_path):
    sections, work = _trace(
        tmp_path,
        """
        existing_file()
        with iommap.open(path) as m:
            m.truncate(0)
            mark(); m.sync(); mark()
            mark(); m.sync(); mark()
        """,
    )
    # msync has nothing to flush: the new size is made durable all the same,
    # once.
    assert _durable(_names(sections[0], work)) == ["fsync:file"]
    assert _names(sections[2], work) == []


@pytest.mark.parametrize("new_size", [3 * 4096, 4096 + 10, 100])
def test_sync_after_a_size_change_makes_data_then_size_durable(tmp_path, new_size):
    sections, work = _trace(
        tmp_path,
        """
        existing_file()
        with iommap.open(path) as m:
            m.truncate(%d)
            m.pwrite(0, b"new")
            mark(); m.sync(); mark()
            mark(); m.sync(); mark()
        """
        % new_size,
    )
    assert _durable(_names(sections[0], work)) == ["msync:sync", "fsync:file"]
    assert _names(sections[2], work) == ["msync:sync"]


@pytest.mark.parametrize("options", ["truncate=True", "size=3 * 4096", "truncate=True, size=4096"])
def test_first_sync_after_open_changed_the_size(tmp_path, options):
    sections, work = _trace(
        tmp_path,
        """
        existing_file()
        with iommap.open(path, %s) as m:
            mark(); m.sync(); mark()
            mark(); m.sync(); mark()
        """
        % options,
    )
    first = _durable(_names(sections[0], work))
    assert first[-1] == "fsync:file" and set(first[:-1]) <= {"msync:sync"}, first
    assert "dir" not in " ".join(first)
    assert _names(sections[2], work) in ([], ["msync:sync"])


def test_first_sync_after_create_makes_the_directory_entry_durable_once(tmp_path):
    sections, work = _trace(
        tmp_path,
        """
        path = os.path.join(d, "new.bin")
        with iommap.open(path, create=True, size=4096) as m:
            m.pwrite(0, b"hello")
            mark(); m.sync(); mark()
            mark(); m.sync(); mark()
        with iommap.open(path, create=True) as m:   # exists now: not created
            mark(); m.sync(); mark()
        empty = os.path.join(d, "empty.bin")
        with iommap.open(empty, create=True) as m:  # created, size 0
            mark(); m.sync(); mark()
        """,
    )
    first = _durable(_names(sections[0], work))
    # file data and size first, then the directory holding the new entry
    assert first == ["msync:sync", "fsync:file", "openat:dir", "fsync:dir"], first
    assert _names(sections[2], work) == ["msync:sync"]
    assert _names(sections[4], work) == ["msync:sync"]
    assert _durable(_names(sections[6], work)) == ["fsync:file", "openat:dir", "fsync:dir"]


def test_async_schedules_and_waits_for_nothing(tmp_path):
    sections, work = _trace(
        tmp_path,
        """
        path = os.path.join(d, "new.bin")
        with iommap.open(path, create=True, size=8192) as m:
            m.truncate(3 * 4096)
            m.pwrite(0, b"abc")
            mark(); m.sync("async"); mark()
            m.truncate(0)
            mark(); m.sync("async"); mark()
            m.truncate(4096)
            mark(); m.sync("sync"); mark()
        """,
    )
    assert _names(sections[0], work) == ["msync:async"]
    assert _names(sections[2], work) == []
    # what async left undone, sync still does
    assert _durable(_names(sections[4], work)) == [
        "msync:sync",
        "fsync:file",
        "openat:dir",
        "fsync:dir",
    ]


def test_private_and_read_handles_sync_what_they_changed(tmp_path):
    sections, work = _trace(
        tmp_path,
        """
        existing_file()
        with iommap.open(path, "read") as m:
            mark(); m.sync(); mark()
        with iommap.open(path, private=True) as m:
            m.pwrite(0, b"mine")
            mark(); m.sync(); mark()
        with iommap.open(path, private=True, size=3 * 4096) as m:
            mark(); m.sync(); mark()
        """,
    )
    assert _names(sections[0], work) == ["msync:sync"]
    assert _names(sections[2], work) == []  # private writes never reach the file
    # ...but the file's new size came from this handle: made durable
    assert _durable(_names(sections[4], work)) == ["fsync:file"]


def test_sync_is_still_correct_without_strace(tmp_path):
    path = str(tmp_path / "f.bin")
    with iommap.open(path, create=True, size=PAGE) as m:
        m.pwrite(0, b"data")
        m.sync()
        m.truncate(0)
        m.sync()
        m.truncate(PAGE)
        m.sync("async")
        m.sync()
    assert os.path.getsize(path) == PAGE
