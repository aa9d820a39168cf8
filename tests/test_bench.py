"""Smoke test of the benchmark: it runs, reports every row, and its JSON parses.

No speed is asserted: the figures belong to the machine; only their shape is
checked here, on a tiny file with the smallest settings.  The workloads'
result check is tested for real: a way whose result differs is an error.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from helpers import BENCH_TINY

from iommap._toolkit import Progress
from iommap.benchmarks import main
from iommap.benchmarks._cli import parse_size
from iommap.benchmarks._measure import BusyMonitor
from iommap.benchmarks._suite import build_groups
from iommap.benchmarks._workloads import Case, Ctx, Sample, Way, build_cases, run_case

ROOT = Path(__file__).resolve().parent.parent

KiB = 1024
MiB = 1024 * KiB

TINY = ["--quick", *BENCH_TINY, "--large-sizes", "64K,1M", "--large-bytes", "2M"]
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
    assert set(doc) == {"meta", "groups", "warnings", "workloads", "interpreters"}
    expected = build_groups(2 * MiB, 256 * KiB, [64, 4 * KiB], [64 * KiB, MiB], 2)
    assert [g["id"] for g in doc["groups"]] == [g.id for g in expected]
    for group, want in zip(doc["groups"], expected, strict=True):
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


def bench_targets():
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "tools/bench_targets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_are_judged_from_the_json(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    tool = bench_targets()
    targets = tool.evaluate(doc)
    assert [t["target"] for t in targets] == [t[0] for t in tool.TARGETS]
    for t in targets:
        assert set(t) == {
            "target",
            "measured",
            "compared_with",
            "required",
            "ratio",
            "ratio_of_bests",
            "met",
        }
        if "64 MiB" in t["target"] or "8 MiB chunks" in t["target"]:
            assert t["ratio"] is None and t["met"] is None  # not measured in this run
        else:
            assert t["ratio"] > 0 and t["ratio_of_bests"] > 0 and t["met"] in (True, False), t
    # The best chunk is one the run measured, compared with its own memcpy line.
    (best,) = [t for t in targets if t["target"].startswith("scan, best chunk")]
    case = best["measured"].rpartition(":")[0]
    assert case in ("workloads/scan/64KiB", "workloads/scan/1MiB")
    assert best["compared_with"] == case + ":limit"


def test_targets_tool_prints_verdicts_and_refuses_other_files(tiny_run, tmp_path):
    import subprocess

    _status, doc, _text, _tmp = tiny_run
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    tool = str(ROOT / "tools/bench_targets.py")
    done = subprocess.run([sys.executable, tool, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "batches (12, 256): >= 10x np.memmap per batch" in done.stdout
    assert ("met " in done.stdout or "MISS" in done.stdout) and "n/a " in done.stdout
    path.write_text("[1, 2]")
    done = subprocess.run([sys.executable, tool, str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "not a bench document" in done.stderr


def test_table_names_every_row(tiny_run):
    _status, doc, text, _tmp = tiny_run
    for group in doc["groups"]:
        assert group["title"] in text
        for row in group["rows"]:
            assert row["name"] in text
    for case in doc["workloads"]:
        assert case["title"] in text
        for row in case["rows"]:
            assert row["name"] in text


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


@pytest.mark.parametrize(
    "args, why",
    [
        (["--size", "1M", "--large-sizes", "64M"], "larger than the file"),
        # A size the workloads cannot read as words.
        (["--size", "1000001", "--only", "workloads"], "multiple of 8"),
    ],
)
def test_bad_arguments_are_refused_before_running(tmp_path, capsys, args, why):
    with pytest.raises(SystemExit) as exc:
        main([*args, "--dir", str(tmp_path)])
    assert exc.value.code == 2
    assert why in capsys.readouterr().err
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


def test_workloads_run_every_case_and_their_results_agree(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    expected = build_cases(2 * MiB, 300, 2)
    assert [c["id"] for c in doc["workloads"]] == [c.id for c in expected]
    for case, want in zip(doc["workloads"], expected, strict=True):
        assert [r["id"] for r in case["rows"]] == [w.id for w in want.ways]
        for row, way in zip(case["rows"], want.ways, strict=True):
            # The check before timing found every way's result equal to the others'.
            assert row["error"] is None, (case["id"], row)
            if row["skipped"]:
                assert way.needs and row["skipped"] == f"{way.needs} not installed", row
                continue
            assert len(row["samples"]) == want.repeats and row["median"] > 0, row
            if way.side != "limit":
                assert row["vs_fastest_today"] > 0
        sides = [r["side"] for r in case["rows"]]
        assert "today" in sides and "iommap" in sides


def test_many_readers_report_memory_and_appends_the_remap_cost(tiny_run):
    _status, doc, _text, _tmp = tiny_run
    cases = {c["id"]: c for c in doc["workloads"]}
    if os.path.exists("/proc/self/smaps_rollup"):
        for row in cases["workloads/readers"]["rows"]:
            assert 0 < row["extra"]["pss"] <= row["extra"]["rss"], row
    for row in cases["workloads/append/4KiB"]["rows"]:
        if row["id"] == "file_write":
            assert row["extra"] == {}
        else:
            assert row["extra"]["remap"] > 0, row


def _constant(digests):
    """A way whose check returns digests[0] and whose timed runs return the rest in turn."""

    def make(ctx):
        given = iter(digests)

        def run(check):
            return Sample(1000, next(given))

        return run

    return make


def test_a_way_whose_result_differs_is_an_error_not_a_figure(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\1" * 4096)
    ways = [
        Way("a", "way a", "today", _constant([b"x", b"x", b"x"])),
        Way("b", "way b", "iommap", _constant([b"x", b"x", b"y"])),  # wrong in a timed round
        Way("c", "way c", "iommap", _constant([b"z", b"z", b"z"])),  # wrong in the check
        Way("d", "way d", "today", _constant([b"x", b"x", b"x"])),
    ]
    case = Case("workloads/test", "a test case", "us/op", False, 1e-3, ways, 2)
    ctx = Ctx(str(path), 4096, str(tmp_path), "seed")
    rows, _busy = run_case(ctx, case, Progress(enabled=False), "", BusyMonitor())
    by_id = {r.way.id: r for r in rows}
    assert by_id["a"].ok and by_id["d"].ok and by_id["a"].samples == [1.0, 1.0]
    assert by_id["c"].error == "result differs from that of way a, way b, way d"
    assert by_id["b"].error == "result differs from that of way a, way d"
    assert by_id["b"].samples == [] and by_id["c"].samples == []


def test_a_missing_peer_is_skipped_and_said(tmp_path):
    pytest.importorskip("numpy")
    from iommap.benchmarks._workloads import format_table

    path = tmp_path / "table.bin"
    path.write_bytes(os.urandom(MiB))
    ctx = Ctx(str(path), MiB, str(tmp_path), "seed")
    ctx.missing["pyarrow"] = "pyarrow not installed"
    (case,) = [c for c in build_cases(MiB, 300, 1) if c.id == "workloads/records/128B"]
    rows, busy = run_case(ctx, case, Progress(enabled=False), "", BusyMonitor())
    by_id = {r.way.id: r for r in rows}
    assert by_id["pyarrow_loop"].skipped == "pyarrow not installed"
    assert by_id["pyarrow_loop"].samples == []
    assert by_id["iommap_gather"].ok and by_id["memmap_fancy"].ok
    assert "skipped: pyarrow not installed" in format_table([(case, rows, busy)])


def test_only_workloads_runs_them_alone(tmp_path, capsys):
    argv = ["--size", "2M", "--ops", "300", "--repeats", "1", "--no-progress"]
    out = tmp_path / "out.json"
    status = main(argv + ["--only", "workloads/append", "--dir", str(tmp_path), "--json", str(out)])
    assert status == 0
    doc = json.loads(out.read_text())
    assert doc["groups"] == []
    assert [c["id"] for c in doc["workloads"]] == [
        "workloads/append/64B",
        "workloads/append/1KiB",
        "workloads/append/4KiB",
        "workloads/append/4KiB+sync",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    text = capsys.readouterr().out
    assert "append 1 KiB records" in text and "limits:" not in text
