"""Describes the C extension; everything else lives in pyproject.toml.

The core is GNU C (gnu11): it uses __attribute__, statement asm and
__builtin_mul_overflow, which GCC and Clang both provide.

IOMMAP_SANITIZE=1 builds the core with AddressSanitizer and UBSan.
IOMMAP_WERROR=1 makes compiler warnings errors.
"""

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

extra_compile_args = ["-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"]
extra_link_args = []
if os.environ.get("IOMMAP_WERROR"):
    extra_compile_args.append("-Werror")
if os.environ.get("IOMMAP_SANITIZE"):
    flags = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer",
        "-O1",
        "-g",
    ]
    extra_compile_args += flags
    extra_link_args += flags


class always_build_ext(build_ext):
    """Compiles the core every time.

    setuptools skips an extension whose output in build/ is newer than its
    sources, whatever the flags: a sanitizer build after a normal one (or the
    reverse) would silently install the other kind.  The core is a few small
    files, so rebuilding costs seconds and rules that out.
    """

    def build_extension(self, ext):
        self.force = True
        super().build_extension(ext)


setup(
    cmdclass={"build_ext": always_build_ext},
    ext_modules=[
        Extension(
            "iommap._core",
            sources=sorted(glob.glob("src/iommap/_core/*.c")),
            depends=sorted(glob.glob("src/iommap/_core/*.h")),
            include_dirs=["src/iommap/_core"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            libraries=["pthread"],
        )
    ],
)
