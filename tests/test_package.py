"""The package itself: a compiled core, no pure-Python fallback."""

import importlib.machinery
import sys

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
