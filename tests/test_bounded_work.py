"""Work is bounded by the input's size, not by what it expands to.

A pwrite list whose sublists are shared (a DAG: 31 list objects that expand
to 2**30 pieces) is measured without expanding the shared parts: too long
for the mapping is out_of_bounds at once, more pieces than memory could
ever hold is badarg.  Each heavy case runs in a child with a memory limit
and a timeout, so expanding the input (minutes of work, then MemoryError)
fails the test instead of stalling the suite."""

import pytest
from helpers import PAGE, pattern, read_file, run_ok

import iommap


def _dag(leaf, depth):
    a = [leaf]
    for _ in range(depth):
        a = [a, a]
    return a


def test_shared_sublists_are_written_in_full(handle, data_file):
    data = _dag(b"ab", 4)  # 16 pieces
    handle.pwrite(10, data)
    assert handle.pread(10, 32) == b"ab" * 16
    t = (b"x", [b"yz", (b"", bytearray(b"w"))])
    handle.pwrite(0, [t, t, [t]])
    assert handle.pread(0, 12) == b"xyzw" * 3


def test_cycles_and_deep_nesting_stay_badarg(handle):
    a = [b"x"]
    a.append(a)
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pwrite(0, a)
    a = [b"y"] * 2
    a.append(a)
    a.insert(0, a)  # a cycle reached twice from every level
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pwrite(0, a)
    deep = b"z"
    for _ in range(101):
        deep = [deep]
    with pytest.raises(iommap.BadArgumentValueError):
        handle.pwrite(0, deep)


def _limited(code, **variables):
    """Runs `code` in a child with 2 GiB of address space to spare, and 60 s.

    (Spare: AddressSanitizer reserves terabytes of address space up front.)"""
    run_ok(
        (
            """
            import resource, iommap
            with open("/proc/self/status") as status:
                vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
            limit = vm * 1024 + (2 << 30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            """,
            code,
        ),
        timeout=60,
        **variables,
    )


def test_a_dag_longer_than_the_mapping_is_out_of_bounds_at_once(make_file):
    path = make_file(pattern(4 * PAGE))
    _limited(
        """
        a = [b"x" * 4096]
        for _ in range(30):
            a = [a, a]        # 31 lists, 2**30 pieces, 4 TiB
        with iommap.open(path) as m:
            for _ in range(30):  # each refusal is cheap
                try:
                    m.pwrite(0, a)
                except iommap.OutOfBoundsError as e:
                    assert e.reason == "out_of_bounds"
                    assert str(2**42) in str(e), str(e)  # the total is named
                else:
                    raise AssertionError("wrote 4 TiB into 16 KiB")
            assert m.pread(0, 4 * page) == original
        print("OK")
        """,
        path=path,
        page=PAGE,
        original=pattern(4 * PAGE),
    )
    assert read_file(path) == pattern(4 * PAGE)


def test_more_pieces_than_memory_can_hold_is_badarg(make_file):
    path = make_file(pattern(PAGE))
    _limited(
        """
        a = [b""]
        for _ in range(50):
            a = [a, a]        # 2**50 empty pieces: 0 bytes, no memory to list them
        with iommap.open(path) as m:
            try:
                m.pwrite(0, a)
            except iommap.BadArgumentValueError as e:
                assert e.reason == "badarg" and "pieces" in str(e), str(e)
            else:
                raise AssertionError("expanded 2**50 pieces")
        print("OK")
        """,
        path=path,
    )


def test_a_dag_that_fits_is_written(make_file):
    path = make_file(bytes(PAGE))
    _limited(
        """
        a = [b"0123456789abcdef"]
        for _ in range(8):
            a = [a, (a,)]     # 256 pieces of 16 bytes: one page
        with iommap.open(path) as m:
            m.pwrite(0, a)
            assert m.pread(0, page) == b"0123456789abcdef" * (page // 16)
        print("OK")
        """,
        path=path,
        page=PAGE,
    )


@pytest.mark.parametrize("count", [2**40, 2**62])
@pytest.mark.parametrize("call", ["gather", "scatter"])
def test_offsets_that_cannot_fit_in_memory_are_badarg(make_file, call, count):
    # range(n) is a sequence of n ints: materialising it is the expansion.
    path = make_file(pattern(PAGE))
    _limited(
        """
        with iommap.open(path) as m:
            try:
                if call == "gather":
                    m.gather(range(count), 0)
                else:
                    m.scatter(range(count), 0, b"")
            except iommap.BadArgumentValueError as e:
                assert e.reason == "badarg", e
            else:
                raise AssertionError("read %d offsets" % count)
        print("OK")
        """,
        path=path,
        call=call,
        count=count,
    )
