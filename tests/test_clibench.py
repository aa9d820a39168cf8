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
    out = bench(tmp_path, "--only", "tree", "--json", str(report))
    lines = out.splitlines()
    (iommap_row,) = [line for line in lines if "iommap info -s" in line]
    (peer_row,) = [line for line in lines if line.split()[:1] == ["vmtouch"]]
    assert peer_row.rstrip().endswith("x")  # the ratio iommap / vmtouch
    (target,) = [line for line in lines if " info-tree " in line]
    assert target.split()[0] in ("met", "MISS") and "(target <= 1.0x, <= 64 MiB)" in target
    if target.split()[0] == "MISS":
        assert "start-up" in target  # the gap, and what limits it
    doc = json.loads(report.read_text())
    (case,) = doc["cases"]
    mine, peer = case["contenders"]
    assert mine["name"] == "iommap info -s" and peer["name"] == "vmtouch"
    assert len(mine["seconds"]) == len(peer["seconds"]) == 1
    assert mine["status"] == peer["status"] == [0]
    assert doc["targets"][0]["case"] == "info-tree"
    assert iommap_row
