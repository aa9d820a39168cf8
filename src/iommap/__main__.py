"""The iommap command line: ``iommap <command>`` or ``python -m iommap <command>``.

Each command lives in its own module, which registers itself with
``add_parser(commands)`` and sets ``run(args) -> exit status``. The page
commands (info, warm, evict, lock) start without importing the others: a
shell loop that runs ``iommap info`` on many files pays for no more than it
uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .cli import commands, frame


def build_parser(*, page_commands_only: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = frame.ArgumentParser(
        prog="iommap",
        description="Memory-mapped file I/O that survives a file shrunk underneath it; "
        "page-cache tools built on it.",
        epilog=frame.MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"iommap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="command", required=True)
    commands.add_parsers(subparsers)
    if not page_commands_only:
        from . import benchmarks
        from .benchmarks import _page_commands
        from .cli import demo

        demo.add_parser(subparsers)
        benchmarks.add_parser(subparsers)
        _page_commands.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    page_only = bool(args) and args[0] in frame.PAGE_COMMANDS
    return frame.main(build_parser(page_commands_only=page_only), args)


if __name__ == "__main__":
    sys.exit(main())
