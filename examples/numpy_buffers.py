"""numpy arrays as the buffers of readinto, pwrite, gather and scatter.

Run it (it works in a temporary directory and checks what it does):

    python examples/numpy_buffers.py

`make lint` type-checks it with `mypy --strict --python-version 3.X` for
every supported X: numpy's own stubs declare the buffer protocol only for
3.12 and later, and iommap's stubs accept numpy arrays on every version.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import numpy.typing as npt

import iommap


def numpy_io(directory: str) -> None:
    path = os.path.join(directory, "records.bin")
    records = np.arange(64, dtype=np.uint32).reshape(16, 4)  # 16 records of 16 bytes

    with iommap.open(path, create=True, size=records.nbytes) as m:
        # pwrite from an array, alone or inside an iolist.
        m.pwrite(0, records)
        m.pwrite(records.nbytes - 16, [records[15, :2], records[15, 2:]])

        # readinto an array.
        back: npt.NDArray[np.uint32] = np.empty_like(records)
        assert m.readinto(0, back) == records.nbytes
        assert (back == records).all()

        # gather into an array given as out=, with int64 offsets.
        offsets = np.array([3, 1, 2], dtype=np.int64) * 16
        picked = np.empty((3, 4), dtype=np.uint32)
        out = m.gather(offsets, 16, out=picked)
        assert out is picked
        assert (picked == records[[3, 1, 2]]).all()

        # scatter from an array: records 0 and 5 get new values.
        m.scatter(np.array([0, 5 * 16], dtype=np.uint64), 16, np.full((2, 4), 7, np.uint32))
        assert m.pread(0, 16) == np.full(4, 7, np.uint32).tobytes()
        assert m.pread(5 * 16, 16) == np.full(4, 7, np.uint32).tobytes()
        assert m.pread(4 * 16, 16) == records[4].tobytes()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        numpy_io(d)
    print("numpy_buffers: ok")
