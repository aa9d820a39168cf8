"""Side-by-side benchmarks of iommap and the standard library's ways to do the same.

    python -m iommap bench [--quick] [--size 1G] [--only TEXT] [--json PATH] [--plot PATH.png]

The suite measures small random reads and writes (ns/op), large reads on one
and several threads (GB/s), and the limits in the same run: memcpy bandwidth
and the interpreter's call floor.  The workloads (``--only workloads``) time
five real jobs the way people write them today against iommap's way.  Every
figure is meant to be read as a ratio, from the same run on the same
machine; absolute numbers move with the machine and its load.
"""

from ._cli import add_parser, main

__all__ = ["main", "add_parser"]
