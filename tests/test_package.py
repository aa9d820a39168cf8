"""The package itself: a compiled core, no pure-Python fallback."""

import importlib.machinery
import re
import sys
from pathlib import Path

import iommap
import iommap._core


def test_core_is_a_compiled_extension():
    spec = iommap._core.__spec__
    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    assert spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_public_callables_come_from_the_core():
    assert iommap.open is iommap._core.open
    assert iommap.MappedFile is iommap._core.MappedFile
    assert iommap.MappedFile.__module__ in ("iommap", "iommap._core")


def test_version():
    assert isinstance(iommap.__version__, str) and iommap.__version__
    assert sys.version_info >= (3, 10)


def test_pre_commit_runs_the_linters_make_lint_pins():
    # .pre-commit-config.yaml installs ruff and clang-format itself: the same
    # versions as the `dev` extra, or a commit would be checked by other rules
    # than `make lint` and CI.
    root = Path(__file__).resolve().parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    hooks = (root / ".pre-commit-config.yaml").read_text()
    for tool in ("ruff", "clang-format"):
        pinned = re.findall(r'"%s==([^"]+)"' % tool, pyproject)
        in_hooks = set(re.findall(r'"%s==([^"]+)"' % tool, hooks))
        assert len(pinned) == 1 and in_hooks == set(pinned), (tool, pinned, in_hooks)
