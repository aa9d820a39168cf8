"""Starts, power-cuts and restarts the file system of fs.py (see there).

    with LazyMount(tmp_path) as fs:
        ... write under fs.root ...
        fs.power_cut()          # SIGKILL, unmount, start again on the same disk
        ... read what was durable ...

Needs Linux, root (mount(2) through /dev/fuse), libfuse 3 and the mfusepy
package: :func:`unavailable` says what is missing, for a skip's reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FS = Path(__file__).with_name("fs.py")


def unavailable() -> str | None:
    """Why the simulator cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "FUSE power-cut simulation runs on Linux only"
    if os.geteuid() != 0:
        return "mounting the FUSE simulator needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    try:
        import mfusepy  # noqa: F401  (also loads libfuse)
    except (ImportError, OSError) as e:
        return f"no FUSE binding (mfusepy and libfuse3): {e}"
    return None


def mounted(path: Path) -> bool:
    """Whether `path` is a mount point, even one whose server died (where
    os.path.ismount fails to stat it and says no)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class LazyMount:
    def __init__(self, base: Path) -> None:
        self.disk = base / "lazyfs.disk"
        self.root = base / "lazyfs.mnt"
        self.root.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FS), str(self.disk), str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.root):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"the FUSE simulator exited with {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError("the FUSE simulator did not mount within 20 s")
            time.sleep(0.02)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        while mounted(self.root):
            subprocess.run(["umount", "-l", str(self.root)], check=True)
        self.proc = None

    def power_cut(self) -> None:
        """Loses everything not made durable, then mounts again."""
        self._kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None and mounted(self.root):
            subprocess.run(["umount", str(self.root)], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._kill()

    def __enter__(self) -> LazyMount:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
