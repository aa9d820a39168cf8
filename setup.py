"""Describes the C extension; everything else lives in pyproject.toml.

IOMMAP_SANITIZE=1 builds the core with AddressSanitizer and UBSan.
"""

import glob
import os

from setuptools import Extension, setup

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"]
extra_link_args = []
if os.environ.get("IOMMAP_WERROR"):
    extra_compile_args.append("-Werror")
if os.environ.get("IOMMAP_SANITIZE"):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_compile_args += flags
    extra_link_args += flags

setup(
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
    ]
)
