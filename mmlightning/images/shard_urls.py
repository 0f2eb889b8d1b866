"""Which shards to read: a shard spec -> an ordered, de-duplicated list of (url, name, fingerprint).

    refs, manifest = shard_refs("checkpoints/shards/tuxpaint")           # a folder: its manifest.json order
    refs, _ = shard_refs("/data/imagenet-{000000..001023}.tar")            # a brace spec (webdataset's)
    refs, _ = shard_refs("pipe:aws s3 cp s3://bucket/in-{000000..000099}.tar -")   # a command's stdout
    refs, _ = shard_refs(["https://host/a.tar", "pipe:gsutil cat gs://b/c.tar"])

A spec is a shard folder (its manifest.json, else its *.tar sorted), a manifest.json, a .tar, a glob,
a brace spec, a `pipe:` / `http(s)://` URL (opened by `open_shard`, with timeouts: `pipe:` runs the
command and reads its stdout, http(s) runs curl), or a list of any of these. Other URL schemes are
refused (read them through `pipe:<command>`). A manifest is not trusted: its shard names must be
relative paths inside its folder (no absolute path, no `..`), and a malformed one is one UserError.
The same shard listed twice is read once (with a warning). A shard is named by its file name
(`shard-000000.tar`; for `pipe:` commands the last word that names a .tar), or by its whole URL when two
shards would share a name (so a name is not a safe file name: the writer sanitises it).

Fingerprints say whether a finished shard in an extraction output is still the shard being read:
- a shard of a folder whose manifest.json was written by `shard`: the manifest's fingerprint (settings
  and image list), the shard's name and its size;
- another local tar: its size and a hash of its member list (names and sizes; the headers only);
- a remote URL: the URL itself (nothing cheaper identifies remote content; a resume over remote
  shards rewritten under the same URLs needs a fresh output folder).
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import webdataset as wds

from mmlightning.errors import UserError
from mmlightning.images.open_shard import SCHEMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardRef:
    """One shard: what webdataset opens (`url`), its name in records, and its content fingerprint."""

    url: str
    name: str
    fingerprint: str

    @property
    def local(self) -> bool:
        return is_local(self.url)


def is_local(url: str) -> bool:
    """A plain file path (not `pipe:`, not `scheme://`)."""
    return not (url.startswith("pipe:") or "://" in url)


def url_name(url: str) -> str:
    """The shard's file name: the last path part of the URL, or of the last `pipe:` word naming a .tar."""
    if url.startswith("pipe:"):
        words = [w for w in url[5:].split() if ".tar" in w]
        return words[-1].rstrip("/").rsplit("/", 1)[-1] if words else url
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url


def _inside(path: Path, name: str) -> str:
    """The path of the manifest entry `name`: a relative path without `..` (never outside the shard folder)."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or parts[0] == "/" or ".." in parts or "\0" in name:
        raise UserError(f"{path}: shard name {name!r} must name a file inside {path.parent} "
                        f"(a relative path without ..)")
    return str(path.parent / name)


def _read_manifest(path: Path) -> tuple[list[str], dict]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        names = [s["name"] for s in manifest["shards"]]
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: nesting too deep
        raise UserError(f"{path}:1: not a shard manifest ({type(e).__name__}: {str(e)[:200]})") from None
    return [_inside(path, n) for n in names], manifest


def expand_spec(spec: str | Path) -> tuple[list[str], dict | None]:
    """One spec -> (urls, manifest or None); local entries must exist."""
    s = str(spec)
    p = Path(s)
    if is_local(s) and p.name == "manifest.json" and p.is_file():
        return _read_manifest(p)
    if is_local(s) and p.is_dir():
        if (p / "manifest.json").is_file():
            urls, manifest = _read_manifest(p / "manifest.json")
        else:
            urls, manifest = [str(x) for x in sorted(p.glob("*.tar"))], None
        if not urls:
            raise UserError(f"{spec}: no WebDataset shards (*.tar) found")
        return urls, manifest
    if is_local(s) and p.is_file():
        return [s], None
    urls = wds.shardlists.expand_urls(s) if "{" in s else [s]
    if is_local(s) and urls == [s] and not any(c in s for c in "*?["):
        raise UserError(f"{spec}: no WebDataset shards (*.tar) found (no such file or folder)")
    if is_local(s):  # globs over local paths (after brace expansion)
        found = []
        for u in urls:
            found += sorted(glob.glob(u)) if any(c in u for c in "*?[") else [u]
        urls = found
    if not urls:
        raise UserError(f"{spec}: no WebDataset shards (*.tar) found")
    return urls, None


def shard_refs(spec: str | Path | Sequence[str | Path]) -> tuple[list[ShardRef], dict | None]:
    """The shards of `spec` in order, duplicates dropped; the manifest when the spec is one shard folder."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not specs:
        raise UserError("no shards given")
    urls, manifests = [], []
    for item in specs:
        found, manifest = expand_spec(item)
        urls += found
        manifests.append(manifest)
    manifest = manifests[0] if len(manifests) == 1 else None
    unique = list(dict.fromkeys(urls))
    if len(unique) < len(urls):
        log.warning("shards: %d duplicate entries ignored (each shard is read once)", len(urls) - len(unique))
    unsupported = [u for u in unique if not is_local(u) and not u.startswith(SCHEMES + ("file:",))]
    if unsupported:
        raise UserError(f"{unsupported[0]}: unsupported shard URL (read local paths, http(s):// URLs or "
                        f"pipe:<a command that prints the tar>, e.g. pipe:gsutil cat gs://bucket/a.tar)")
    missing = [u for u in unique if is_local(u) and not Path(u).is_file()]
    if missing:
        raise UserError(f"{missing[0]}: shard listed but missing ({len(missing)} missing in all)")
    names = [url_name(u) for u in unique]
    clash = len(set(names)) < len(names)
    refs = [ShardRef(u, u if clash else n, fingerprint(u, manifest)) for u, n in zip(unique, names)]
    return refs, manifest


def fingerprint(url: str, manifest: dict | None = None) -> str:
    """The content fingerprint of one shard (see the module docstring)."""
    if not is_local(url):
        return "url:" + url
    path = Path(url)
    size = path.stat().st_size
    if manifest is not None and manifest.get("fingerprint"):
        return f"manifest:{manifest['fingerprint']}:{path.name}:{size}"
    h = hashlib.sha256()
    try:
        with tarfile.open(path, mode="r:") as tar:  # seeks from header to header: reads no image data
            for m in tar:
                h.update(f"{m.name}\t{m.size}\n".encode())
    except (tarfile.TarError, OSError, EOFError) as e:
        h.update(f"unreadable {type(e).__name__}".encode())
    return f"tar:{size}:{h.hexdigest()[:16]}"


def _load_meta(path: Path) -> dict:
    import torch

    try:  # mmap: the tensors are not read
        meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
    except Exception as e:  # torch raises several types for a damaged file
        raise UserError(f"{path}: unreadable extraction record ({type(e).__name__}); delete it to redo its shards") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: unreadable extraction record (no meta); delete it to redo its shards")
    return meta


def read_records(output_dir: str | Path | None) -> list[tuple[Path, dict]]:
    """(file, meta) of the records of an extraction output that hold its finished shards, in merge order.

    `aggregates.pt`, then `parts/*.pt` by name; a part whose shards are already in an earlier record is
    left out: all of them (a leftover of a run whose final write succeeded) quietly, some of them with a
    warning (its other shards count as not done and are read again). So no shard is ever merged twice.
    The data module's finished shards and the writer's merge both come from here.
    """
    if output_dir is None:
        return []
    out = Path(output_dir)
    files = [out / "aggregates.pt"] if (out / "aggregates.pt").is_file() else []
    files += sorted((out / "parts").glob("*.pt"))
    records, merged = [], set()
    for f in files:
        meta = _load_meta(f)
        shards = set(meta.get("shards_done", []))
        if f.parent.name == "parts" and shards & merged:
            if not shards <= merged:
                log.warning("%s: holds %d shards already merged from another record; ignored (its other %d "
                            "shards are read again)", f, len(shards & merged), len(shards - merged))
            continue
        records.append((f, meta))
        merged |= shards
    return records


def finished_shards(output_dir: str | Path | None) -> dict[str, str]:
    """Shard name -> fingerprint of every shard an extraction output records as finished.

    Read from the `shard_fingerprints` of the records `read_records` keeps (docs/FORMATS.md); the data
    module skips these shards and the prediction writer checks what it receives against them. A shard
    recorded without a fingerprint (older outputs) maps to "".
    """
    done: dict[str, str] = {}
    for _, meta in read_records(output_dir):
        fps = meta.get("shard_fingerprints", {})
        for name in meta.get("shards_done", []):
            done[name] = fps.get(name, "")
    return done
