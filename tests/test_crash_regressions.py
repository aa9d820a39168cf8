"""One test per crash (or silent corruption) the robustness checks found.

Each runs in a subprocess, so a regression fails the test instead of
killing the test run.  The docstring says what crashed and what fixed it.
"""

import pytest
from helpers import run_child, sparse_8_tib


def test_pwrite_total_that_wraps_size_t_is_out_of_bounds(tmp_path):
    """pwrite summed the lengths of a list's buffers in a size_t that could
    wrap: the same 8 TiB buffer 2**21 times adds up to exactly 2**64.  With a
    16-byte buffer in front the total wrapped to 16, passed the bounds check,
    and the copy ran a terabyte past the mapping (SIGSEGV).  Without it the
    total wrapped to 0 and pwrite returned success having written nothing.
    Fixed by saturating the total at SIZE_MAX, which is out of bounds."""
    big = sparse_8_tib(tmp_path / "big")
    proc = run_child(
        """
        import mmap, os, sys
        import iommap
        big, small = sys.argv[1], sys.argv[2]
        fd = os.open(big, os.O_RDONLY)
        try:
            view = memoryview(mmap.mmap(fd, 1 << 43, prot=mmap.PROT_READ))
        except OSError as e:  # no 8 TiB of address space (a sanitizer's shadow)
            print("skip:", e)
            sys.exit(0)
        with iommap.open(small, create=True, size=4096) as m:
            m.pwrite(0, b"keep")
            for data in ([view] * (1 << 21), [b"x" * 16] + [view] * (1 << 21)):
                try:
                    m.pwrite(0, data)
                except iommap.OutOfBoundsError:
                    pass
                else:
                    sys.exit("pwrite of 2**64 bytes into 4096 returned")
            assert m.pread(0, 4) == b"keep", m.pread(0, 4)
        print("ok")
        """,
        args=(str(big), str(tmp_path / "small")),
        timeout=120,
    )
    if proc.stdout.startswith("skip:"):
        pytest.skip(proc.stdout.strip())
    assert proc.stdout.strip() == "ok"


def test_readinto_and_gather_refuse_buffers_of_object_pointers(tmp_path):
    """A numpy object array exports its PyObject* slots as a writable
    buffer.  readinto (and gather's out=) filled them with file bytes, and the
    interpreter crashed (SIGSEGV) when the array was freed.  Found by
    tests/test_fuzz_args.py.  Fixed by refusing, as badarg TypeError, any
    destination whose buffer format holds an object ('O')."""
    pytest.importorskip("numpy")
    proc = run_child(
        """
        import sys
        import numpy as np
        import iommap
        with iommap.open(sys.argv[1], create=True, size=4096) as m:
            m.pwrite(0, b"\\xff" * 4096)
            for a in (np.array([b"x", None], dtype=object),
                      np.zeros(2, dtype=[("f", "f8"), ("o", "O")])):
                for call in (lambda: m.readinto(0, a), lambda: m.gather([0], a.nbytes, a)):
                    try:
                        call()
                    except iommap.BadArgumentTypeError:
                        pass
                    else:
                        sys.exit("filled an object array with file bytes")
                del a  # frees the array: this is where it crashed
            # A field merely named with an O is plain data.
            plain = np.zeros(2, dtype=[("Offset", "i8")])
            assert m.readinto(0, plain) == 16
        print("ok")
        """,
        args=(str(tmp_path / "f"),),
    )
    assert proc.stdout.strip() == "ok"


def test_fork_while_another_thread_holds_the_handle_lock(tmp_path):
    """Not a crash but a hang: a child forked while another parent thread was
    inside a call (holding the handle's lock with the GIL released) inherited
    the lock held, and its first pwrite/truncate/close waited forever.  Fixed
    by a pthread_atfork child handler and a per-handle lock generation (the
    child re-initialises a lock from before the fork on first use).  The full
    scenario is tests/test_fork.py; this is a shorter run of it."""
    from test_fork import LOCK_HELD_AT_FORK, run

    run(tmp_path, "FORKS = 5\n" + LOCK_HELD_AT_FORK, timeout=120)
