"""The iommap command line: ``python -m iommap <command>``."""

import argparse
import sys

from . import _demo, benchmarks


def build_parser():
    parser = argparse.ArgumentParser(
        prog="iommap",
        description="Memory-mapped file I/O that survives a file shrunk underneath it.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    _demo.add_parser(commands)
    benchmarks.add_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
