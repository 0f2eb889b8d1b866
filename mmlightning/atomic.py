"""Atomic file writes: a long job never leaves a half-written output behind.

    with atomic_path("out/vectors.txt") as tmp:   # write to tmp, renamed over the target on success
        save(tmp)
    write_json("out/report.json", {"rho": 0.7})
    safe_child("reports/release", source, "mean.txt")   # a path built from names that stays in the folder
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mmlightning.errors import UserError

log = logging.getLogger(__name__)


def safe_child(folder: str | os.PathLike, *names: str, what: str = "name") -> Path:
    """`folder/names[0]/names[1]/...`, each name a plain file name that cannot leave `folder`.

    A name built from input (a source, a word, a shard) that is empty, `.`, `..`, or holds a path separator
    or a NUL byte is a one-line UserError naming it and the folder it would have escaped.
    """
    path = Path(folder)
    for name in names:
        name = str(name)
        if name in ("", ".", "..") or "/" in name or "\0" in name or (os.altsep and os.altsep in name) \
                or os.sep in name:
            raise UserError(f"{what} {name!r} is not a plain name (a path built from it would leave {folder}); "
                            f"use letters, digits, '-', '_' or '.'")
        path = path / name
    return path


TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.atomic\.tmp")   # .<target>.<12 hex>.atomic.tmp: only ours
_swept: set[str] = set()


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of `atomic_path`'s naming in `folder` that no live writer holds.

    A writer holds an exclusive `flock` on its temporary file until it is renamed, and the kernel drops
    the lock when the writer dies (even by SIGKILL): a temporary file whose lock can be taken is stale.
    Only regular files of this module's naming (`.<name>.<12 hex digits>.atomic.tmp`) are considered, not
    other writers' temporary files (a compiler's output in progress); links are not followed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not TEMP_NAME.fullmatch(name):
            continue
        path = Path(folder) / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path, follow_symlinks=False).st_ino == st.st_ino:
                path.unlink()
                removed.append(path)
        except OSError:
            continue   # held by a live writer, or gone meanwhile
        finally:
            os.close(fd)
    return removed


def _sweep_once(folder: Path) -> None:
    """Clean stale temporary files once per process and folder (a rerun after a kill removes the last one's)."""
    key = os.path.abspath(folder)
    if key in _swept:
        return
    _swept.add(key)
    for path in clean_stale_temps(folder):
        log.info("removed %s (left by a writer that was killed)", path)


def _new_temp(path: Path) -> tuple[int, Path]:
    """Create and lock `.<name>.<random>.atomic.tmp` beside `path` (mode 0600 while it is written)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.atomic.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            if os.stat(tmp, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)   # swept away by another process between create and lock: take another name


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`, else delete it.

    The file gets the mode a plain `open` would give it (0666 less the umask). The temporary file is
    locked while it is written, so that the next write into the folder after a kill removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = _new_temp(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, 0o666 & ~_umask())
        except OSError:   # a file system without modes: keep its own
            pass
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
