"""One writer per output folder: an advisory lock file that says who holds it.

    with FolderLock("checkpoints/features/x", "predict"):   # a second holder gets a one-line UserError
        ...

The lock is `fcntl.flock` on `<folder>/.lock` (released by the kernel when the holder dies, so a killed
run never leaves a stale lock); the file holds the holder's description (command, pid, host, start time).
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from mmlightning.errors import UserError

LOCK = ".lock"


class FolderLock:
    """An exclusive, non-blocking lock on a folder (created if missing)."""

    def __init__(self, folder: str | os.PathLike, what: str = "mmlightning"):
        self.path = Path(folder) / LOCK
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        """Take the lock or raise a UserError naming the holder."""
        if self.fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.path}: {holder} is writing this folder; wait for it to finish "
                            f"or use another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.what} (pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
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
