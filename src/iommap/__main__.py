"""The iommap command line: ``iommap <command>`` or ``python -m iommap <command>``.

Each command lives in its own module, which registers itself with
``add_parser(commands)`` and sets ``run(args) -> exit status``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Callable

from . import _cli, _demo, benchmarks
from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iommap",
        description="Memory-mapped file I/O that survives a file shrunk underneath it; "
        "page-cache tools built on it.",
        epilog=_cli.MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"iommap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    _cli.add_parsers(commands)
    _demo.add_parser(commands)
    benchmarks.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return _cli.run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
