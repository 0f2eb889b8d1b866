"""The vocabulary + encoded-corpus cache that skip-gram trains on (the readers are in readers.py).

    enc = prepare_corpus(["gcide"], cache_dir="checkpoints/corpus_cache", min_count=5)
    enc.tokens      # uint32 (N,) memmap: word ids, rare words dropped
    enc.sentences   # int64 (S + 1,): sentence s is tokens[sentences[s]:sentences[s + 1]]
    enc.words, enc.counts   # vocabulary, most frequent first (ties: first seen first), int64 (V,)

The cache folder is keyed by the files (path, size, mtime), min_count, max_vocab and the tokeniser
version; it is written in a temporary folder and renamed into place, so a killed run leaves no half cache.
"""
from __future__ import annotations

import hashlib
import json
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

CACHE_VERSION = 1  # bump when tokenisation changes: old caches are then ignored


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
    """Key of an encoded corpus: the files (path, size, mtime), settings and tokeniser version."""
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    h.update(f"min_count={min_count}|max_vocab={max_vocab}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:16]


def prepare_corpus(sources, cache_dir: str | os.PathLike = "checkpoints/corpus_cache", min_count: int = 5,
                   max_vocab: int | None = None, download: bool = False, progress: bool = False) -> EncodedCorpus:
    """Load the encoded corpus from the cache, or tokenise `sources` once and cache it (atomically).

    Words seen fewer than `min_count` times are dropped from the text (as word2vec does); `max_vocab`
    keeps only the most frequent ones. Raises UserError for an empty corpus or < 2 words left.
    """
    if min_count < 1:
        raise UserError(f"min_count: must be >= 1, got {min_count}")
    files = resolve_sources(sources, download)
    key = cache_key(files, min_count, max_vocab)
    final = Path(cache_dir) / key
    if (final / "meta.json").is_file():
        return load_encoded(final)
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
            "replaced_bytes": stats.replaced, "replaced_by_file": stats.replaced_by_file}
    write_json(out / "meta.json", meta)


def load_encoded(folder: str | os.PathLike) -> EncodedCorpus:
    """Open a cached encoded corpus (tokens memory-mapped, read-only)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        words, counts = read_vocab(folder / "vocab.tsv")
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: unreadable corpus cache ({e}); delete the folder to rebuild it") from None
    n = meta["tokens"]
    tokens = np.memmap(folder / "tokens.u32", dtype=np.uint32, mode="r", shape=(n,)) if n else np.zeros(0, np.uint32)
    sentences = np.fromfile(folder / "sentences.i64", dtype=np.int64)
    return EncodedCorpus(words, counts, tokens, sentences, meta, folder)


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
