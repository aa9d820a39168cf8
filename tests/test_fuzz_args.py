"""Argument fuzzing: every public call fed wrong types, huge and negative
integers, subclasses of bytes/int/str, and objects that misbehave while
iommap converts them (an ``__index__`` that raises, returns a non-int,
closes the handle, resizes the file; a buffer export that fails; on Python
3.12+ a ``__buffer__`` that closes the handle or mutates the list being
written).

Every call must return normally or raise one of:
- an ``iommap.Error`` of the documented kind (a wrong type is badarg
  ``TypeError``, a negative number badarg ``ValueError``, past the end
  ``out_of_bounds``, a shrunk file ``sigbus``, a closed handle ``closed``),
- the argument's own exception, unchanged (``Boom`` below), when its
  ``__index__``/``__fspath__``/``__buffer__`` raised it,
- a plain ``TypeError`` raised by Python itself (``__index__`` returned a
  non-int; a wrong number of arguments) or by an argument's own
  ``__index__`` (a numpy array that is not a scalar),
and never anything else (``OverflowError``, ``SystemError``,
``MemoryError``), never a crash, and never a partial write: a failed
``pwrite``/``scatter`` leaves the mapped bytes as they were.

The fuzz loop runs in a subprocess (``main()`` below) so that a crash fails
the test with the child's output.
"""

import array
import itertools
import mmap
import os
import random
import sys
import tempfile

from helpers import run_child

import iommap

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 3 * 4096


class Boom(Exception):
    """Raised by the misbehaving arguments: must come out unchanged."""


class Idx:
    """An object whose __index__ runs `action` and then returns `value`."""

    def __init__(self, value, action=None, name=""):
        self.value = value
        self.action = action
        self.name = name

    def __index__(self):
        if self.action is not None:
            self.action()
        return self.value

    def __repr__(self):
        return "Idx(%r, %s)" % (self.value, self.name)


class MyInt(int):
    def __index__(self):  # never called: an int subclass is an int
        raise Boom("MyInt.__index__")


class MyBytes(bytes):
    pass


class MyByteArray(bytearray):
    pass


class MyStr(str):
    pass


class Path:
    def __init__(self, value):
        self.value = value

    def __fspath__(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


class Fuzzer:
    def __init__(self, tmpdir, seed):
        self.dir = tmpdir
        self.path = os.path.join(tmpdir, "f")
        self.rng = random.Random(seed)
        self.calls = 0
        self.m = None
        self.reset()

    # ---- the handle under test, reset after every call -----------------------

    def reset(self):
        if self.m is not None:
            self.m.close()
        with open(self.path, "wb") as f:
            f.write(bytes(range(256)) * (SIZE // 256))
        self.m = iommap.open(self.path)

    def close_it(self):
        self.m.close()

    def shrink_it(self):
        self.m.truncate(100)

    def grow_it(self):
        self.m.truncate(SIZE * 2)

    def shrink_outside(self):
        os.truncate(self.path, 0)

    def boom(self):
        raise Boom("from __index__")

    # ---- values ------------------------------------------------------------

    def bad_ints(self):
        """Things passed where an offset/length/size goes."""
        return [
            None,
            1.0,
            1.5,
            "1",
            b"1",
            [],
            (),
            {},
            object(),
            1j,
            float("nan"),
            -1,
            -(2**63),
            -(2**100),
            2**63 - 1,
            2**63,
            2**64 - 1,
            2**64,
            2**100,
            2**1000,
            True,
            False,
            MyInt(5),
            MyInt(-5),
            MyInt(2**80),
            Idx(3),
            Idx(-3),
            Idx(2**70),
            Idx("x", name="non-int"),
            Idx(1.5, name="float"),
            Idx(0, self.boom, "raises"),
            Idx(0, self.close_it, "closes"),
            Idx(0, self.shrink_it, "shrinks"),
            Idx(0, self.grow_it, "grows"),
            Idx(0, self.shrink_outside, "shrinks-outside"),
            Idx(SIZE - 1, self.shrink_outside, "shrinks-outside-end"),
        ]

    def bad_buffers(self):
        """Things passed where data or a destination buffer goes."""
        released = memoryview(b"released")
        released.release()
        closed_mmap = mmap.mmap(-1, 4096)
        closed_mmap.close()
        values = [
            None,
            1,
            "str",
            MyStr("str"),
            b"",
            b"abc",
            MyBytes(b"abc"),
            bytearray(b"abc"),
            MyByteArray(b"abc"),
            bytearray(SIZE + 1),
            memoryview(b"abcdef")[::2],
            memoryview(bytearray(8))[::2],
            memoryview(bytearray(16)).cast("d"),
            released,
            closed_mmap,
            array.array("d", [1.0, 2.0]),
            array.array("b"),
            [b"a", "b"],
            [b"a", 1],
            [b"a", [b"b", [b"c", [None]]]],
            [b"a", released],
            (b"a", b"b"),
            [b"x"] * 1000,
            [[[[[b"deep"]]]]],
            [released],
            [memoryview(b"abcd")[::2]],
            object(),
            3.5,
            {b"a": 1},
        ]
        cycle = [b"a"]
        cycle.append(cycle)
        deep = b"x"
        for _ in range(150):
            deep = [deep]
        values += [cycle, deep]
        if sys.version_info >= (3, 12):
            values += self.buffer_exporters()
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            ro = np.zeros(8, dtype=np.uint8)
            ro.flags.writeable = False
            values += [
                np.zeros(16, dtype=np.uint8)[::2],
                ro,
                np.zeros((4, 4), dtype=np.float64),
                np.zeros((4, 4), dtype=np.float64).T,
                np.array([b"ab", None], dtype=object),
                np.zeros(0, dtype=np.int64),
            ]
        return values

    def buffer_exporters(self):
        """Python 3.12+: objects whose buffer export runs Python code."""

        class Exporter:
            def __init__(self, action, backing):
                self.action = action
                self.backing = backing

            def __buffer__(self, flags):
                self.action()
                return memoryview(self.backing)

            def __release_buffer__(self, view):
                view.release()

        shared_list = [b"head"]

        def mutate_list():
            shared_list.clear()
            shared_list.extend([b"x"] * 100)

        exporters = [
            Exporter(self.boom, bytearray(8)),
            Exporter(self.close_it, bytearray(8)),
            Exporter(self.shrink_it, bytearray(8)),
            Exporter(self.shrink_outside, bytearray(8)),
            Exporter(mutate_list, bytearray(8)),
        ]
        shared_list.append(exporters[-1])
        return exporters + [[b"a", e] for e in exporters] + [shared_list]

    # ---- the calls ---------------------------------------------------------

    def call(self, name, fn, args, kwargs=None, *, writes=False):
        """Calls fn; checks the outcome; resets the handle."""
        self.calls += 1
        before = None
        if writes and not self.m.closed:
            before = self.m.pread(0, len(self.m))
        try:
            fn(*args, **(kwargs or {}))
        except iommap.Error as e:
            self.check_error(name, args, e)
            if (
                before is not None
                and not self.m.closed
                and len(self.m) == len(before)
                and os.path.getsize(self.path) == len(before)
            ):
                if not isinstance(e, iommap.SigbusError):
                    after = self.m.pread(0, len(self.m))
                    assert after == before, "%s%r failed (%r) but changed the file" % (
                        name,
                        args,
                        e,
                    )
        except Boom:
            pass
        except TypeError as e:
            # Python's own (wrong argument count, __index__ returned a
            # non-int) or an argument's own __index__ refusing (numpy arrays).
            assert type(e) is TypeError, (name, args, e)
        except BaseException as e:
            raise AssertionError("%s%r raised %r" % (name, args, e)) from e
        self.reset()

    def check_error(self, name, args, e):
        assert isinstance(e.reason, str), (name, args, e)
        assert not isinstance(e, (OverflowError, SystemError, MemoryError)), (name, args, e)
        if e.reason == "badarg":
            assert isinstance(e, (TypeError, ValueError)), (name, args, e)
        elif e.reason == "closed":
            assert isinstance(e, ValueError)
        elif e.reason == "out_of_bounds":
            assert isinstance(e, IndexError)
        elif e.reason == "sigbus":
            assert isinstance(e, OSError)
        else:
            assert isinstance(e, OSError) and e.errno, (name, args, e)

    def run(self):
        good_int = 0
        m = lambda: self.m  # noqa: E731  (the handle changes at every reset)
        int_calls = [
            ("pread", lambda *a: m().pread(*a), [0, 16]),
            ("readinto", lambda *a: m().readinto(*a), [0, bytearray(16)]),
            ("pwrite", lambda *a: m().pwrite(*a), [0, b"data"]),
            ("truncate", lambda *a: m().truncate(*a), [SIZE]),
            ("advise", lambda *a: m().advise(*a), [0, 0, "normal"]),
            ("sync", lambda *a: m().sync(*a), ["sync", 0, 0]),
            ("view", lambda *a: m().view(*a), [0, 16]),
            ("gather", lambda *a: m().gather(*a), [[0, 8], 4]),
            ("scatter", lambda *a: m().scatter(*a), [[0, 8], 4, b"abcdefgh"]),
            ("resident", lambda *a: m().resident(*a), [0, 0]),
            ("residency", lambda *a: m().residency(*a), [0, 0]),
        ]
        writers = {"pwrite", "scatter", "truncate"}
        bad_ints = self.bad_ints()
        bad_buffers = self.bad_buffers()
        bad_strs = [
            None,
            1,
            b"sync",
            "",
            "nope",
            MyStr("normal"),
            MyStr("sync"),
            "normal\0",
            "\udcff",
            "SYNC",
            Idx(0),
        ]

        for name, fn, good in int_calls:
            for i, arg in enumerate(good):
                if isinstance(arg, int):
                    pool = bad_ints
                elif isinstance(arg, str):
                    pool = bad_strs
                elif isinstance(arg, list):
                    pool = (
                        bad_buffers
                        + bad_ints
                        + [[x] for x in bad_ints]
                        + [[0, x] for x in bad_ints]
                    )
                else:
                    pool = bad_buffers
                for bad in pool:
                    args = list(good)
                    args[i] = bad
                    self.call(name, fn, args, writes=name in writers)
            # Wrong argument counts.
            for n in range(len(good) + 3):
                self.call(name, fn, [good_int] * n, writes=name in writers)

        # Random mixtures of bad values in every position.
        for _ in range(3000):
            name, fn, good = self.rng.choice(int_calls)
            args = []
            for arg in good:
                r = self.rng.random()
                if r < 0.4:
                    args.append(arg)
                else:
                    args.append(self.rng.choice(bad_ints + bad_buffers + bad_strs))
            self.call(name, fn, args, writes=name in writers)

        # gather with out= and offsets that misbehave.
        offsets_pool = [
            array.array("q", [0, 8]),
            array.array("Q", [0, 2**64 - 1]),
            array.array("q", [-1]),
            array.array("i", [0, 8]),
            array.array("d", [0.0]),
            memoryview(b"\0" * 16).cast("q"),
            memoryview(b"\0" * 16).cast("q")[::2],
            b"\0" * 16,
            "01",
            [0, MyInt(8)],
            [Idx(0, self.close_it)],
            [Idx(0, self.shrink_outside), 8],
            range(0, 16, 8),
            iter([0, 8]),
            {0: 0},
            [0] * 10000,
        ]
        mutating = [0, 8]
        mutating.insert(1, Idx(0, lambda: mutating.clear()))
        growing = [0]
        growing.append(Idx(0, lambda: growing.extend([0] * 5)))
        offsets_pool += [mutating, growing]
        outs = [
            None,
            bytearray(8),
            bytearray(9),
            b"12345678",
            memoryview(bytearray(16))[::2],
            array.array("d", [0.0]),
            "xxxxxxxx",
        ]
        for offsets, out in itertools.product(offsets_pool, outs):
            self.call("gather", lambda *a: self.m.gather(*a), [offsets, 4, out])
            self.call(
                "scatter",
                lambda *a: self.m.scatter(*a),
                [offsets, 4, out if out is not None else b"12345678"],
                writes=True,
            )
        for offsets in offsets_pool:
            self.call("gather", lambda *a, **k: self.m.gather(*a, **k), [offsets, 4], {"out": None})

        # open() with every argument wrong in turn.
        good_open = {
            "mode": "read_write",
            "private": False,
            "lock": False,
            "populate": False,
            "nocache": False,
            "create": False,
            "truncate": False,
            "size": None,
        }
        for key in good_open:
            pool = bad_strs if key == "mode" else bad_ints + [Path(self.path)]
            for bad in pool:
                kwargs = dict(good_open, **{key: bad})
                self.call("open", self.open_and_close, [self.path], kwargs)
        paths = [
            None,
            1,
            1.5,
            b"",
            "",
            "\0",
            b"a\0b",
            "\udcff",
            Path(self.path),
            Path(Boom("fspath")),
            Path(1),
            Path(None),
            Path(b"bytes\0"),
            Path(Path("x")),
            self.dir,
            "/nonexistent/x",
            os.path.join(self.path, "sub"),
            MyStr(self.path),
            MyBytes(self.path.encode()),
            bytearray(self.path.encode()),
            memoryview(self.path.encode()),
        ]
        for p in paths:
            for kwargs in ({}, {"mode": "read"}, {"create": True, "size": 10}):
                self.call("open", self.open_and_close, [p], kwargs)
        for bad in (-1, 2**63, 2**64, 2**100):
            self.call(
                "open",
                self.open_and_close,
                [os.path.join(self.dir, "big")],
                {"create": True, "size": bad},
            )

        # The other methods and protocols, on open and closed handles.
        for closed in (False, True):
            if closed:
                self.m.close()
            for name in ("position", "close", "__enter__", "__len__", "__repr__"):
                self.call(name, getattr(self.m, name), [])
                self.m.close() if closed else None
            for args in ((), (None, None, None), (1, 2, 3, 4)):
                self.call("__exit__", self.m.__exit__, args)
            self.call("pickle", self.pickle, [])
        return self.calls

    def open_and_close(self, *args, **kwargs):
        iommap.open(*args, **kwargs).close()

    def pickle(self):
        import pickle

        try:
            pickle.dumps(self.m)
        except TypeError as e:
            assert not isinstance(e, iommap.Error)
            return
        raise AssertionError("a handle was pickled")


def main():
    import warnings

    warnings.simplefilter("ignore", ResourceWarning)
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)  # relative paths the fuzzer opens with create=True land here
        f = Fuzzer(d, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
        n = f.run()
        f.m.close()
    print("calls:", n)


def test_every_public_call_survives_bad_arguments():
    proc = run_child(
        """
        import os, sys
        sys.path.insert(0, %r)
        import test_fuzz_args
        test_fuzz_args.main()
        """
        % HERE,
        args=("0",),
        timeout=300,
    )
    calls = int(proc.stdout.split("calls:")[1])
    assert calls > 4000, proc.stdout
