"""Word vectors in gensim's shape (`index_to_key`, `key_to_index`, `vectors`) and word2vec text I/O.

    kv = KeyedVectors(["cat", "dog"], np.zeros((2, 100), np.float32))
    kv.save_word2vec("checkpoints/x/vectors.txt")         # gensim's load_word2vec_format reads it
    kv = load_vectors("vectors.txt", restrict_to={"cat"})  # only the words needed (fast on 400k x 300)
    kv.lookup("Cat")                                      # index: the word as given, then lower-cased

Accepted inputs: word2vec text (header "count dim"), word2vec binary, gensim KeyedVectors files
(`.kv` / `.model`, saved with gensim's `save`). Malformed files raise `UserError` naming file and line.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError


class KeyedVectors:
    """An ordered vocabulary and its (V, D) float32 matrix, with case-tolerant lookup."""

    def __init__(self, index_to_key: Sequence[str], vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(index_to_key):
            raise ValueError(f"vectors shape {vectors.shape} does not match {len(index_to_key)} keys")
        self.index_to_key: list[str] = list(index_to_key)
        self.vectors: np.ndarray = vectors  # (V, D)
        self.key_to_index: dict[str, int] = {}
        for i, k in enumerate(self.index_to_key):
            self.key_to_index.setdefault(k, i)  # first occurrence wins, as in gensim

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, word: str) -> bool:
        return self.lookup(word) is not None

    def __getitem__(self, word: str) -> np.ndarray:
        i = self.lookup(word)
        if i is None:
            raise KeyError(word)
        return self.vectors[i]

    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def lookup(self, word: str) -> int | None:
        """Index of `word` as given, else of its lower-cased form, else None."""
        i = self.key_to_index.get(word)
        if i is None:
            i = self.key_to_index.get(word.lower())
        return i

    def subset(self, words: Iterable[str]) -> "KeyedVectors":
        """The vectors of the given words that are present (lookup rules apply), keyed as given."""
        keys, rows = [], []
        for w in words:
            i = self.lookup(w)
            if i is not None:
                keys.append(w)
                rows.append(i)
        return KeyedVectors(keys, self.vectors[rows] if rows else np.zeros((0, self.vector_size), np.float32))

    def save_word2vec(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write word2vec format atomically (text by default); gensim's `load_word2vec_format` reads it."""
        with atomic_path(path) as tmp:
            save_word2vec(tmp, self.index_to_key, self.vectors, binary=binary)


def save_word2vec(path: str | os.PathLike, keys: Sequence[str], vectors: np.ndarray, binary: bool = False) -> None:
    """Write keys and (V, D) vectors in word2vec text (or binary) format; keys must not contain spaces."""
    vectors = np.asarray(vectors, dtype=np.float32)
    for k in keys:
        if not k or any(c.isspace() for c in k):
            raise UserError(f"{path}: cannot write word {k!r} in word2vec format (empty or contains whitespace)")
    with open(path, "wb") as fh:
        fh.write(f"{len(keys)} {vectors.shape[1]}\n".encode())
        for k, row in zip(keys, vectors):
            if binary:
                fh.write(k.encode() + b" " + row.astype("<f4").tobytes() + b"\n")
            else:
                fh.write((k + " " + " ".join(f"{x:.7g}" for x in row.tolist()) + "\n").encode())


def load_vectors(path: str | os.PathLike, restrict_to: Iterable[str] | None = None) -> KeyedVectors:
    """Load word2vec text/binary or a gensim KeyedVectors file; with `restrict_to`, keep only those words.

    `restrict_to` words match as given or lower-cased (the lookup rule), so evaluating a huge file on a
    benchmark parses only the benchmark's rows.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: vectors file not found")
    wanted = None
    if restrict_to is not None:
        wanted = set()
        for w in restrict_to:
            wanted.add(w)
            wanted.add(w.lower())
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":  # a pickle: gensim's native KeyedVectors.save
        kv = _load_gensim_native(path)
    else:
        kv = _load_word2vec(path, wanted)
    if wanted is not None and len(kv) and head[:1] == b"\x80":
        kv = KeyedVectors(*_filter(kv, wanted))
    return kv


def _filter(kv: KeyedVectors, wanted: set[str]):
    idx = [i for i, k in enumerate(kv.index_to_key) if k in wanted]
    return [kv.index_to_key[i] for i in idx], kv.vectors[idx]


def _load_gensim_native(path: Path) -> KeyedVectors:
    try:
        from gensim.models import KeyedVectors as GKV
        from gensim.models import Word2Vec

        obj = GKV.load(str(path))
        if isinstance(obj, Word2Vec):
            obj = obj.wv
    except (pickle.UnpicklingError, EOFError, AttributeError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable gensim KeyedVectors file ({type(e).__name__}: {e})") from None
    if not hasattr(obj, "index_to_key"):
        raise UserError(f"{path}: pickle holds a {type(obj).__name__}, not gensim KeyedVectors")
    return KeyedVectors(list(obj.index_to_key), np.asarray(obj.vectors, dtype=np.float32))


def _parse_header(path: Path, line: bytes) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UserError(f"{path}:1: expected a word2vec header 'count dim', got {line[:60]!r}")
    n, d = int(parts[0]), int(parts[1])
    if d <= 0:
        raise UserError(f"{path}:1: header gives dimension {d}")
    return n, d


def _load_word2vec(path: Path, wanted: set[str] | None) -> KeyedVectors:
    with open(path, "rb") as fh:
        n, d = _parse_header(path, fh.readline())
        body_start = fh.tell()
        sample = fh.read(4096)
        binary = _looks_binary(sample)
        fh.seek(body_start)
        if binary:
            return _read_binary(path, fh, n, d, wanted)
        return _read_text(path, fh, n, d, wanted)


def _looks_binary(sample: bytes) -> bool:
    if not sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(sample) - 4  # a cut multi-byte char at the very end is still text
    return b"\x00" in sample


def _read_text(path: Path, fh, n: int, d: int, wanted: set[str] | None) -> KeyedVectors:
    keys: list[str] = []
    rows: list[np.ndarray] = []
    count = 0
    for lineno, raw in enumerate(fh, start=2):
        if not raw.strip():
            continue
        count += 1
        word, _, rest = raw.rstrip(b"\r\n").partition(b" ")
        try:
            word_s = word.decode("utf-8")
        except UnicodeDecodeError:
            word_s = word.decode("utf-8", errors="replace")
        if wanted is not None and word_s not in wanted:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                vec = np.fromstring(rest, dtype=np.float32, sep=" ") if rest.strip() else np.zeros(0, np.float32)
            except ValueError:  # newer numpy raises on a non-numeric token instead of stopping early
                vec = np.zeros(0, np.float32)  # size != d: reported below with the line number
        if vec.size != d:
            try:
                [float(x) for x in rest.split()]
            except ValueError:
                raise UserError(f"{path}:{lineno}: word {word_s!r} has a non-numeric value") from None
            raise UserError(f"{path}:{lineno}: word {word_s!r} has {len(rest.split())} values, header says {d}")
        keys.append(word_s)
        rows.append(vec)
    if count != n:
        raise UserError(f"{path}: header says {n} words but the file has {count}")
    vectors = np.stack(rows) if rows else np.zeros((0, d), np.float32)
    if not np.isfinite(vectors).all():
        bad = int(np.argwhere(~np.isfinite(vectors).all(1))[0, 0])
        raise UserError(f"{path}: word {keys[bad]!r} has a NaN or infinite value")
    return KeyedVectors(keys, vectors)


def _read_binary(path: Path, fh, n: int, d: int, wanted: set[str] | None) -> KeyedVectors:
    keys, rows = [], []
    for i in range(n):
        word = bytearray()
        while True:
            c = fh.read(1)
            if not c:
                raise UserError(f"{path}: binary file ends after {i} of {n} words (header lies or file truncated)")
            if c == b" ":
                break
            if c != b"\n":
                word += c
        buf = fh.read(4 * d)
        if len(buf) != 4 * d:
            raise UserError(f"{path}: binary file truncated in word {i + 1} of {n}")
        w = word.decode("utf-8", errors="replace")
        if wanted is None or w in wanted:
            keys.append(w)
            rows.append(np.frombuffer(buf, dtype="<f4").astype(np.float32))
    vectors = np.stack(rows) if rows else np.zeros((0, d), np.float32)
    return KeyedVectors(keys, vectors)
