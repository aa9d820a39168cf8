"""A FUSE file system that loses what was not made durable, on command.

    python fs.py DISK MOUNTPOINT

Everything lives in this process's memory.  Only two requests make
something durable, by writing it to DISK (a file on a real file system that
stands for the device):

* fsync (and fdatasync) of a file: that file's data and size, as they are
  now;
* fsync of a directory: its entries, as they are now (an entry's file is
  durable from then on, with the data it had at its last fsync, or empty).

A simulated power cut is a SIGKILL of this process: whatever DISK does not
hold is gone, as it would be from a disk's volatile cache (this is what
LazyFS does for tests of databases).  Started again on the same DISK, the
file system shows what was durable.  The kernel's own page cache goes with
the mount, which the caller unmounts after the kill.

Writes through a shared mapping arrive here as write requests at msync or
write-back, and msync(MS_SYNC) and fdatasync as fsync requests, so this
sees exactly what a program made durable.  Single-threaded (the kernel
queues requests); flush and release make nothing durable.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import sys
import time

import mfusepy as fuse

ROOT = 1


class Node:
    def __init__(self, ino: int, mode: int) -> None:
        self.ino = ino
        self.mode = mode
        self.data = bytearray()  # a file's bytes
        self.entries: dict[str, int] = {}  # a directory's names
        self.mtime = time.time_ns()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class LazyFS(fuse.Operations):
    use_ns = True

    def __init__(self, disk: str) -> None:
        self.disk = disk
        self.nodes: dict[int, Node] = {}
        self.next_ino = ROOT + 1
        self.durable = self._load()
        self._replay()

    # ---- the durable state ---------------------------------------------

    def _load(self) -> dict:
        try:
            with open(self.disk, "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            return {"modes": {ROOT: stat.S_IFDIR | 0o755}, "files": {}, "dirs": {ROOT: {}}}

    def _store(self) -> None:
        tmp = self.disk + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.durable, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.disk)

    def _replay(self) -> None:
        """The tree as the durable state has it, from the root down."""
        d = self.durable
        todo = [ROOT]
        while todo:
            ino = todo.pop()
            node = self.nodes[ino] = Node(ino, d["modes"][ino])
            if node.is_dir:
                node.entries = dict(d["dirs"].get(ino, {}))
                todo.extend(node.entries.values())
            else:
                node.data = bytearray(d["files"].get(ino, b""))
        self.next_ino = max(d["modes"]) + 1

    # ---- lookups ---------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self.nodes[ROOT]
        for name in filter(None, path.split("/")):
            if not node.is_dir:
                raise fuse.FuseOSError(errno.ENOTDIR)
            if name not in node.entries:
                raise fuse.FuseOSError(errno.ENOENT)
            node = self.nodes[node.entries[name]]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, name = os.path.split(path.rstrip("/"))
        parent = self._node(head or "/")
        if not parent.is_dir:
            raise fuse.FuseOSError(errno.ENOTDIR)
        return parent, name

    def _new(self, path: str, mode: int) -> Node:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise fuse.FuseOSError(errno.EEXIST)
        node = self.nodes[self.next_ino] = Node(self.next_ino, mode)
        self.next_ino += 1
        parent.entries[name] = node.ino
        parent.mtime = time.time_ns()
        return node

    # ---- requests ----------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict:
        node = self._node(path)
        return {
            "st_ino": node.ino,
            "st_mode": node.mode,
            "st_nlink": 2 if node.is_dir else 1,
            "st_size": len(node.data),
            "st_blocks": (len(node.data) + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": node.mtime,
            "st_mtime": node.mtime,
            "st_ctime": node.mtime,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self._node(path).entries]

    def opendir(self, path: str) -> int:
        self._node(path)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._new(path, stat.S_IFDIR | mode)
        return 0

    def create(self, path: str, mode: int, fi: int | None = None) -> int:
        return self._new(path, stat.S_IFREG | mode).ino

    def open(self, path: str, flags: int) -> int:
        node = self._node(path)
        if flags & os.O_TRUNC:
            node.data.clear()
        return node.ino

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self.nodes[fh].data[offset : offset + size])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        node = self.nodes[fh]
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime = time.time_ns()
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        node = self.nodes[fh] if fh else self._node(path)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.mtime = time.time_ns()
        return 0

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        if name not in parent.entries:
            raise fuse.FuseOSError(errno.ENOENT)
        del parent.entries[name]
        return 0

    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        node = self._node(path)
        if node.entries:
            raise fuse.FuseOSError(errno.ENOTEMPTY)
        del parent.entries[name]
        return 0

    def rename(self, old: str, new: str) -> int:
        src, a = self._parent(old)
        dst, b = self._parent(new)
        if a not in src.entries:
            raise fuse.FuseOSError(errno.ENOENT)
        dst.entries[b] = src.entries.pop(a)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        node = self._node(path)
        node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._node(path).mtime = times[1] if times else time.time_ns()
        return 0

    def statfs(self, path: str) -> dict:
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_files": 1 << 16,
            "f_ffree": 1 << 15,
            "f_namemax": 255,
        }

    # ---- what makes things durable ----------------------------------------

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        node = self.nodes[fh]
        self.durable["modes"][node.ino] = node.mode
        self.durable["files"][node.ino] = bytes(node.data)
        self._store()
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        node = self._node(path)
        d = self.durable
        d["dirs"][node.ino] = dict(node.entries)
        for ino in node.entries.values():
            child = self.nodes[ino]
            d["modes"].setdefault(ino, child.mode)
            if child.is_dir:
                d["dirs"].setdefault(ino, {})
            else:
                d["files"].setdefault(ino, b"")
        self._store()
        return 0


def main() -> None:
    disk, mountpoint = sys.argv[1:3]
    fuse.FUSE(
        LazyFS(disk),
        mountpoint,
        foreground=True,
        nothreads=True,
        default_permissions=True,
        allow_other=False,
    )


if __name__ == "__main__":
    main()
