"""Compiles and links the C core for other systems, with zig's cross compiler.

    python tools/cross_check.py [--zig "python -m ziglang"] [TARGET ...]

Every src/iommap/_core/*.c is compiled for each zig target below with the
project's flags (-std=gnu11 -Wall -Wextra -Werror), against that system's
own C library headers (which zig carries) and this interpreter's Python
headers, with a pyconfig.h written for the target (the host's would give it
Linux's feature macros).  Then the objects are linked into a shared library
against the target's C library, with undefined symbols an error: every
symbol the core uses must exist there, except Python's own, which a stub
object supplies (the names are taken from what the linker reports missing;
only names of Python's API go into the stub).

docs/platforms.md says what the pyconfig.h carries and why.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "src" / "iommap" / "_core"

TARGETS = [
    "x86_64-macos",
    "aarch64-macos",
    "x86_64-freebsd",
    "aarch64-freebsd",
    "x86_64-netbsd",
    "x86_64-openbsd",
    "aarch64-openbsd",
]

# setup.py's flags, -Werror included (IOMMAP_WERROR=1), plus -fPIC as every
# extension is built.
CFLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-fPIC", "-O2"]

# The feature macros CPython's configure defines, as its configure.ac does:
# these on every system (the Linux pyconfig.h carries them all) ...
EVERYWHERE = {"_GNU_SOURCE", "_DARWIN_C_SOURCE", "_NETBSD_SOURCE", "__BSD_VISIBLE"}
# ... these only where define_xopen_source stays "yes": everywhere but
# Darwin (macOS 10.3 on: "Darwin/[12][0-9].*) define_xopen_source=no").
XOPEN = {"_XOPEN_SOURCE", "_XOPEN_SOURCE_EXTENDED", "_POSIX_C_SOURCE", "_ISOC23_SOURCE"}
# ... and on OpenBSD, _BSD_SOURCE, because OpenBSD's <sys/cdefs.h> turns
# __BSD_VISIBLE off when _XOPEN_SOURCE or _POSIX_C_SOURCE is defined unless
# _BSD_SOURCE is too.

# What Python.h (outside Include/internal) consults from pyconfig.h, with the
# values of these seven targets: all LP64 and little-endian.
LP64 = {
    "SIZEOF_INT": "4",
    "SIZEOF_LONG": "8",
    "SIZEOF_LONG_LONG": "8",
    "SIZEOF_VOID_P": "8",
    "SIZEOF_SIZE_T": "8",
    "SIZEOF_UINTPTR_T": "8",
    "SIZEOF_TIME_T": "8",
    "SIZEOF_PID_T": "4",
    "SIZEOF_PTHREAD_T": "8",
    "SIZEOF_WCHAR_T": "4",
    "SIZEOF__BOOL": "1",
    "SIZEOF_SHORT": "2",
    "SIZEOF_FLOAT": "4",
    "SIZEOF_DOUBLE": "8",
    "SIZEOF_OFF_T": "8",
    "SIZEOF_FPOS_T": "8",
    "ALIGNOF_LONG": "8",
    "ALIGNOF_SIZE_T": "8",
    "HAVE_CLOCK_GETTIME": "1",
    "HAVE_FORK": "1",
    "HAVE_LANGINFO_H": "1",
    "HAVE_PTHREAD_H": "1",
    "HAVE_SSIZE_T": "1",
    "HAVE_SYS_SELECT_H": "1",
    "HAVE_SYS_STAT_H": "1",
    "HAVE_SYS_TIME_H": "1",
    "HAVE_WCHAR_H": "1",
    "HAVE_STD_ATOMIC": "1",
    "HAVE_BUILTIN_ATOMIC": "1",
}


def host_feature_macros(pyconfig: Path) -> dict[str, str]:
    """The feature macros (_XOPEN_SOURCE, __BSD_VISIBLE, ...) of a pyconfig.h."""
    found = {}
    for line in pyconfig.read_text().splitlines():
        m = re.match(r"\s*#\s*define\s+(_[A-Z0-9_]+)\s+(\S+)", line)
        if m and m.group(1) in EVERYWHERE | XOPEN:
            found[m.group(1)] = m.group(2)
    return found


def pyconfig_for(target: str, host: dict[str, str]) -> str:
    system = target.split("-")[1]
    lines = [f"/* pyconfig.h for {target}, as CPython's configure would write it */"]
    lines += ["#ifndef Py_PYCONFIG_H", "#define Py_PYCONFIG_H"]
    for name in sorted(host):
        if name in XOPEN and system == "macos":
            continue
        lines.append(f"#define {name} {host[name]}")
    if system == "openbsd":
        lines.append("#define _BSD_SOURCE 1")
    if target.startswith("x86_64-"):
        lines.append("#define HAVE_GCC_ASM_FOR_X87 1")
    lines += [f"#define {k} {v}" for k, v in LP64.items()]
    lines += ["#endif", ""]
    return "\n".join(lines)


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


PYTHON_NAME = re.compile(r"_?_?Py[A-Za-z0-9_]*")


def undefined_symbols(output: str) -> list[str]:
    return re.findall(r"undefined symbol: (\S+)", output)


def check_target(target: str, zig: list[str], build: Path, python_inc: Path) -> tuple[str, str]:
    """Returns (target, "") on success, else (target, the failure)."""
    tdir = build / target
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / "config").mkdir(parents=True)
    host = host_feature_macros(Path(sysconfig.get_config_h_filename()))
    (tdir / "config" / "pyconfig.h").write_text(pyconfig_for(target, host))
    cc = [*zig, "cc", "-target", target]
    incs = [f"-I{tdir / 'config'}", f"-I{python_inc}", f"-I{CORE}"]
    objs = []
    for src in sorted(CORE.glob("*.c")):
        obj = tdir / (src.stem + ".o")
        r = run([*cc, *CFLAGS, *incs, "-c", "-o", str(obj), str(src)])
        if r.returncode != 0:
            return target, f"compile {src.name}:\n{r.stdout}{r.stderr}"
        objs.append(str(obj))
    # Link: undefined symbols are errors; Python's come from a stub that grows
    # with what the linker reports missing (it may report only some at once).
    macos = target.endswith("-macos")
    out = tdir / ("_core.so")
    link = [*cc, "-shared", "-o", str(out), *objs]
    if not macos:
        link += ["-Wl,-z,defs", "-lpthread"]
    stub_names: set[str] = set()
    for _ in range(50):
        extra = []
        if stub_names:
            stub = tdir / "python_stub.c"
            stub.write_text("".join(f"void {n}(void) {{}}\n" for n in sorted(stub_names)))
            stub_obj = tdir / "python_stub.o"
            r = run([*cc, "-fPIC", "-w", "-c", "-o", str(stub_obj), str(stub)])
            if r.returncode != 0:
                return target, f"stub:\n{r.stderr}"
            extra = [str(stub_obj)]
        r = run([*link, *extra])
        if r.returncode == 0:
            return target, ""
        missing = undefined_symbols(r.stdout + r.stderr)
        if macos:
            missing = [m[1:] if m.startswith("_") else m for m in missing]
        others = [m for m in missing if not PYTHON_NAME.fullmatch(m)]
        new = set(missing) - stub_names
        if others or not new:
            return target, f"link:\n{r.stdout}{r.stderr}"
        stub_names |= new
    return target, "link: too many rounds"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zig", default=f"{shlex.quote(sys.executable)} -m ziglang")
    parser.add_argument("--build", default=str(ROOT / "build" / "cross"))
    parser.add_argument("targets", nargs="*", default=TARGETS)
    args = parser.parse_args()
    zig = shlex.split(args.zig)
    build = Path(args.build)
    build.mkdir(parents=True, exist_ok=True)
    # Python's headers without the host's pyconfig.h: Python.h includes it as
    # "pyconfig.h", found first beside itself.
    python_inc = build / "python-include"
    shutil.rmtree(python_inc, ignore_errors=True)
    shutil.copytree(
        sysconfig.get_paths()["include"], python_inc, ignore=shutil.ignore_patterns("pyconfig.h")
    )
    version = run([*zig, "version"]).stdout.strip()
    print(
        f"cross-check: zig {version}, Python {sysconfig.get_python_version()} headers, "
        f"{len(list(CORE.glob('*.c')))} files, {' '.join(CFLAGS)}"
    )
    start = time.monotonic()
    failed = 0
    jobs = int(os.environ.get("CROSS_JOBS", os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for target, failure in pool.map(
            lambda t: check_target(t, zig, build, python_inc), args.targets
        ):
            if failure:
                failed += 1
                print(f"{target}: FAILED {failure.strip()}")
            else:
                print(f"{target}: compiled and linked")
    print(
        f"cross-check: {len(args.targets) - failed} of {len(args.targets)} targets ok "
        f"in {time.monotonic() - start:.1f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
