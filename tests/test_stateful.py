"""Model-based test: random sequences of calls on two handles of one file,
plus plain os.pread/os.pwrite/os.truncate from outside, checked against an
in-memory model of the file's bytes.

Every read must return what the model says, and every error must be the one
the model predicts: ClosedError, OutOfBoundsError (the handle's own mapped
size), PermissionError for a call the mode refuses, and SigbusError exactly
when the range reaches a page the file no longer has.

What the model knows about the kernel (Linux, shared mappings):
- A mapping shows the file's page-cache pages.  Pages wholly past the end of
  the file are gone: touching them is SIGBUS.  The last, partial page is
  still there; its bytes past the end of the file are the "tail".
- Shrinking a file zeroes the tail of its new last page.
- Bytes written through a mapping into the tail are not part of the file:
  writeback may zero them at any time, and growing the file may or may not
  expose them.  The model marks such bytes unknown (unless they are zero,
  which both outcomes agree on), and never compares unknown bytes.
- A pwrite or scatter cut short by SIGBUS may have written any part of the
  in-file bytes of its range (memmove may copy in any order): unknown too.

The default profile runs 500 examples; IOMMAP_STATEFUL_EXAMPLES overrides it
(``make stateful-long`` runs more).
"""

import errno
import os
import shutil
import tempfile

import hypothesis.strategies as st
from helpers import PAGE
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import iommap

MAX_SIZE = 3 * PAGE + 100

EXAMPLES = int(os.environ.get("IOMMAP_STATEFUL_EXAMPLES", "500"))

sizes = st.one_of(
    st.sampled_from([0, 1, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 2 * PAGE + 7, 3 * PAGE]),
    st.integers(0, MAX_SIZE),
)
modes = st.sampled_from(["read_write"] * 4 + ["read", "write"])
payloads = st.one_of(
    st.binary(min_size=0, max_size=64),
    st.binary(min_size=PAGE - 8, max_size=PAGE + 64),
    st.integers(0, 2 * PAGE).map(lambda n: bytes([n % 251 + 1]) * n),
)
HUGE = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100]


def round_up(n):
    return -(-n // PAGE) * PAGE


class FileModel:
    """The file's bytes as a mapping sees them: `data` covers every page the
    file has (round_up(size) bytes); past `size` is the tail."""

    def __init__(self):
        self.size = 0
        self.data = bytearray()
        self.known = bytearray()

    @property
    def mapped_end(self):
        return round_up(self.size)

    def resize(self, new):
        old = self.size
        old_end = self.mapped_end
        if new < old:
            # Shrinking zeroes the tail of the new last page.
            end = round_up(new)
            self.data = self.data[:new] + bytes(end - new)
            self.known = self.known[:new] + b"\x01" * (end - new)
        elif new > old:
            # The old tail may or may not be exposed as it was: bytes that are
            # not zero become unknown.
            for i in range(old, old_end):
                if self.data[i] != 0:
                    self.known[i] = 0
            end = round_up(new)
            self.data += bytes(end - old_end)
            self.known += b"\x01" * (end - old_end)
        self.size = new

    def write_file(self, offset, payload):
        """os.pwrite: extends the file if it writes past the end."""
        if not payload:
            return  # writes nothing, extends nothing
        end = offset + len(payload)
        if end > self.size:
            self.resize(end)
        self.data[offset:end] = payload
        self.known[offset:end] = b"\x01" * len(payload)

    def write_mapped(self, offset, payload):
        """A write through a mapping that the model says completes."""
        if not payload:
            return
        end = offset + len(payload)
        assert end <= self.mapped_end
        self.data[offset:end] = payload
        in_file = max(0, min(end, self.size) - offset)
        self.known[offset : offset + in_file] = b"\x01" * in_file
        for i in range(max(offset, self.size), end):
            self.known[i] = 1 if self.data[i] == 0 else 0

    def write_cut_short(self, offset, length):
        """A mapped write that hit SIGBUS: any part of it may have landed."""
        for i in range(offset, min(offset + length, self.mapped_end)):
            self.known[i] = 0

    def faults(self, offset, length):
        return length > 0 and offset + length > self.mapped_end

    def check(self, offset, got, what):
        """Compares `got` with the model at `offset`, skipping unknown bytes."""
        n = len(got)
        expected = bytearray(self.data[offset : offset + n])
        got = bytearray(got)
        assert len(expected) == n, (what, offset, n, len(expected))
        i = self.known.find(0, offset, offset + n)
        while i != -1:
            expected[i - offset] = got[i - offset] = 0
            i = self.known.find(0, i + 1, offset + n)
        if got != expected:
            first = next(k for k in range(n) if got[k] != expected[k])
            raise AssertionError(
                "%s at %d (+%d): first difference at %d: got %r, model %r"
                % (
                    what,
                    offset,
                    n,
                    offset + first,
                    bytes(got[first : first + 16]),
                    bytes(expected[first : first + 16]),
                )
            )


class Handle:
    def __init__(self, m, mode, size):
        self.m = m
        self.mode = mode
        self.size = size  # its mapped size: changes only with its own truncate
        self.closed = False


class TwoHandles(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="iommap-stateful-")
        self.path = os.path.join(self.dir, "f")
        self.model = FileModel()
        self.handles = [None, None]
        with open(self.path, "wb"):
            pass
        self.fd = os.open(self.path, os.O_RDWR)

    def teardown(self):
        for h in self.handles:
            if h is not None:
                h.m.close()
        os.close(self.fd)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- opening -----------------------------------------------------------

    def _open(self, slot, mode, size):
        kwargs = {}
        if mode != "read" and size is not None:
            kwargs["size"] = size
        m = iommap.open(self.path, mode, **kwargs)
        if "size" in kwargs and size > self.model.size:
            self.model.resize(size)
        assert len(m) == self.model.size
        self.handles[slot] = Handle(m, mode, self.model.size)

    @initialize(size=sizes, data=st.data())
    def start(self, size, data):
        os.truncate(self.path, size)
        self.model.resize(size)
        if size:
            payload = data.draw(st.binary(min_size=size, max_size=size))
            os.pwrite(self.fd, payload, 0)
            self.model.write_file(0, payload)
        for slot in (0, 1):
            self._open(slot, data.draw(modes), None)

    @rule(slot=st.sampled_from([0, 1]), mode=modes, size=st.none() | sizes)
    def reopen(self, slot, mode, size):
        old = self.handles[slot]
        old.m.close()
        self._open(slot, mode, size)

    @rule(slot=st.sampled_from([0, 1]))
    def close(self, slot):
        h = self.handles[slot]
        h.m.close()
        h.m.close()  # idempotent
        h.closed = True
        assert h.m.closed

    # ---- the expected outcome of a call -------------------------------------

    def expect_error(self, h, needs, offset, length, *, faults=True):
        """The exception class the call must raise, or None."""
        if h.closed:
            return iommap.ClosedError
        if needs == "read" and h.mode == "write" or needs == "write" and h.mode == "read":
            return PermissionError
        if offset + length > h.size:
            return iommap.OutOfBoundsError
        if faults and self.model.faults(offset, length):
            return iommap.SigbusError
        return None

    def call(self, expected, fn, *args):
        """Runs fn(*args); checks it raised `expected` (or nothing)."""
        event("%s: %s" % (fn.__name__, expected.__name__ if expected else "ok"))
        try:
            result = fn(*args)
        except iommap.Error as e:
            assert expected is not None, "unexpected %r" % e
            assert isinstance(e, expected), "expected %s, got %r" % (expected.__name__, e)
            if expected is PermissionError:
                assert e.reason == "eacces" and e.errno == errno.EACCES
            if expected is iommap.SigbusError:
                assert e.reason == "sigbus" and e.errno == errno.EFAULT
            return e, None
        assert expected is None, "expected %s, got %r" % (expected.__name__, result)
        return None, result

    def pick(self, data):
        """A handle, open ones preferred: calls on a closed one are all alike."""
        slot = data.draw(st.sampled_from([0, 1]), label="slot")
        h = self.handles[slot]
        if h.closed and not self.handles[1 - slot].closed:
            if data.draw(st.integers(0, 4), label="keep_closed") != 0:
                h = self.handles[1 - slot]
        return h

    def draw_range(self, data, h, length=None):
        """Mostly in the handle's bounds (where SIGBUS lives), sometimes not."""
        if length is None:
            length = data.draw(
                st.one_of(st.integers(0, 2 * PAGE + 64), st.sampled_from([0, 1, PAGE])),
                label="length",
            )
        if h.size >= length and data.draw(st.integers(0, 3), label="in_bounds") != 0:
            choices = [st.integers(0, h.size - length), st.sampled_from([0, h.size - length])]
            # Around the last page the file still has: where SIGBUS begins.
            lo = max(0, self.model.mapped_end - length - 8)
            hi = min(h.size - length, self.model.mapped_end - length + 8)
            if lo <= hi:
                choices.append(st.integers(lo, hi))
            offset = data.draw(st.one_of(*choices), label="offset")
        else:
            limit = max(h.size, self.model.mapped_end) + PAGE
            offset = data.draw(
                st.one_of(st.integers(0, limit), st.sampled_from([h.size, h.size + 1])),
                label="offset",
            )
        return offset, length

    # ---- reads -------------------------------------------------------------

    @rule(data=st.data())
    def pread(self, data):
        h = self.pick(data)
        offset, length = self.draw_range(data, h)
        expected = self.expect_error(h, "read", offset, length)
        _, got = self.call(expected, h.m.pread, offset, length)
        if expected is None:
            assert type(got) is bytes and len(got) == length
            self.model.check(offset, got, "pread")

    @rule(data=st.data())
    def readinto(self, data):
        h = self.pick(data)
        offset, length = self.draw_range(data, h)
        buf = bytearray(b"\xee" * length)
        expected = self.expect_error(h, "read", offset, length)
        _, n = self.call(expected, h.m.readinto, offset, buf)
        if expected is None:
            assert n == length
            self.model.check(offset, buf, "readinto")

    @rule(offset=st.sampled_from(HUGE), length=st.sampled_from([0, 1] + HUGE), data=st.data())
    def pread_huge(self, offset, length, data):
        h = self.pick(data)
        if h.closed:
            expected = iommap.ClosedError
        elif h.mode == "write":
            expected = PermissionError
        else:
            expected = iommap.OutOfBoundsError
        self.call(expected, h.m.pread, offset, length)

    def _draw_batch(self, data):
        """A handle, and the offsets and length of a gather or scatter on it."""
        h = self.pick(data)
        length = data.draw(st.integers(0, PAGE + 8), label="length")
        count = data.draw(st.integers(0, 4), label="count")
        offsets = [self.draw_range(data, h, length)[0] for _ in range(count)]
        return h, offsets, length

    def _batch_error(self, h, refusing_mode, offsets, length):
        """What a batch call on `h` must raise (None: it must succeed);
        a handle of `refusing_mode` refuses it."""
        if h.closed:
            return iommap.ClosedError
        if h.mode == refusing_mode:
            return PermissionError
        if any(o + length > h.size for o in offsets):
            return iommap.OutOfBoundsError
        if any(self.model.faults(o, length) for o in offsets):
            return iommap.SigbusError
        return None

    @rule(data=st.data())
    def gather(self, data):
        h, offsets, length = self._draw_batch(data)
        expected = self._batch_error(h, "write", offsets, length)
        _, got = self.call(expected, h.m.gather, offsets, length)
        if expected is None:
            assert len(got) == len(offsets) * length
            for i, o in enumerate(offsets):
                self.model.check(o, got[i * length : (i + 1) * length], "gather")

    @rule(data=st.data())
    def os_pread(self, data):
        offset = data.draw(st.integers(0, MAX_SIZE + PAGE), label="offset")
        length = data.draw(st.integers(0, 2 * PAGE), label="length")
        got = os.pread(self.fd, length, offset)
        assert len(got) == max(0, min(length, self.model.size - offset))
        self.model.check(offset, got, "os.pread")

    # ---- writes ------------------------------------------------------------

    def _mapped_write(self, h, offset, payload, fn, *args):
        expected = self.expect_error(h, "write", offset, len(payload))
        self.call(expected, fn, *args)
        if expected is None:
            self.model.write_mapped(offset, payload)
        elif expected is iommap.SigbusError:
            self.model.write_cut_short(offset, len(payload))

    @rule(payload=payloads, data=st.data())
    def pwrite(self, payload, data):
        h = self.pick(data)
        offset, _ = self.draw_range(data, h, len(payload))
        # Sometimes as a nested list of pieces: one write all the same.
        if data.draw(st.booleans(), label="as_list") and payload:
            cut = data.draw(st.integers(0, len(payload)), label="cut")
            arg = [payload[:cut], (memoryview(payload[cut:]),), []]
        else:
            arg = payload
        self._mapped_write(h, offset, payload, h.m.pwrite, offset, arg)

    @rule(data=st.data())
    def scatter(self, data):
        h, offsets, length = self._draw_batch(data)
        payload = data.draw(
            st.binary(min_size=len(offsets) * length, max_size=len(offsets) * length)
        )
        expected = self._batch_error(h, "read", offsets, length)
        self.call(expected, h.m.scatter, offsets, length, payload)
        if expected is None:
            for i, o in enumerate(offsets):
                self.model.write_mapped(o, payload[i * length : (i + 1) * length])
        elif expected is iommap.SigbusError:
            for o in offsets:
                self.model.write_cut_short(o, length)

    @rule(payload=payloads, data=st.data())
    def os_pwrite(self, payload, data):
        offset = data.draw(st.integers(0, MAX_SIZE), label="offset")
        assert os.pwrite(self.fd, payload, offset) == len(payload)
        self.model.write_file(offset, payload)

    # ---- size --------------------------------------------------------------

    @rule(size=sizes, data=st.data())
    def truncate(self, size, data):
        h = self.pick(data)
        if h.closed:
            expected = iommap.ClosedError
        elif h.mode == "read":
            expected = PermissionError
        else:
            expected = None
        self.call(expected, h.m.truncate, size)
        if expected is None:
            self.model.resize(size)
            h.size = size

    @rule(size=sizes)
    def os_truncate(self, size):
        os.truncate(self.path, size)
        self.model.resize(size)

    @rule(data=st.data())
    def shrink_under_a_handle(self, data):
        """Another process shrinks the file below what a handle has mapped:
        the pages past the new end are gone for every handle."""
        biggest = (
            max(h.size for h in self.handles if not h.closed)
            if not all(h.closed for h in self.handles)
            else 0
        )
        if biggest < PAGE:
            return
        size = data.draw(st.integers(0, biggest - PAGE), label="size")
        os.truncate(self.path, size)
        self.model.resize(size)

    # ---- hints and flushes ---------------------------------------------------

    @rule(
        data=st.data(),
        hint=st.sampled_from(["normal", "random", "sequential", "willneed", "dontneed"]),
    )
    def advise(self, data, hint):
        h = self.pick(data)
        offset, length = self.draw_range(data, h)
        expected = self.expect_error(h, "any", offset, length, faults=False)
        self.call(expected, h.m.advise, offset, length, hint)

    @rule(data=st.data(), mode=st.sampled_from(["sync", "async"]))
    def sync(self, data, mode):
        h = self.pick(data)
        if data.draw(st.booleans(), label="whole"):
            expected = iommap.ClosedError if h.closed else None
            self.call(expected, h.m.sync, mode)
        else:
            offset, length = self.draw_range(data, h)
            expected = self.expect_error(h, "any", offset, length, faults=False)
            self.call(expected, h.m.sync, mode, offset, length)

    # ---- what must always hold ---------------------------------------------

    @invariant()
    def sizes_agree(self):
        assert os.fstat(self.fd).st_size == self.model.size
        for h in self.handles:
            if h is None:
                continue
            if h.closed:
                assert h.m.closed
                try:
                    len(h.m)
                except iommap.ClosedError:
                    pass
                else:
                    raise AssertionError("len() of a closed handle")
            else:
                assert h.m.position() == len(h.m) == h.size


TwoHandles.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
    derandomize=os.environ.get("IOMMAP_STATEFUL_DERANDOMIZE") == "1",
    database=None,
)

test_two_handles_match_the_model = TwoHandles.TestCase
