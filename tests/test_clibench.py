"""iommap bench-cli: the command line against vmtouch and fincore, run small."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from helpers import check_peers, needs_peer, run_iommap

SMALL = ["--files", "30", "--size", "1M", "--repeats", "1", "--no-progress"]


def bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = run_iommap("bench-cli", *SMALL, "--dir", str(tmp_path), *args, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == [] or all(p.suffix == ".json" for p in tmp_path.iterdir())
    return done.stdout


def test_a_missing_peer_is_skipped_and_said(tmp_path: Path) -> None:
    # A PATH with this interpreter's directory only: no vmtouch, no fincore.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    out = bench(tmp_path, "--only", "evict", env=env)
    assert "skipped: vmtouch -e: vmtouch is not installed" in out
    assert "  n/a  evict" in out and "no peer to compare with" in out
    assert "iommap evict" in out


@needs_peer("vmtouch")
def test_ratios_and_targets_against_vmtouch(tmp_path: Path) -> None:
    check_peers("vmtouch")
    report = tmp_path / "report.json"
    out = bench(tmp_path, "--only", "info-tree", "--json", str(report))
    lines = out.splitlines()
    (iommap_row,) = [line for line in lines if "iommap info -s" in line]
    (peer_row,) = [line for line in lines if line.split()[:1] == ["vmtouch"]]
    assert peer_row.rstrip().endswith("x")  # the ratio iommap / vmtouch
    (target,) = [line for line in lines if " info-tree-30 " in line]
    assert target.split()[0] in ("met", "MISS") and "(target <= 0.8x, <= 64 MiB)" in target
    if target.split()[0] == "MISS":
        assert "start-up" in target  # the gap, and what limits it
    doc = json.loads(report.read_text())
    (case,) = doc["cases"]
    mine, peer, xargs = case["contenders"]
    assert mine["name"] == "iommap info -s" and peer["name"] == "vmtouch"
    assert xargs["name"] == "xargs fincore"
    assert len(mine["seconds"]) == len(peer["seconds"]) == 1
    assert mine["status"] == peer["status"] == [0]
    assert doc["targets"][0]["case"] == "info-tree-30"
    assert iommap_row


@needs_peer("vmtouch")
def test_every_tree_job_and_the_start_up_have_a_row(tmp_path: Path) -> None:
    check_peers("vmtouch")
    out = bench(tmp_path, "--files", "20,30", "--only=tree-20")
    for case in ("info-tree-20", "lines-tree-20", "evict-tree-20", "warm-tree-20"):
        assert f" {case} " in out
    assert "tree-30" not in out
    for command in ("iommap evict -s", "vmtouch -e", "iommap warm -s", "vmtouch -t"):
        assert command in out
    out = bench(tmp_path, "--only", "startup")
    assert "python -c pass" in out and "(target <= 1.5x)" in out
