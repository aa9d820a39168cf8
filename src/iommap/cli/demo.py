"""``python -m iommap demo``: a short self-demonstration.

It creates a file, writes, reads back, syncs, grows the file, shrinks it
from outside the handle (as another process would), shows the SigbusError
the process survives, and restores service with truncate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

import iommap


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="show iommap at work on a temporary file",
        description=(__doc__ or "").splitlines()[0],
        epilog="examples:\n  iommap demo\n  iommap demo --json --dir /var/tmp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", help="where to create the demo file (default: a temp dir)")
    parser.add_argument(
        "--json", action="store_true", help="print the steps as one JSON document, on one line"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    steps: list[dict[str, Any]] = []

    def say(text: str, **facts: Any) -> None:
        steps.append({"step": text, **facts})
        if not args.json:
            print(text)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "demo.bin")
        page = os.sysconf("SC_PAGE_SIZE")

        with iommap.open(path, create=True, size=page) as m:
            say(f"created {path} and mapped it: {len(m)} bytes", size=len(m))

            m.pwrite(0, b"hello, ")
            m.pwrite(7, [b"mapped ", [b"world"]])
            data = m.pread(0, 19)
            say(f"pwrite(0, ...) then pread(0, 19) -> {data!r}", read=data.decode())

            buf = bytearray(5)
            m.readinto(7, buf)
            say(f"readinto(7, bytearray(5)) -> {bytes(buf)!r}", read=buf.decode())

            m.sync()
            with open(path, "rb") as f:
                on_disk = f.read(19)
            say(f"sync(); the file now starts with {on_disk!r}", read=on_disk.decode())

            m.truncate(3 * page)
            m.pwrite(2 * page, b"third page")
            say(f"truncate({3 * page}): the mapping grew to {m.position()} bytes", size=len(m))

            os.truncate(path, page)
            say(
                f"os.truncate(path, {page}): the file shrank underneath the mapping",
                file_size=os.path.getsize(path),
            )
            try:
                m.pread(2 * page, 10)
                say(
                    "pread of the vanished page returned: this platform did not fault", sigbus=False
                )
            except iommap.SigbusError as exc:
                say(
                    f"pread of the vanished page -> {type(exc).__name__} "
                    f"(reason={exc.reason!r}, errno={exc.errno}); the process lives on",
                    sigbus=True,
                    reason=exc.reason,
                    errno=exc.errno,
                )

            data = m.pread(0, 5)
            say(f"pread(0, 5) of the page that remains -> {data!r}", read=data.decode())
            m.truncate(3 * page)
            data = m.pread(2 * page, 10)
            say(
                f"truncate({3 * page}) restores service: pread(2 * page, 10) -> "
                f"{data!r} (the shrink dropped that data)",
                read_hex=data.hex(),
            )
        say(f"closed: {m.closed}", closed=m.closed)

    if args.json:
        json.dump({"command": "demo", "steps": steps}, sys.stdout)
        sys.stdout.write("\n")
    return 0
