"""The handle and mapping types behave like the standard library's: they are
immutable, cannot be instantiated directly, and handles support weak
references."""

import gc
import mmap
import weakref

import pytest
from helpers import run_ok

import iommap
from iommap import _core


def _types():
    return [iommap.MappedFile, _core.Mapping]


@pytest.mark.parametrize("cls", _types(), ids=lambda c: c.__name__)
def test_types_are_immutable(cls):
    with pytest.raises(TypeError):
        cls.extra = 1
    with pytest.raises(TypeError):
        cls.close = None
    with pytest.raises(TypeError):
        del cls.__doc__
    assert not hasattr(cls, "extra")
    with pytest.raises(TypeError):  # as for mmap.mmap
        mmap.mmap.extra = 1


@pytest.mark.parametrize("cls", _types(), ids=lambda c: c.__name__)
def test_types_cannot_be_instantiated_directly(cls):
    with pytest.raises(TypeError):
        cls()
    with pytest.raises(TypeError):
        cls.__new__(cls)


def test_mapped_file_cannot_be_subclassed():
    with pytest.raises(TypeError):

        class Mine(iommap.MappedFile):  # type: ignore[misc]
            pass


def test_handles_support_weak_references(data_file):
    m = iommap.open(data_file)
    ref = weakref.ref(m)
    assert ref() is m
    cache = weakref.WeakKeyDictionary()
    cache[m] = "metadata"
    assert cache[m] == "metadata"
    m.close()
    assert ref() is m  # closing is not dying
    del m
    gc.collect()
    assert ref() is None
    assert len(cache) == 0


def test_weak_reference_to_an_unclosed_handle_dies_with_it(data_file):
    # The handle is closed (with a ResourceWarning) when collected; the weak
    # reference's callback runs and sees it gone.
    seen = []
    m = iommap.open(data_file)
    ref = weakref.ref(m, seen.append)
    with pytest.warns(ResourceWarning):
        del m
        gc.collect()
    assert ref() is None and seen == [ref]


def test_weak_proxy_to_a_handle(data_file):
    with iommap.open(data_file) as m:
        proxy = weakref.proxy(m)
        assert proxy.pread(0, 3) == m.pread(0, 3)
        assert len(proxy) == len(m)


def test_instantiation_attempts_never_crash():
    # Whatever the Python version, a MappedFile made any other way than by
    # iommap.open() is refused: never a zeroed object (whose close() would
    # close descriptor 0).
    run_ok(
        """
        import os, iommap
        for make in (lambda: iommap.MappedFile(),
                     lambda: iommap.MappedFile.__new__(iommap.MappedFile),
                     lambda: object.__new__(iommap.MappedFile)):
            try:
                m = make()
            except TypeError:
                continue
            raise AssertionError("made %r" % type(m))
        os.fstat(0)
        print("OK")
        """
    )
