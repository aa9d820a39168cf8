"""Side-by-side benchmarks of iommap and the standard library's ways to do the same.

    python -m iommap bench [--quick] [--size 1G] [--json PATH] [--plot PATH.png]

The suite measures small random reads and writes (ns/op), large reads on one
and several threads (GB/s), and the limits in the same run: memcpy bandwidth
and the interpreter's call floor.  Every figure is meant to be read as a
ratio to stdlib ``mmap`` or to the limit, from the same run on the same
machine; absolute numbers move with the machine and its load.

From Python:

    from iommap.benchmarks import main
    main(["--quick", "--json", "bench.json"])
"""

from ._cli import add_parser, build_parser, main, parse_size, run, run_parsed
from ._report import TARGETS, speed_ratio
from ._suite import build_groups

__all__ = [
    "main",
    "add_parser",
    "build_parser",
    "run",
    "run_parsed",
    "parse_size",
    "build_groups",
    "TARGETS",
    "speed_ratio",
]
