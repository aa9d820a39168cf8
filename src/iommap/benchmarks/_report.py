"""What the run tells: the table, the JSON document, the plot.

Every ratio is a *speed* ratio computed from medians of the same run:
above 1 means faster than the row it is compared with (fewer ns/op, or
more GB/s), whatever the unit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .._toolkit import render_table
from ._suite import Group, Row, size_id

#: What one group left: the group, its rows, the busy-machine figure.
Done = tuple[Group, list[Row], "dict[str, Any] | None"]


def speed_ratio(row: Row | None, other: Row | None, statistic: str = "median") -> float | None:
    """How many times as fast `row` is as `other` (None if either is missing).

    `statistic` is "median" (what the targets are judged on) or "best"."""
    if row is None or other is None or not row.ok or not other.ok:
        return None
    a, b = getattr(row, statistic), getattr(other, statistic)
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    ratio: float = b / a if row.group.kind == "small" else a / b
    return ratio


class Results:
    """Rows by (group id, contender id), plus what the table needs to compare them."""

    def __init__(self, groups: Sequence[Done]) -> None:
        self.groups = groups
        self.rows: dict[tuple[str, str], Row] = {}
        for group, rows, _busy in groups:
            for row in rows:
                self.rows[(group.id, row.contender.id)] = row

    def get(self, group_id: str, contender_id: str) -> Row | None:
        return self.rows.get((group_id, contender_id))

    def _role(self, rows: Sequence[Row], role: str) -> Row | None:
        for row in rows:
            if row.contender.role == role:
                return row
        return None

    def vs_reference(self, row: Row, rows: Sequence[Row]) -> float | None:
        ref = self._role(rows, "reference")
        return speed_ratio(row, ref)

    def vs_limit(self, row: Row, rows: Sequence[Row]) -> float | None:
        limit = self._role(rows, "limit")
        return speed_ratio(row, limit)

    def scaling(self, row: Row) -> float | None:
        """Aggregate throughput on N threads over the same contender on 1."""
        g = row.group
        if g.kind != "large" or g.threads == 1:
            return None
        one = self.get(f"read/{size_id(g.size)}/1t", row.contender.id)
        return speed_ratio(row, one)


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ns/op":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return f"{value:.2f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(results: Results) -> str:
    """Per group: its title, then every row's median, best and ratios, aligned."""
    lines: list[str] = []
    for group, rows, busy in results.groups:
        lines.append(group.title)
        header = ["", group.unit + " med", "best", "vs mmap", "vs limit"]
        if group.threads > 1:
            header.append(f"{group.threads}t/1t")
        table = []
        for row in rows:
            name = row.contender.name
            if row.contender.role:
                name += " [ref]" if row.contender.role == "reference" else " [limit]"
            if not row.ok:
                why = "skipped: " + row.skipped if row.skipped else "error: " + str(row.error)
                table.append([name] + [""] * (len(header) - 1) + [why])
                continue
            cells = [
                name,
                _fmt_value(row.median, group.unit),
                _fmt_value(row.best, group.unit),
                _fmt_ratio(results.vs_reference(row, rows)),
                _fmt_ratio(results.vs_limit(row, rows)),
            ]
            if group.threads > 1:
                cells.append(_fmt_ratio(results.scaling(row)))
            table.append(cells + [""])
        align = "l" + "r" * (len(header) - 1) + "l"
        lines += ["  " + line for line in render_table(header + [""], table, align=align)]
        if busy and busy.get("warning"):
            lines.append("  ! " + busy["warning"])
        lines.append("")
    return "\n".join(lines)


def to_document(results: Results, meta: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    groups = []
    for group, rows, busy in results.groups:
        out_rows = []
        for row in rows:
            out_rows.append(
                {
                    "id": row.contender.id,
                    "name": row.contender.name,
                    "role": row.contender.role or None,
                    "body": row.contender.body,
                    "unit": group.unit,
                    "median": row.median,
                    "best": row.best,
                    "samples": list(row.samples) if row.ok else [],
                    "vs_mmap": results.vs_reference(row, rows),
                    "vs_limit": results.vs_limit(row, rows),
                    "scaling": results.scaling(row),
                    "skipped": row.skipped,
                    "error": row.error,
                }
            )
        groups.append(
            {
                "id": group.id,
                "title": group.title,
                "kind": group.kind,
                "op": group.op,
                "size": group.size,
                "region": group.region,
                "threads": group.threads,
                "unit": group.unit,
                "busy": busy,
                "rows": out_rows,
            }
        )
    return {"meta": meta, "groups": groups, "warnings": warnings}


def write_json(path: str, document: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")


def plot(path: str, results: Results) -> None:
    """Bar chart of every measured row's speed ratio to stdlib mmap and to the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    vs_ref: list[float] = []
    vs_lim: list[float] = []
    for group, rows, _busy in results.groups:
        for row in rows:
            if not row.ok or row.contender.role:
                continue
            labels.append(f"{group.id} | {row.contender.name}")
            nan = float("nan")
            r = results.vs_reference(row, rows)
            lim = results.vs_limit(row, rows)
            vs_ref.append(nan if r is None else r)
            vs_lim.append(nan if lim is None else lim)
    height = max(4.0, 0.22 * len(labels) + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(15, height), sharey=True)
    ys = list(range(len(labels)))
    for ax, values, title in (
        (axes[0], vs_ref, "speed vs stdlib mmap (1.0 = same)"),
        (axes[1], vs_lim, "speed vs limit (call floor / memcpy)"),
    ):
        colors = ["tab:blue" if "iommap" in lab else "tab:gray" for lab in labels]
        ax.barh(ys, values, color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(title)
        ax.set_xscale("log")
    axes[0].invert_yaxis()  # the axes share y: inverting both would undo it
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(labels, fontsize=7)
    fig.suptitle("iommap bench: speed ratios from one run (medians; blue = iommap)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
