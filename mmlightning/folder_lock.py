"""One writer per output folder: an advisory lock file that says who holds it.

    with FolderLock("checkpoints/features/x", "predict"):   # a second holder gets a one-line UserError
        ...

The lock is `fcntl.flock` on `<folder>/.lock` (released by the kernel when the holder dies, so a killed
run never leaves a stale lock); the file holds the holder's description (command, pid, host, start time).
Forked children (data-loader workers) share the lock: when the recorded holder is dead but its orphaned
workers are still exiting, `acquire` waits for them (up to `orphan_wait_s`) instead of refusing; a child's
release never lets go of its parent's lock.

With `remove=True` a release deletes the file too. A waiter may have opened it just before: it then locks a
file that is no longer the lock. So the holder deletes the file while it still holds it, and `acquire` keeps
a lock only on the file that is at the path once locked (same inode), else it opens the path again. A killed
run still leaves its file (unlocked: the next run takes it and deletes it when done).
"""
from __future__ import annotations

import contextlib
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

    def __init__(self, folder: str | os.PathLike, what: str = "mmlightning", orphan_wait_s: float = 60.0,
                 remove: bool = False):
        self.path = Path(folder) / LOCK
        self.what = what
        self.orphan_wait_s = orphan_wait_s
        self.remove = remove  # release deletes the file (see the module docstring)
        self.fd: int | None = None
        self.pid = 0  # the process that took the lock (forked children inherit the object, not the lock)

    def acquire(self) -> "FolderLock":
        """Take the lock or raise a UserError naming the holder."""
        if self.fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.orphan_wait_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                if _holder_dead(holder) and time.monotonic() < deadline:
                    time.sleep(0.5)  # a killed run's loader workers still hold it; they exit within seconds
                    continue
                raise UserError(f"{self.path}: {holder} is writing this folder; wait for it to finish "
                                f"or use another folder") from None
            if _is_at_path(fd, self.path):
                break
            os.close(fd)  # its holder deleted it as we waited: lock the file now at the path
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.what} (pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        self.fd, self.pid = fd, os.getpid()
        return self

    def release(self) -> None:
        """Let go; with `remove`, delete the file first, while still holding it (see the module docstring)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if self.pid == os.getpid():  # not in a forked child: closing its copy of the descriptor is all it may do
            if self.remove and _is_at_path(fd, self.path):
                with contextlib.suppress(OSError):  # a file left is harmless; a lock left held is not
                    self.path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _is_at_path(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file now at `path` (not one deleted, or replaced, since it was opened)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


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
