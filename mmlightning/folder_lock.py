"""One writer per output folder: an advisory lock file that says who holds it.

    with FolderLock("checkpoints/features/x", "predict"):   # a second holder gets a one-line UserError
        ...

The lock is `fcntl.flock` on `<folder>/.lock` (released by the kernel when the holder dies, so a killed
run never leaves a stale lock); the file holds the holder's description (command, pid, host, start time).
Forked children (data-loader workers) share the lock: when the recorded holder is dead but its orphaned
workers are still exiting, `acquire` waits for them (up to `orphan_wait_s`) instead of refusing.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from pathlib import Path

from mmlightning.errors import UserError

LOCK = ".lock"


class FolderLock:
    """An exclusive, non-blocking lock on a folder (created if missing)."""

    def __init__(self, folder: str | os.PathLike, what: str = "mmlightning", orphan_wait_s: float = 60.0):
        self.path = Path(folder) / LOCK
        self.what = what
        self.orphan_wait_s = orphan_wait_s
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        """Take the lock or raise a UserError naming the holder."""
        if self.fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.orphan_wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
                if _holder_dead(holder) and time.monotonic() < deadline:
                    time.sleep(0.5)  # a killed run's loader workers still hold it; they exit within seconds
                    continue
                os.close(fd)
                raise UserError(f"{self.path}: {holder} is writing this folder; wait for it to finish "
                                f"or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.what} (pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Let go (the file stays: removing a lock file races with the next holder)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _holder_dead(holder: str) -> bool:
    """True when the description names a process of this host that no longer exists."""
    m = re.search(r"\(pid (\d+) on (\S+),", holder)
    if m is None or m.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
