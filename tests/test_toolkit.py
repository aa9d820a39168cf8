"""The presentation the command line and the benchmark share (iommap._toolkit),
and the page size and warming they take from iommap.pagecache."""

from __future__ import annotations

import io
import mmap

import pytest

import iommap
from iommap import _toolkit, pagecache


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool = True) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_page_size_is_the_systems_not_a_constant():
    assert pagecache.PAGE_SIZE == mmap.PAGESIZE


def test_page_size_matches_the_cores_residency(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * (3 * pagecache.PAGE_SIZE + 1))
    with iommap.open(path, "read") as m:
        assert len(m.residency()) == 4


@pytest.mark.parametrize(
    ("n", "text", "exact"),
    [
        (0, "0 B", "0 B"),
        (512, "512 B", "512 B"),
        (1536, "1.5 KiB", "1536 B"),
        (4096, "4.0 KiB", "4 KiB"),
        (3 << 30, "3.0 GiB", "3 GiB"),
        (1 << 40, "1.0 TiB", "1 TiB"),
    ],
)
def test_format_size(n, text, exact):
    assert _toolkit.format_size(n) == text
    assert _toolkit.format_size(n, exact=True) == exact


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("65536", 65536),
        ("4k", 4096),
        ("4 KiB", 4096),
        ("256M", 256 << 20),
        ("1g", 1 << 30),
        ("2T", 2 << 40),
        ("10B", 10),
        ("1.5G", 3 << 29),
        (".5k", 512),
    ],
)
def test_parse_size(text, value):
    assert _toolkit.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "k", "1.", "1.5.2G", "-4", "4X", "0", "0.0001"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="size"):
        _toolkit.parse_size(text)


def test_parse_size_zero_when_allowed():
    assert _toolkit.parse_size("0", allow_zero=True) == 0


@pytest.mark.parametrize("columns", range(1, 200))
def test_progress_bar_never_wraps(columns):
    line = _toolkit.render_bar("dir/" * 30 + "file.bin", 3 << 30, 7 << 30, columns)
    assert len(line) <= max(columns - 1, 1)


def test_progress_bar_at_20_columns_keeps_bar_and_percent():
    line = _toolkit.render_bar("data.bin", 1, 2, 20)
    assert line.startswith("[#") and "..]" in line and line.endswith("50.0%") and len(line) <= 19


def test_progress_bar_wide_shows_label_and_sizes():
    line = _toolkit.render_bar("data.bin", 1 << 30, 2 << 30, 100)
    assert line.startswith("data.bin [")
    assert line.endswith(" 50.0%  1.0 GiB / 2.0 GiB")


def test_progress_silent_when_not_a_terminal():
    stream = FakeTerminal(tty=False)
    progress = _toolkit.Progress(stream)
    progress.bar("x", 1, 2)
    progress.status("working")
    progress.warn("careful")
    progress.clear()
    assert stream.getvalue() == ""


def test_progress_on_a_terminal_draws_then_clears():
    stream = FakeTerminal()
    progress = _toolkit.Progress(stream, interval=0)
    progress.bar("x", 2, 2)
    assert stream.getvalue().startswith("\r")
    assert "100.0%" in stream.getvalue()
    progress.clear()
    assert stream.getvalue().endswith("\r")


def test_progress_escapes_what_the_terminal_cannot_encode():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    stream.isatty = lambda: True  # type: ignore[method-assign]
    progress = _toolkit.Progress(stream, interval=0)
    progress.status("caf\u00e9")
    stream.flush()
    assert b"caf\\xe9" in raw.getvalue()


def test_render_table_aligns_numbers_right_and_names_left():
    lines = _toolkit.render_table(
        ["SIZE", "PAGES", "FILE"], [["1.0 MiB", "256", "a long name"], ["12 B", "1", "x"]]
    )
    assert lines == ["   SIZE  PAGES  FILE", "1.0 MiB    256  a long name", "   12 B      1  x"]


def test_render_table_raw_and_without_header():
    assert _toolkit.render_table(None, [["1", "a"], ["22", "b"]], raw=True) == ["1 a", "22 b"]
    assert _toolkit.render_table(None, [["1", "a"], ["22", "b"]]) == [" 1  a", "22  b"]


def test_render_table_left_aligned_first_column():
    lines = _toolkit.render_table(["name", "ns"], [["a", "1.0"], ["bbb", "22.0"]], align="lr")
    assert lines == ["name    ns", "a      1.0", "bbb   22.0"]


def test_warm_range_brings_every_page_in(tmp_path):
    page = pagecache.PAGE_SIZE
    path = tmp_path / "f"
    path.write_bytes(b"\1" * (10 * page + 5))
    seen = []
    with iommap.open(path, "read") as m:
        m.advise(0, 0, "dontneed")
        covered = pagecache.warm_range(m, chunk=3 * page, on_progress=seen.append)
        assert covered == 10 * page + 5
        assert m.residency() == b"\1" * 11
    assert seen == [3 * page, 6 * page, 9 * page, 10 * page + 5]


def test_warm_range_of_a_shrunk_file_raises_sigbus(tmp_path):
    page = pagecache.PAGE_SIZE
    path = tmp_path / "f"
    path.write_bytes(b"\1" * (8 * page))
    with iommap.open(path, "read") as m:
        path.write_bytes(b"")
        with pytest.raises(iommap.SigbusError):
            pagecache.warm_range(m)
