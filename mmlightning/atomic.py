"""Atomic file writes: a long job never leaves a half-written output behind.

    with atomic_path("out/vectors.txt") as tmp:   # write to tmp, renamed over the target on success
        save(tmp)
    write_json("out/report.json", {"rho": 0.7})
    safe_child("reports/release", source, "mean.txt")   # a path built from names that stays in the folder
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mmlightning.errors import UserError


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


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
