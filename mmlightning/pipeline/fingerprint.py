"""Content fingerprints of the files and folders a stage reads, and of the files a stage wrote.

    fp = Fingerprints("checkpoints/.fingerprints.json")
    fp.of("corpus.txt")        # 'a1b2...': the same bytes give the same fingerprint, wherever they lie
    fp.file("vectors.txt")     # {"size": 123, "sha1": "..."}
    fp.save()                  # remembers the hashes of huge files (see below)

A file's hash is the SHA-1 of all its bytes. A file of up to 256 MiB (a corpus, vectors, a benchmark,
a checkpoint) is hashed on every run (once per run): no time stamp is trusted, so a same-size edit
whose modification time was set back (`cp -p`, `rsync -t`, `touch -r`) is seen. A bigger file is
hashed once and its hash reused while its (size, mtime_ns, ctime_ns, inode) hold: the inode's change
time (ctime) is set by the kernel on every write and cannot be set back by `touch`, `cp -p` or
`utime`, unlike the mtime. A hash taken within RACY_S seconds of the file's last change is not kept
(an edit within the same tick of a coarse file-system clock would keep the ctime).

A folder's fingerprint hashes the sorted list of (path inside the folder, size, file hash); a folder of
more than 20,000 files or 2 GiB (an ImageNet train/ tree) is listed, not read: it is keyed by (path
inside, size, mtime_ns, ctime_ns, inode) of each file, which any write changes, so a copy of such a
tree elsewhere recomputes the stages that read it. The cache file holds absolute path -> (size,
mtime_ns, ctime_ns, inode, hash) of the huge files only; saving it is best effort (a read-only
checkpoints folder still reuses its stages).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from mmlightning.atomic import write_json

log = logging.getLogger(__name__)

FULL_HASH_MAX = 256 << 20   # files up to this size are hashed on every run
BIG_FOLDER_FILES = 20_000
BIG_FOLDER_BYTES = 2 << 30
RACY_S = 2.0                # a hash taken this soon after the file's last change is not cached


def _hash_file(path: Path, size: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    """What any write to a file changes, and what cannot be set back: (size, mtime_ns, ctime_ns, inode)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Fingerprints:
    """File hashes: small files hashed on every run, huge ones cached by (size, mtime, ctime, inode)."""

    def __init__(self, cache_file: str | os.PathLike | None = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self.cache: dict[str, list] = {}
        self.seen: dict[str, tuple[list[int], str]] = {}   # this run's hashes (a file is read once per run)
        self.changed = False
        if self.cache_file is not None and self.cache_file.is_file():
            try:
                cache = json.loads(self.cache_file.read_text(encoding="utf-8"))
                self.cache = {k: v for k, v in cache.items() if isinstance(v, list) and len(v) == 5}
            except (OSError, ValueError, AttributeError):
                self.cache = {}

    def file(self, path: str | os.PathLike) -> dict:
        """{"size", "sha1"} of one file (read on every run unless huge and unchanged since it was hashed)."""
        p = Path(path)
        st = p.stat()
        key, stamp = str(p.resolve()), _stamp(st)
        seen = self.seen.get(key)
        if seen is not None and seen[0] == stamp:
            return {"size": st.st_size, "sha1": seen[1]}
        hit = self.cache.get(key) if st.st_size > FULL_HASH_MAX else None
        if hit is not None and hit[:4] == stamp:
            digest = hit[4]
        else:
            digest = _hash_file(p, st.st_size)
            if st.st_size > FULL_HASH_MAX and time.time_ns() - st.st_ctime_ns > RACY_S * 1e9:
                self.cache[key] = [*stamp, digest]
                self.changed = True
        self.seen[key] = (stamp, digest)
        return {"size": st.st_size, "sha1": digest}

    def folder(self, path: str | os.PathLike) -> str:
        """The fingerprint of a folder's content (names inside, sizes, hashes; big folders: stat stamps)."""
        root = Path(path)
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                entries.append((p.relative_to(root).as_posix(), p.stat(), p))
        big = len(entries) > BIG_FOLDER_FILES or sum(e[1].st_size for e in entries) > BIG_FOLDER_BYTES
        if big:
            log.info("%s: %d files, keyed by names, sizes, change times and inodes (too big to hash)", root,
                     len(entries))
        h = hashlib.sha1(b"big-stat" if big else b"content")
        for rel, st, p in entries:
            if big:
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
            else:
                h.update(f"{rel}\0{st.st_size}\0{self.file(p)['sha1']}\n".encode())
        return h.hexdigest()

    def of(self, path: str | os.PathLike) -> str:
        """The content fingerprint of a file or a folder (a missing path: a FileNotFoundError)."""
        p = Path(path)
        if p.is_dir():
            return self.folder(p)
        return self.file(p)["sha1"]

    def save(self) -> None:
        """Write the cache if a huge file was hashed (silently skipped when the folder is not writable)."""
        if self.cache_file is None or not self.changed:
            return
        try:
            write_json(self.cache_file, self.cache)
            self.changed = False
        except OSError as e:
            log.debug("fingerprint cache %s not saved: %s", self.cache_file, e)
