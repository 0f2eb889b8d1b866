"""Content fingerprints of the files and folders a stage reads, and of the files a stage wrote.

    fp = Fingerprints("checkpoints/.fingerprints.json")
    fp.of("corpus.txt")        # 'a1b2...': the same bytes give the same fingerprint, wherever they lie
    fp.file("vectors.txt")     # {"size": 123, "sha1": "..."}
    fp.save()                  # remembers (size, mtime) -> hash, so unchanged files are not read again

A file's hash is the SHA-1 of its bytes (above 256 MiB: of its size, first and last 64 MiB). A folder's
fingerprint hashes the sorted list of (path inside the folder, size, file hash); a folder of more than
20,000 files or 8 GiB (an ImageNet train/ tree) is keyed by (path inside, size, modification time)
instead, so that it is listed, not read. The cache holds absolute path -> (size, mtime_ns, hash); a file
whose size or mtime changed is hashed again. Saving the cache is best effort (a read-only checkpoints
folder still reuses its stages).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mmlightning.atomic import write_json

log = logging.getLogger(__name__)

FULL_HASH_MAX = 256 << 20
SAMPLE = 64 << 20
BIG_FOLDER_FILES = 20_000
BIG_FOLDER_BYTES = 8 << 30


def _hash_file(path: Path, size: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        if size <= FULL_HASH_MAX:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(f.read(SAMPLE))
            f.seek(size - SAMPLE)
            h.update(f.read(SAMPLE))
    return h.hexdigest()


class Fingerprints:
    """File hashes cached by (absolute path, size, mtime) in a small JSON file."""

    def __init__(self, cache_file: str | os.PathLike | None = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self.cache: dict[str, list] = {}
        self.changed = False
        if self.cache_file is not None and self.cache_file.is_file():
            try:
                self.cache = json.loads(self.cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.cache = {}

    def file(self, path: str | os.PathLike) -> dict:
        """{"size", "sha1"} of one file (hashed only when its size or mtime changed since last time)."""
        p = Path(path)
        st = p.stat()
        key = str(p.resolve())
        hit = self.cache.get(key)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return {"size": st.st_size, "sha1": hit[2]}
        digest = _hash_file(p, st.st_size)
        self.cache[key] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return {"size": st.st_size, "sha1": digest}

    def folder(self, path: str | os.PathLike) -> str:
        """The fingerprint of a folder's content (names inside, sizes, hashes; big folders: mtimes)."""
        root = Path(path)
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                st = p.stat()
                entries.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, p))
        big = len(entries) > BIG_FOLDER_FILES or sum(e[1] for e in entries) > BIG_FOLDER_BYTES
        if big:
            log.info("%s: %d files, keyed by names, sizes and modification times (too big to hash)", root, len(entries))
        h = hashlib.sha1(b"big" if big else b"content")
        for rel, size, mtime, p in entries:
            h.update(f"{rel}\0{size}\0{mtime if big else self.file(p)['sha1']}\n".encode())
        return h.hexdigest()

    def of(self, path: str | os.PathLike) -> str:
        """The content fingerprint of a file or a folder (a missing path: a FileNotFoundError)."""
        p = Path(path)
        if p.is_dir():
            return self.folder(p)
        return self.file(p)["sha1"]

    def save(self) -> None:
        """Write the cache if anything was hashed (silently skipped when the folder is not writable)."""
        if self.cache_file is None or not self.changed:
            return
        try:
            write_json(self.cache_file, self.cache)
            self.changed = False
        except OSError as e:
            log.debug("fingerprint cache %s not saved: %s", self.cache_file, e)
