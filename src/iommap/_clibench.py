"""``iommap bench-cli``: iommap's page commands against vmtouch and fincore."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bench-cli", help="iommap's page commands against vmtouch and fincore"
    )
    parser.set_defaults(run=lambda args: 0)
