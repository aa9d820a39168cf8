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

from . import _cli
from ._version import __version__


def build_parser(*, page_commands_only: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _cli.ArgumentParser(
        prog="iommap",
        description="Memory-mapped file I/O that survives a file shrunk underneath it; "
        "page-cache tools built on it.",
        epilog=_cli.MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"iommap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    _cli.add_parsers(commands)
    if not page_commands_only:
        from . import _clibench, _demo, benchmarks

        _demo.add_parser(commands)
        benchmarks.add_parser(commands)
        _clibench.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    page_only = bool(args) and args[0] in _cli.PAGE_COMMANDS
    return _cli.main(build_parser(page_commands_only=page_only), args)


if __name__ == "__main__":
    sys.exit(main())
