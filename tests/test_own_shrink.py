"""A shrink by this process's own truncate() never kills this process's views.

After a handle shrinks the file, the mappings no handle uses any more (the
one truncate() replaced, those close() dropped) read zeros past the new end,
and writes there go nowhere: views and numpy arrays over them live on.  Each
case runs in a child process: a view that faults kills the child, not the
test run.
"""

import signal

import pytest
from helpers import PAGE, run_ok, run_py

pytest.importorskip("numpy")

PRELUDE = """
import os
import numpy as np
import iommap

def content(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))

def make(size):
    with open(path, "wb") as f:
        f.write(content(size))

def file_bytes():
    with open(path, "rb") as f:
        return f.read()
"""


def child(code, tmp_path, **variables):
    return run_ok((PRELUDE, code), path=str(tmp_path / "f.bin"), page=PAGE, **variables)


def test_views_of_the_replaced_mapping_read_zeros_past_the_new_end(tmp_path):
    child(
        """
        make(4 * page)
        m = iommap.open(path)
        view = m.view()
        array = np.frombuffer(m.view(), dtype=np.uint8)
        tail = m.view(3 * page, page)      # entirely past the new end
        new_end = page + 10                # inside the second page
        m.truncate(new_end)

        # Up to the new end: the file's bytes.  Past it: zeros, both in the
        # rest of the page that holds the end (the file's page, zero-filled
        # by the kernel) and in the whole pages after it.
        assert bytes(view[:new_end]) == content(new_end)
        assert bytes(view[new_end:]) == bytes(4 * page - new_end)
        assert array[:new_end].tobytes() == content(new_end)
        assert not array[new_end:].any() and array.size == 4 * page
        assert bytes(tail) == bytes(page)
        assert len(view) == 4 * page       # an old view keeps its length

        # Writes past the new end go nowhere: the file keeps its size and bytes.
        view[3 * page : 3 * page + 4] = b"gone"
        array[2 * page] = 9
        assert os.path.getsize(path) == new_end
        assert file_bytes() == content(new_end)
        assert m.pread(0, new_end) == content(new_end)

        # Writes below the new end still reach the file.
        view[0:4] = b"kept"
        assert file_bytes()[:4] == b"kept"
        print("OK")
        """,
        tmp_path,
    )


def test_every_older_generation_is_cut(tmp_path):
    # Views of mappings from several truncates back all survive a shrink.
    child(
        """
        make(2 * page)
        m = iommap.open(path)
        first = m.view()                   # 2 pages
        m.truncate(6 * page)
        second = np.frombuffer(m.view(), dtype=np.uint8)  # 6 pages
        m.truncate(8 * page)
        third = m.view()                   # 8 pages, the current mapping
        m.truncate(page // 2)
        for old, size in ((first, 2 * page), (second, 6 * page), (third, 8 * page)):
            data = bytes(old)
            assert len(data) == size
            assert data[: page // 2] == content(page // 2), size
            assert data[page // 2 :] == bytes(size - page // 2), size
        # Growing again does not bring old views back to the file: they keep
        # reading zeros there (a new view sees the file).
        m.truncate(8 * page)
        m.pwrite(7 * page, b"new")
        assert bytes(third[7 * page : 7 * page + 3]) == bytes(3)
        assert bytes(m.view(7 * page, 3)) == b"new"
        print("OK")
        """,
        tmp_path,
    )


@pytest.mark.parametrize("mode,private", [("read", False), ("read_write", True), ("read", True)])
def test_views_of_closed_handles_survive_another_handles_shrink(tmp_path, mode, private):
    # A view outlives close(); its pages survive the shrink of the file by
    # another handle of the process the same way, in every mode.
    child(
        """
        make(3 * page)
        reader = iommap.open(path, mode, private=private)
        view = reader.view()
        array = np.frombuffer(reader.view(), dtype=np.uint8)
        if private and mode == "read_write":
            view[0:4] = b"mine"            # a private change stays private
        reader.close()
        writer = iommap.open(path)
        writer.truncate(page + 1)
        head = content(page + 1)
        if private and mode == "read_write":
            head = b"mine" + head[4:]
        assert bytes(view[: page + 1]) == head
        assert bytes(view[page + 1 :]) == bytes(2 * page - 1)
        assert not array[page + 1 :].any()
        if not view.readonly:
            view[2 * page] = 1             # into a private zero page
            assert view[2 * page] == 1
        assert os.path.getsize(path) == page + 1
        assert file_bytes()[4:] == content(page + 1)[4:]
        print("OK")
        """,
        tmp_path,
        mode=mode,
        private=private,
    )


def test_a_shrink_by_another_process_still_faults_in_views(tmp_path):
    # The documented limit: only shrinks made through iommap in this process
    # are seen in time to protect the views.
    rc, out, err = run_py(
        (
            PRELUDE,
            """
        make(3 * page)
        m = iommap.open(path)
        view = m.view()
        import subprocess, sys
        subprocess.run([sys.executable, "-c", "import os; os.truncate(%r, %d)" % (path, page)])
        print("SHRUNK", flush=True)
        view[2 * page]
        print("NOT KILLED", flush=True)
        """,
        ),
        path=str(tmp_path / "f.bin"),
        page=PAGE,
    )
    assert "SHRUNK" in out and "NOT KILLED" not in out, (rc, out, err)
    assert rc == -signal.SIGBUS, (rc, out, err)


def test_views_of_another_open_handle_are_not_cut(tmp_path):
    # Another handle that still maps the file keeps seeing the file itself:
    # its reads report the shrink, and see the file again once it grows.
    child(
        """
        import errno
        make(3 * page)
        other = iommap.open(path, "read")
        writer = iommap.open(path)
        writer.truncate(page)
        try:
            other.pread(2 * page, 4)
        except iommap.SigbusError:
            pass
        else:
            raise AssertionError("no SigbusError")
        writer.truncate(3 * page)
        writer.pwrite(2 * page, b"back")
        assert other.pread(2 * page, 4) == b"back"
        print("OK")
        """,
        tmp_path,
    )


def test_a_window_view_is_cut_at_the_files_new_end(tmp_path):
    # A window starts mid-page: its pages past the file's new end are cut by
    # file offset, and the page holding the end keeps the file's bytes.
    child(
        """
        make(6 * page)
        window = iommap.open(path, "read", offset=page + 100, length=4 * page)
        view = window.view()
        window.close()
        writer = iommap.open(path)
        new_end = 3 * page + 7
        writer.truncate(new_end)
        kept = new_end - (page + 100)
        assert bytes(view[:kept]) == content(new_end)[page + 100 :]
        assert bytes(view[kept:]) == bytes(4 * page - kept)
        print("OK")
        """,
        tmp_path,
    )


def test_the_mapping_remap_replaced_is_cut_too(tmp_path):
    child(
        """
        make(2 * page)
        m = iommap.open(path)
        old = m.view()
        with open(path, "ab") as f:
            f.write(content(2 * page))     # grown from outside
        assert m.remap() == 4 * page
        m.truncate(page)
        assert bytes(old[:page]) == content(page)
        assert bytes(old[page:]) == bytes(page)
        print("OK")
        """,
        tmp_path,
    )
