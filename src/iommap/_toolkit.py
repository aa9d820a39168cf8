"""Presentation shared by the command line (``iommap info/warm/evict/lock``)
and the benchmark (``iommap bench``): one of each, so the two never disagree.

- :func:`format_size`, :func:`parse_size`: byte counts for people, both ways.
- :class:`Progress`: a one-line status or progress bar on a terminal; it never
  wraps, fits terminals down to 20 columns, and is silent when its stream is
  not a terminal.
- :func:`render_table`: aligned text tables (and fincore's raw form).

Internal: nothing here is public API, and it may change with the callers.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence

# typing only for the type checker: the commands start faster without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, TextIO

KiB: Final[int] = 1 << 10
MiB: Final[int] = 1 << 20
GiB: Final[int] = 1 << 30
TiB: Final[int] = 1 << 40

_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_PARSE_UNITS = {
    "": 1,
    "B": 1,
    "K": KiB,
    "KB": KiB,
    "KIB": KiB,
    "M": MiB,
    "MB": MiB,
    "MIB": MiB,
    "G": GiB,
    "GB": GiB,
    "GIB": GiB,
    "T": TiB,
    "TB": TiB,
    "TIB": TiB,
    "P": TiB << 10,
    "PB": TiB << 10,
    "PIB": TiB << 10,
}


# ---- sizes -------------------------------------------------------------------


def format_size(n: float, *, exact: bool = False) -> str:
    """A byte count in binary units.

    By default one decimal: ``512 B``, ``4.0 KiB``, ``1.5 GiB``. With
    ``exact=True``, the largest unit that divides ``n`` with no decimal, for
    labels: ``64 B``, ``4 KiB``, ``1 GiB``, ``1536 B``... (``1536`` is not a
    whole KiB, so it stays in bytes; ``3 KiB`` would not).
    """
    if exact:
        whole = int(n)
        for power in range(len(_BINARY_UNITS), 0, -1):
            unit = 1 << (10 * power)
            if whole >= unit and whole % unit == 0:
                return f"{whole // unit} {_BINARY_UNITS[power - 1]}"
        return f"{whole} B"
    if n < 1024:
        return f"{int(n)} B"
    value = n / 1024
    index = 0
    while value >= 1024 and index < len(_BINARY_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{value:.1f} {_BINARY_UNITS[index]}"


def parse_size(text: str, *, allow_zero: bool = False) -> int:
    """``'1G'``, ``'1.5G'``, ``'256MiB'``, ``'4k'``, ``'65536'`` -> bytes.

    Units: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB, P/PB/PiB, any case, all
    powers of 1024 (as vmtouch and dd read them); a fraction is rounded down
    to a whole byte. Raises ``ValueError`` with a message fit to show a user
    for anything else, and for 0 unless ``allow_zero``.
    """
    s = text.strip().upper()
    i = len(s)
    while i and not s[i - 1].isdigit():
        i -= 1
    number, unit = s[:i], s[i:].strip()
    whole, dot, fraction = number.partition(".")
    if (
        not (whole.isdigit() or (dot and not whole and fraction))
        or (dot and not fraction.isdigit())
        or unit not in _PARSE_UNITS
    ):
        raise ValueError(f"not a size: {text!r} (try 4096, 4K, 256M, 1.5G)")
    scale = _PARSE_UNITS[unit]
    value = int(whole or 0) * scale
    if fraction:
        value += int(fraction) * scale // 10 ** len(fraction)
    if value == 0 and not allow_zero:
        raise ValueError(f"a size must be positive: {text!r}")
    return value


# ---- progress ----------------------------------------------------------------


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal behind ``stream``; 80 if it cannot tell."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    if columns <= 0:  # a pseudo-terminal without a size says 0
        try:
            columns = int(os.environ.get("COLUMNS", "80"))
        except ValueError:
            columns = 80
    return columns if columns > 0 else 80


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, its start replaced by ``...``."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[len(text) - max(width, 0) :] if width > 0 else ""
    return "..." + text[len(text) - (width - 3) :]


def render_bar(label: str, done: int, total: int, columns: int) -> str:
    """One progress line of at most ``columns - 1`` characters.

    ``label [#####.....]  45.1%  1.0 GiB / 2.2 GiB``. As the terminal narrows,
    the sizes go first, then the label shrinks (its start replaced by
    ``...``), then the bar; at 20 columns a bar and the percentage remain.
    One column is always left free: a line as wide as the terminal wraps on
    some terminals.
    """
    width = max(columns - 1, 1)
    fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    percent = f"{100 * fraction:5.1f}%"
    sizes = f"  {format_size(done)} / {format_size(total)}"
    min_bar, max_bar = 8, 40
    for tail in (f" {percent}{sizes}", f" {percent}"):
        room = width - len(tail)
        if room < min_bar + 2:
            continue
        label_room = room - (min_bar + 2) - 1
        shown_label = fit(label, min(len(label), max(label_room, 0))) if label else ""
        if label and len(shown_label) < min(len(label), 8):
            shown_label = ""  # a label cut below 8 characters says nothing
        cells = min(max_bar, room - 2 - (len(shown_label) + 1 if shown_label else 0))
        filled = int(cells * fraction)
        bar = f"[{'#' * filled}{'.' * (cells - filled)}]"
        return (f"{shown_label} " if shown_label else "") + bar + tail
    return percent.strip()[:width]


class Progress:
    """A one-line status on a terminal, rewritten in place; silent elsewhere.

    ``enabled=None`` (the default) shows it only when ``stream`` (stderr by
    default) is a terminal, so pipes, files and CI logs never see it. Every
    line is cut to the terminal's width minus one column, measured at each
    update (a resized terminal is followed), so it never wraps.

    - ``status(text)``: a line of free text (the benchmark's steps).
    - ``bar(label, done, total)``: a progress bar; drawn at most every
      ``interval`` seconds, and always for ``done == total``.
    - ``warn(text)``: a line that stays above the status line.
    - ``clear()``: erase the status line (before printing results).
    """

    def __init__(
        self, stream: TextIO | None = None, *, enabled: bool | None = None, interval: float = 0.1
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                enabled = bool(isatty and isatty())
            except ValueError:  # a closed stream
                enabled = False
        self.enabled = enabled
        self.interval = interval
        self._width = 0
        self._shown_at = 0.0

    def _write(self, line: str) -> None:
        pad = " " * max(0, self._width - len(line))
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        # A name the terminal cannot encode is shown escaped, never raised.
        line = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
        try:
            self.stream.write("\r" + line + pad)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # the terminal went away: stop drawing
            return
        self._width = len(line)

    def status(self, text: str) -> None:
        if self.enabled:
            self._write(fit(text, terminal_columns(self.stream) - 1))

    def bar(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown_at < self.interval and done < total:
            return
        self._shown_at = now
        self._write(render_bar(label, done, total, terminal_columns(self.stream)))

    def clear(self) -> None:
        if self.enabled and self._width:
            try:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False
            self._width = 0

    def warn(self, text: str) -> None:
        """On a terminal, a warning line that stays above the status line.

        Elsewhere nothing: callers repeat their warnings in their report."""
        if not self.enabled:
            return
        self.clear()
        try:
            self.stream.write("warning: " + text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False


# ---- tables ------------------------------------------------------------------


def render_table(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[str]],
    *,
    align: str | None = None,
    raw: bool = False,
) -> list[str]:
    """Lines of a text table, cells separated by two spaces.

    ``align`` has one letter per column, ``'r'`` (right) or ``'l'`` (left);
    the default right-aligns every column but the last (numbers, then a
    name). A left-aligned last column is not padded, so names of any length
    leave no trailing spaces. ``header=None`` prints no header line.
    ``raw=True`` is fincore's ``--raw``: cells joined by one space, unaligned
    (a caller escapes spaces in names first).
    """
    body = [list(r) for r in rows]
    table = ([list(header)] if header is not None else []) + body
    if not table:
        return []
    if raw:
        return [" ".join(row) for row in table]
    count = len(table[0])
    align = align or "r" * (count - 1) + "l"
    widths = [max(len(row[i]) for row in table) for i in range(count)]
    lines = []
    for row in table:
        cells = []
        for i, cell in enumerate(row):
            if align[i] == "r":
                cells.append(cell.rjust(widths[i]))
            elif i == count - 1:
                cells.append(cell)
            else:
                cells.append(cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return lines
