"""``python -m iommap demo``: a short self-demonstration.

It creates a file, writes, reads back, syncs, grows the file, shrinks it
from outside the handle (as another process would), shows the SigbusError
the process survives, and restores service with truncate.
"""

import os
import tempfile

import iommap


def add_parser(commands):
    parser = commands.add_parser(
        "demo",
        help="show iommap at work on a temporary file",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--dir", help="where to create the demo file (default: a temp dir)")
    parser.set_defaults(run=run)


def run(args):
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "demo.bin")
        page = os.sysconf("SC_PAGE_SIZE")

        with iommap.open(path, create=True, size=page) as m:
            print(f"created {path} and mapped it: {len(m)} bytes")

            m.pwrite(0, b"hello, ")
            m.pwrite(7, [b"mapped ", [b"world"]])
            print(f"pwrite(0, ...) then pread(0, 19) -> {m.pread(0, 19)!r}")

            buf = bytearray(5)
            m.readinto(7, buf)
            print(f"readinto(7, bytearray(5)) -> {bytes(buf)!r}")

            m.sync()
            with open(path, "rb") as f:
                print(f"sync(); the file now starts with {f.read(19)!r}")

            m.truncate(3 * page)
            m.pwrite(2 * page, b"third page")
            print(f"truncate({3 * page}): the mapping grew to {m.position()} bytes")

            os.truncate(path, page)
            print(f"os.truncate(path, {page}): the file shrank underneath the mapping")
            try:
                m.pread(2 * page, 10)
                print("pread of the vanished page returned: this platform did not fault")
            except iommap.SigbusError as exc:
                print(
                    f"pread of the vanished page -> {type(exc).__name__} "
                    f"(reason={exc.reason!r}, errno={exc.errno}); the process lives on"
                )

            print(f"pread(0, 5) of the page that remains -> {m.pread(0, 5)!r}")
            m.truncate(3 * page)
            print(
                f"truncate({3 * page}) restores service: pread(2 * page, 10) -> "
                f"{m.pread(2 * page, 10)!r} (the shrink dropped that data)"
            )
        print(f"closed: {m.closed}")
    return 0
