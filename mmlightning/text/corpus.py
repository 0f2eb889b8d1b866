"""The vocabulary + encoded-corpus cache that skip-gram trains on (the readers are in readers.py).

    enc = prepare_corpus(["gcide"], cache_dir="checkpoints/corpus_cache", min_count=5)
    enc.tokens      # uint32 (N,) memmap: word ids, rare words dropped
    enc.sentences   # int64 (S + 1,): sentence s is tokens[sentences[s]:sentences[s + 1]]
    enc.words, enc.counts   # vocabulary, most frequent first (ties: first seen first), int64 (V,)

The cache folder is keyed by the files' contents (their SHA-256, hashed on every run: cheap next to
training), paths, min_count, max_vocab and the tokeniser version; it is written in a temporary folder and
renamed into place, so a killed run leaves no half cache. meta.json records the SHA-256 of the cache's own
files: before a cache is reused they are checked against it (and the ids against the vocabulary), and a
cache that fails is set aside and rebuilt. `load_encoded` (the DataLoader workers' view) checks sizes and
ids only, and names the bad file in a UserError.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmlightning.atomic import write_json
from mmlightning.errors import UserError
from mmlightning.text.readers import (GCIDE_PATH, CorpusStats, find_text8, iter_sentences,  # noqa: F401 (re-exported)
                                      resolve_sources)

CACHE_VERSION = 2  # bump when tokenisation or the cache's layout changes: old caches are then ignored
CACHE_FILES = ("tokens.u32", "sentences.i64", "vocab.tsv")  # hashed into meta.json, checked before reuse
log = logging.getLogger(__name__)


@dataclass
class EncodedCorpus:
    """A corpus as word ids: `tokens` uint32 (N,), `sentences` int64 (S + 1,) offsets, and its vocabulary."""

    words: list[str]
    counts: np.ndarray  # int64 (V,), most frequent first
    tokens: np.ndarray  # uint32 (N,), ids into words
    sentences: np.ndarray  # int64 (S + 1,), sentence s = tokens[sentences[s]:sentences[s + 1]]
    meta: dict
    path: Path | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def sentence_ids(self) -> np.ndarray:
        """int32 (N,): the sentence index of every token."""
        return sentence_ids(self.sentences, self.n_tokens)


def sentence_ids(sentences: np.ndarray, n_tokens: int) -> np.ndarray:
    """int32 (N,): the sentence index of every token, from offsets int64 (S + 1,)."""
    lengths = np.diff(np.asarray(sentences, dtype=np.int64))
    ids = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    assert len(ids) == n_tokens, (len(ids), n_tokens)
    return ids


def cache_key(files: Sequence[Path], min_count: int, max_vocab: int | None) -> str:
    """Key of an encoded corpus: the files (path, size, SHA-256 of the contents), settings and tokeniser version."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.resolve()}|{f.stat().st_size}|{file_sha256(f)}\n".encode())
    h.update(f"min_count={min_count}|max_vocab={max_vocab}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:20]


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's contents (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def prepare_corpus(sources, cache_dir: str | os.PathLike = "checkpoints/corpus_cache", min_count: int = 5,
                   max_vocab: int | None = None, download: bool = False, progress: bool = False) -> EncodedCorpus:
    """Load the encoded corpus from the cache, or tokenise `sources` once and cache it (atomically).

    Words seen fewer than `min_count` times are dropped from the text (as word2vec does); `max_vocab`
    keeps only the most frequent ones. Raises UserError for an empty corpus or < 2 words left.
    """
    if min_count < 1:
        raise UserError(f"must be >= 1, got {min_count}", argument="min_count")
    files = resolve_sources(sources, download)
    key = cache_key(files, min_count, max_vocab)
    final = Path(cache_dir) / key
    if final.exists():
        try:
            return _open_encoded(final, check_hashes=True)
        except BadCache as e:
            log.warning("%s; rebuilding the corpus cache", e)
            _set_aside(final, str(e))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        _encode(files, tmp, min_count, max_vocab, progress)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same cache first
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_encoded(final)


def _encode(files: list[Path], out: Path, min_count: int, max_vocab: int | None, progress: bool) -> None:
    """One tokenising pass: provisional ids (first-seen order) to disk, then count, sort and remap."""
    first_id: dict[str, int] = {}
    stats = CorpusStats()
    lengths: list[int] = []
    raw_path = out / "raw.u32"
    bar = _progress_bar(progress)
    try:  # the bar is closed (its line ended) before any error below is printed
        with open(raw_path, "wb") as raw:
            buf: list[int] = []
            for sent in iter_sentences([str(f) for f in files], stats=stats):
                for w in sent:
                    i = first_id.get(w)
                    if i is None:
                        i = first_id[w] = len(first_id)
                    buf.append(i)
                lengths.append(len(sent))
                if len(buf) >= 1 << 20:
                    np.asarray(buf, dtype=np.uint32).tofile(raw)
                    if bar is not None:
                        bar.update(len(buf))
                    buf = []
            np.asarray(buf, dtype=np.uint32).tofile(raw)
            if bar is not None:
                bar.update(len(buf))  # the last partial block too: the bar ends at the corpus size
    finally:
        if bar is not None:
            bar.close()
    where = ", ".join(stats.files)
    if stats.tokens == 0:
        raise UserError(f"{where}: corpus is empty (no words found)")
    raw_ids = np.fromfile(raw_path, dtype=np.uint32)  # (N_raw,)
    raw_counts = np.bincount(raw_ids, minlength=len(first_id))  # (V_raw,) in first-seen order
    order = np.argsort(-raw_counts, kind="stable")  # most frequent first, ties by first appearance
    order = order[raw_counts[order] >= min_count]
    if max_vocab is not None:
        order = order[:max_vocab]
    if len(order) < 2:
        raise UserError(f"{where}: min_count={min_count} leaves {len(order)} word(s) of {len(first_id)} "
                        f"({stats.tokens} tokens); lower min_count or use a larger corpus")
    remap = np.full(len(first_id), -1, dtype=np.int64)  # raw id -> final id or -1 (dropped)
    remap[order] = np.arange(len(order))
    mapped = remap[raw_ids]  # (N_raw,)
    keep = mapped >= 0
    sent_of = np.repeat(np.arange(len(lengths)), lengths)  # (N_raw,)
    new_lengths = np.bincount(sent_of[keep], minlength=len(lengths))
    new_lengths = new_lengths[new_lengths > 0]
    mapped[keep].astype(np.uint32).tofile(out / "tokens.u32")
    np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64).tofile(out / "sentences.i64")
    words_by_raw = list(first_id)
    words = [words_by_raw[i] for i in order]
    with open(out / "vocab.tsv", "w", encoding="utf-8") as fh:
        for w, c in zip(words, raw_counts[order]):
            fh.write(f"{w}\t{int(c)}\n")
    raw_path.unlink()
    meta = {"format": "mmlightning-corpus/1", "files": stats.files, "min_count": min_count,
            "max_vocab": max_vocab, "raw_tokens": stats.tokens, "raw_vocab": len(first_id),
            "tokens": int(keep.sum()), "vocab": len(words), "sentences": int(len(new_lengths)),
            "replaced_bytes": stats.replaced, "replaced_by_file": stats.replaced_by_file,
            "sha256": {name: file_sha256(out / name) for name in CACHE_FILES}}
    write_json(out / "meta.json", meta)


class BadCache(Exception):
    """A corpus cache that cannot be used as it is (message: the bad file and what is wrong)."""


def load_encoded(folder: str | os.PathLike) -> EncodedCorpus:
    """Open a cached encoded corpus (tokens memory-mapped, read-only); UserError naming the file if it is damaged."""
    try:
        return _open_encoded(Path(folder), check_hashes=False)
    except BadCache as e:
        raise UserError(f"{e}; delete the folder {folder} to rebuild it") from None


def _open_encoded(folder: Path, check_hashes: bool) -> EncodedCorpus:
    """The cache in `folder`, its sizes, offsets and ids checked (and its files' SHA-256, if asked); else BadCache."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        n, n_sent, n_vocab = int(meta["tokens"]), int(meta["sentences"]), int(meta["vocab"])
        words, counts = read_vocab(folder / "vocab.tsv")
    except (OSError, ValueError, KeyError, TypeError, UserError) as e:
        raise BadCache(f"{folder}: unreadable corpus cache ({e})") from None
    if check_hashes:
        _check_hashes(folder, meta)
    _check_size(folder / "tokens.u32", 4 * n, f"{n} tokens")
    _check_size(folder / "sentences.i64", 8 * (n_sent + 1), f"{n_sent} sentences")
    if len(words) != n_vocab:
        raise BadCache(f"{folder / 'vocab.tsv'}: {len(words)} words, meta.json says {n_vocab}")
    tokens = np.memmap(folder / "tokens.u32", dtype=np.uint32, mode="r", shape=(n,)) if n else np.zeros(0, np.uint32)
    sentences = np.fromfile(folder / "sentences.i64", dtype=np.int64)
    if not len(sentences) or sentences[0] != 0 or sentences[-1] != n or (np.diff(sentences) < 0).any():
        raise BadCache(f"{folder / 'sentences.i64'}: sentence offsets not increasing from 0 to {n}")
    top = int(tokens.max()) if n else 0
    if top >= n_vocab:
        raise BadCache(f"{folder / 'tokens.u32'}: word id {top} outside the vocabulary of {n_vocab} words")
    return EncodedCorpus(words, counts, tokens, sentences, meta, folder)


def _check_size(path: Path, expected: int, what: str) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BadCache(f"{path}: {e.strerror or e}") from None
    if size != expected:
        raise BadCache(f"{path}: size {size} bytes, expected {expected} ({what})")


def _check_hashes(folder: Path, meta: dict) -> None:
    recorded = meta.get("sha256")
    if not isinstance(recorded, dict):
        raise BadCache(f"{folder / 'meta.json'}: no SHA-256 of the cache's files")
    for name in CACHE_FILES:
        try:
            ok = file_sha256(folder / name) == recorded.get(name)
        except OSError as e:
            raise BadCache(f"{folder / name}: {e.strerror or e}") from None
        if not ok:
            raise BadCache(f"{folder / name}: contents differ from what was written (SHA-256 mismatch)")


def _set_aside(folder: Path, why: str) -> None:
    """Move a bad cache folder out of the way (renamed, then deleted); UserError if it cannot be moved."""
    aside = None
    try:
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.bad.", dir=folder.parent))
        os.replace(folder, aside)  # (over the empty folder just made: atomic)
    except FileNotFoundError:  # another process set it aside first
        pass
    except OSError as e:
        raise UserError(f"{why}; it cannot be replaced ({e.strerror or e}): delete {folder}") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def read_vocab(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a `word<TAB>count` vocabulary file; UserError naming the line if malformed."""
    words, counts = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            w, sep, c = line.rstrip("\n").partition("\t")
            if not sep or not c.isdigit():
                raise UserError(f"{path}:{lineno}: expected 'word<TAB>count', got {line[:60]!r}")
            words.append(w)
            counts.append(int(c))
    return words, np.asarray(counts, dtype=np.int64)


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc="tokenising", unit=" words", unit_scale=True)


def sentences_as_words(enc: EncodedCorpus) -> Iterable[list[str]]:
    """The encoded corpus back as lists of words (for gensim in the benchmark)."""
    words = np.asarray(enc.words, dtype=object)
    for s in range(len(enc.sentences) - 1):
        yield words[enc.tokens[enc.sentences[s]:enc.sentences[s + 1]]].tolist()
