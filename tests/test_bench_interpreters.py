"""`iommap bench`'s parallel small-read group: sub-interpreters and threads.

On Python 3.14+ the group runs two sub-interpreters and two threads, each
with its own handle, and reports their throughput against one worker; on
older versions it says why it did not run.  The numbers themselves are not
judged here (no timing assertions in tests): only that every figure was
measured and reported.  The bench runs in a child process, so that a crash
in a sub-interpreter fails the test instead of the run.
"""

import json
import subprocess
import sys

from helpers import BENCH_TINY

TINY = [*BENCH_TINY, "--only", "interpreters"]
WAYS = {"1 sub-interpreter", "2 sub-interpreters", "1 thread", "2 threads"}


def run_bench(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iommap",
            "bench",
            *TINY,
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # test file removed
    return json.loads(out.read_text()), done.stdout


def test_group_measures_every_way_or_says_why_not(tmp_path):
    doc, text = run_bench(tmp_path)
    group = doc["interpreters"]
    assert group["id"] == "interpreters"
    assert doc["groups"] == [] and doc["workloads"] == []  # --only picked this group alone
    if sys.version_info < (3, 14):
        assert "3.14" in group["skipped"]
        assert "skipped" in text and "3.14" in text
        return
    assert "skipped" not in group, group
    assert group["repeats"] == 2 and group["hot_region"] == 256 * 1024
    assert [entry["size"] for entry in group["sizes"]] == [64, 4096]
    for entry in group["sizes"]:
        assert set(entry["mops_per_s"]) == WAYS
        assert set(entry["samples"]) == WAYS
        for way in WAYS:
            assert len(entry["samples"][way]) == 2
            assert all(v > 0 for v in entry["samples"][way])
        assert entry["reads_per_worker"] >= 300
        m = entry["mops_per_s"]
        assert entry["interpreters_scaling"] == m["2 sub-interpreters"] / m["1 sub-interpreter"]
        assert entry["threads_scaling"] == m["2 threads"] / m["1 thread"]
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "interps 2/1" in line)
    assert lines[header + 1].split()[:2] == ["64", "B"]
    assert lines[header + 2].split()[:2] == ["4", "KiB"]
