"""Check what `python -m build` made before anything is installed from it.

    python .ci/check_dist.py DIST_DIR C_FILE...

The sdist must hold every C source and header of the tree (or the wheel
built from it would not compile elsewhere), the stubs and the license; the
wheel must hold the compiled core, the stubs and py.typed, and no C sources.
Exits 1 with what is missing.
"""

from __future__ import annotations

import glob
import os
import sys
import tarfile
import zipfile


def only(pattern: str) -> str:
    found = glob.glob(pattern)
    if len(found) != 1:
        sys.exit(f"check_dist: expected one {pattern}, found {found}")
    return found[0]


def main(argv: list[str]) -> int:
    dist, c_files = argv[0], argv[1:]
    if not c_files:
        sys.exit("check_dist: no C files given")
    problems = []

    sdist = only(os.path.join(dist, "*.tar.gz"))
    with tarfile.open(sdist) as tar:
        # Names are "iommap-VERSION/path/in/tree".
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = [*c_files, "src/iommap/_core.pyi", "src/iommap/py.typed", "LICENSE", "README.md"]
    problems += [f"{sdist}: missing {f}" for f in wanted if f not in in_sdist]

    wheel = only(os.path.join(dist, "*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = whl.namelist()
    for f in ("iommap/__init__.py", "iommap/_core.pyi", "iommap/py.typed"):
        if f not in in_wheel:
            problems.append(f"{wheel}: missing {f}")
    if not any(f.startswith("iommap/_core.") and f.endswith(".so") for f in in_wheel):
        problems.append(f"{wheel}: no compiled iommap/_core extension")
    if not any(f.endswith("/licenses/LICENSE") for f in in_wheel):
        problems.append(f"{wheel}: no LICENSE in the .dist-info")
    problems += [f"{wheel}: ships C source {f}" for f in in_wheel if f.endswith((".c", ".h"))]

    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"check_dist: {sdist} has all {len(c_files)} C files; {wheel} is complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
