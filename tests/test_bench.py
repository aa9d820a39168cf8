"""Smoke test of the benchmark: it runs, reports every row, and its JSON parses.

No speed is asserted: the figures belong to the machine; only their shape is
checked here, on a tiny file with the smallest settings.
"""

import json

import pytest

from iommap.benchmarks import TARGETS, build_groups, main, parse_size

KiB = 1024
MiB = 1024 * KiB

TINY = [
    "--quick",
    "--size",
    "2M",
    "--hot",
    "256K",
    "--small-sizes",
    "64,4K",
    "--large-sizes",
    "64K,1M",
    "--ops",
    "300",
    "--repeats",
    "2",
    "--large-bytes",
    "2M",
    "--no-progress",
]
OPTIONAL = {"numpy_memmap", "numpy_copyto", "pyarrow_read_at", "iommap_gather_numpy", "numpy_fancy"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    path = tmp / "bench.json"
    capture = tmp / "stdout.txt"
    import contextlib

    with open(capture, "w") as out, contextlib.redirect_stdout(out):
        status = main(TINY + ["--dir", str(tmp), "--json", str(path)])
    return status, json.loads(path.read_text()), capture.read_text(), tmp


def test_runs_and_leaves_no_file_behind(tiny_run):
    status, _doc, _text, tmp = tiny_run
    assert status == 0
    assert sorted(p.name for p in tmp.iterdir()) == ["bench.json", "stdout.txt"]


def test_json_has_every_group_and_row(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    assert set(doc) == {"meta", "groups", "targets", "warnings"}
    expected = build_groups(2 * MiB, 256 * KiB, [64, 4 * KiB], [64 * KiB, MiB], 2)
    assert [g["id"] for g in doc["groups"]] == [g.id for g in expected]
    for group, want in zip(doc["groups"], expected):
        assert {
            "id",
            "title",
            "kind",
            "op",
            "size",
            "region",
            "threads",
            "unit",
            "busy",
            "rows",
        } <= set(group)
        assert group["unit"] == ("ns/op" if want.kind == "small" else "GB/s")
        assert [r["id"] for r in group["rows"]] == [c.id for c in want.contenders]
        for row in group["rows"]:
            assert {
                "id",
                "name",
                "role",
                "unit",
                "median",
                "best",
                "samples",
                "vs_mmap",
                "vs_limit",
                "scaling",
                "skipped",
                "error",
            } <= set(row)
            assert row["error"] is None, row
            if row["skipped"]:
                assert row["id"] in OPTIONAL, row  # iommap and the stdlib rows always run
                continue
            assert len(row["samples"]) == 2
            assert row["median"] > 0 and row["best"] > 0
            assert row["vs_mmap"] > 0 and row["vs_limit"] > 0
            if group["threads"] > 1:
                assert row["scaling"] > 0
        roles = [r["role"] for r in group["rows"]]
        assert roles.count("reference") == 1 and roles.count("limit") == 1


def test_targets_are_all_listed(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    assert [t["target"] for t in doc["targets"]] == [t[0] for t in TARGETS]
    for t in doc["targets"]:
        assert set(t) == {
            "target",
            "measured",
            "compared_with",
            "required",
            "ratio",
            "ratio_of_bests",
            "met",
        }
        if "64 MiB" in t["target"]:
            assert t["ratio"] is None and t["met"] is None  # not measured in this run
        else:
            assert t["ratio"] > 0 and t["ratio_of_bests"] > 0 and t["met"] in (True, False)


def test_table_names_every_row(tiny_run):
    _status, doc, text, _tmp = tiny_run
    for group in doc["groups"]:
        assert group["title"] in text
        for row in group["rows"]:
            assert row["name"] in text
    assert "Targets" in text


def test_meta_says_what_the_limits_are(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    meta = doc["meta"]
    assert meta["file_size"] == 2 * MiB and meta["repeats"] == 2 and meta["quick"] is True
    assert "memmove" in meta["memcpy_limit"] and "operator.is_" in meta["call_floor"]


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert main(TINY + ["--only", "read/64B/hot", "--dir", str(tmp_path), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_refused_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--size", "1M", "--large-sizes", "64M", "--dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "larger than the file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, value",
    [("64", 64), ("4K", 4096), ("4KiB", 4096), ("256m", 256 * MiB), ("1G", 1024 * MiB)],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_command_line_dispatches_to_bench():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "iommap", "bench", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--json" in done.stdout
