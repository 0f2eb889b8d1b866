"""Word vectors in gensim's shape (`index_to_key`, `key_to_index`, `vectors`) and word2vec text I/O.

    kv = KeyedVectors(["cat", "dog"], np.zeros((2, 100), np.float32))
    kv.save_word2vec("checkpoints/x/vectors.txt")         # gensim's load_word2vec_format reads it
    kv = load_vectors("vectors.txt", restrict_to={"cat"})  # only the words needed (fast on 400k x 300)
    kv.lookup("Cat")                                      # index: the word as given, then lower-cased

Accepted inputs, told from the file's first bytes (never from its name):
  - word2vec text (header "count dim") or binary; text or binary is told from the first row after the
    header (text: the word, then printable numbers up to a newline), whatever bytes the words hold;
  - plain arrays: `vectors.npy`, a (V, D) float matrix (`np.save`), with `vectors.vocab.txt` beside it
    (the same name, suffix `.vocab.txt`): V lines of UTF-8, one word per line, row i's word on line i.
    Read with `np.load(allow_pickle=False)` (memory-mapped: `restrict_to` copies only the rows needed);
  - gensim KeyedVectors files (`.kv` / `.model`, gensim's `save`) ONLY with `unsafe_gensim_pickle=True`
    (CLI: `--unsafe_gensim_pickle true`): that format is a Python pickle, and unpickling a file can run
    any code in it, so use it only for files you trust. Without it a pickle (first byte 0x80) is refused
    with one line, and nothing of it is unpickled; gensim's `save_word2vec_format` converts such a file.
Malformed files raise `UserError` naming file and line: a word count other than the header's (also
data left after the header's count in a binary file), a row of the wrong length, NaN, or no word at all;
for arrays, a matrix that is not 2-D float, or a word list of another length.
Words that are not UTF-8 are read with U+FFFD and counted; a repeated word keeps its first vector (as
gensim does); both are logged as one warning each (with `restrict_to`, repeats count among the kept words).
"""
from __future__ import annotations

import logging
import os
import pickle
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError

log = logging.getLogger(__name__)


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


NPY_MAGIC = b"\x93NUMPY"
UNSAFE_FLAG = "--unsafe_gensim_pickle"


def load_vectors(path: str | os.PathLike, restrict_to: Iterable[str] | None = None,
                 unsafe_gensim_pickle: bool = False) -> KeyedVectors:
    """Load word2vec text/binary, a `.npy` matrix + `.vocab.txt`, or (opt-in) gensim's pickled KeyedVectors.

    `restrict_to` words match as given or lower-cased (the lookup rule), so evaluating a huge file on a
    benchmark parses only the benchmark's rows. `unsafe_gensim_pickle`: read gensim's native format, which
    unpickles the file (it can run code: only for files you trust); otherwise such a file is refused unread.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: vectors file not found")
    wanted = _wanted(restrict_to)
    with open(path, "rb") as fh:
        head = fh.read(len(NPY_MAGIC))
    if head[:1] == b"\x80":  # a pickle: gensim's native KeyedVectors.save
        if not unsafe_gensim_pickle:
            raise UserError(f"{path}: is a Python pickle (gensim's native format); unpickling can run code, so it "
                            f"was not read: convert it with gensim's save_word2vec_format, or pass {UNSAFE_FLAG} "
                            f"true (unpickles: only for files you trust)")
        kv = _load_gensim_native(path)
        return KeyedVectors(*_filter(kv, wanted)) if wanted is not None and len(kv) else kv
    if head == NPY_MAGIC:
        return _load_npy(path, wanted)
    return _load_word2vec(path, wanted)


def vocab_path(npy: str | os.PathLike) -> Path:
    """The word list of a `.npy` matrix: `vectors.npy` -> `vectors.vocab.txt`."""
    return Path(npy).with_suffix(".vocab.txt")


def _wanted(restrict_to: Iterable[str] | None) -> set[str] | None:
    """The words to keep, as given and lower-cased; None keeps all."""
    if restrict_to is None:
        return None
    wanted = set()
    for w in restrict_to:
        wanted.add(w)
        wanted.add(w.lower())
    return wanted


def _filter(kv: KeyedVectors, wanted: set[str]):
    idx = [i for i, k in enumerate(kv.index_to_key) if k in wanted]
    return [kv.index_to_key[i] for i in idx], kv.vectors[idx]


def _load_gensim_native(path: Path) -> KeyedVectors:
    """Unpickles `path` through gensim: only ever called with the caller's explicit opt-in."""
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
    _no_words(path, len(obj.index_to_key))
    return KeyedVectors(list(obj.index_to_key), np.asarray(obj.vectors, dtype=np.float32))


def _load_npy(path: Path, wanted: set[str] | None) -> KeyedVectors:
    """A (V, D) float `.npy` matrix and its `.vocab.txt` (V words); never unpickles (allow_pickle=False)."""
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # object arrays (pickles) and broken headers land here
        raise UserError(f"{path}: not a plain numeric .npy array (object arrays are pickles: never read) ({e})") from None
    if matrix.ndim != 2 or matrix.shape[1] == 0 or matrix.dtype.kind != "f":
        raise UserError(f"{path}: expected a 2-D float matrix (words x dimensions), got shape "
                        f"{matrix.shape} of {matrix.dtype}")
    words = _read_vocab(path, matrix.shape[0])
    check = _WordCheck(vocab_path(path))
    keys, idx = [], []
    for i, w in enumerate(words):
        if (wanted is None or w in wanted) and check.is_new(w, i + 1):
            keys.append(w)
            idx.append(i)
    _no_words(path, len(words))
    check.warn("line")
    return _finite(path, keys, np.asarray(matrix[idx], dtype=np.float32))  # (V', D): only these rows are read


def _read_vocab(npy: Path, n: int) -> list[str]:
    """The n words of `npy`'s word list, one per line; UserError naming the line of an empty or spaced word."""
    path = vocab_path(npy)
    if not path.is_file():
        raise UserError(f"{npy}: no word list {path.name} beside it (one word per line, row i's word on line i)")
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != n:
        raise UserError(f"{npy}: the matrix has {n} rows but {path.name} lists {len(lines)} words")
    check = _WordCheck(path)
    words = [check.decode(raw.rstrip(b"\r"), i) for i, raw in enumerate(lines, start=1)]
    for i, w in enumerate(words, start=1):
        if not w or any(c.isspace() for c in w):
            raise UserError(f"{path}:{i}: word {w!r} is empty or holds whitespace (one word per line, line {i})")
    check.warn("line")
    return words


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
        if _body_is_text(fh, d):
            kv = _read_text(path, fh, n, d, wanted)
        else:
            kv = _read_binary(path, fh, n, d, wanted)
    return kv


def _body_is_text(fh, d: int) -> bool:
    """Whether the first row after the header reads as text: '<word> <numbers>' up to a newline.

    Only the row's values decide (a word may hold any bytes, e.g. one non-UTF-8 character): binary float32
    values are almost never a clean line of printable text. A misread file still fails loudly (its rows do
    not parse, or its word count disagrees with the header), never silently.
    """
    start = fh.tell()
    limit = 64 * d + 65536                             # a text row of d values is far shorter than this
    try:
        line = fh.readline(limit)
        while line and not line.strip():               # blank lines between header and rows
            line = fh.readline(limit)
        if not line:
            return True
        if len(line) >= limit and not line.endswith(b"\n"):
            return False
        _, _, values = line.rstrip(b"\r\n").partition(b" ")
        try:
            text = values.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return bool(text.strip()) and not any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in text)
    finally:
        fh.seek(start)


class _WordCheck:
    """Counts the words that are not UTF-8 and the repeated words (only the first copy is kept, as gensim does)."""

    def __init__(self, path: Path):
        self.path = path
        self.undecodable: list[int] = []     # line (text) or word number (binary) of each
        self.duplicates: list[tuple[int, str]] = []
        self.seen: set[str] = set()

    def decode(self, word: bytes, where: int) -> str:
        try:
            return word.decode("utf-8")
        except UnicodeDecodeError:
            self.undecodable.append(where)
            return word.decode("utf-8", errors="replace")

    def is_new(self, word: str, where: int) -> bool:
        if word in self.seen:
            self.duplicates.append((where, word))
            return False
        self.seen.add(word)
        return True

    def warn(self, unit: str) -> None:
        if self.undecodable:
            log.warning(f"{self.path}: {len(self.undecodable)} word(s) are not valid UTF-8 (first at {unit} "
                        f"{self.undecodable[0]}); read with U+FFFD for the bad bytes")
        if self.duplicates:
            where, word = self.duplicates[0]
            log.warning(f"{self.path}: {len(self.duplicates)} duplicate word(s) ignored, first copy kept "
                        f"(first: {word!r} at {unit} {where})")


def _parse_row(path: Path, lineno: int, word: str, rest: bytes, d: int) -> np.ndarray:
    """The (d,) float32 values of one text row; UserError naming the line when there are not d numbers."""
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
            raise UserError(f"{path}:{lineno}: word {word!r} has a non-numeric value") from None
        raise UserError(f"{path}:{lineno}: word {word!r} has {len(rest.split())} values, header says {d}")
    return vec


def _read_text(path: Path, fh, n: int, d: int, wanted: set[str] | None) -> KeyedVectors:
    keys: list[str] = []
    rows: list[np.ndarray] = []
    check = _WordCheck(path)
    count = 0
    for lineno, raw in enumerate(fh, start=2):
        if not raw.strip():
            continue
        count += 1
        word, _, rest = raw.rstrip(b"\r\n").partition(b" ")
        word_s = check.decode(word, lineno)
        if wanted is not None and word_s not in wanted:
            continue
        vec = _parse_row(path, lineno, word_s, rest, d)
        if check.is_new(word_s, lineno):
            keys.append(word_s)
            rows.append(vec)
    if count != n:
        raise UserError(f"{path}: header says {n} words but the file has {count}")
    _no_words(path, count)
    check.warn("line")
    return _stack(path, keys, rows, d)


def _stack(path: Path, keys: list[str], rows: list[np.ndarray], d: int) -> KeyedVectors:
    """KeyedVectors of the rows read; UserError naming the first word with a NaN or infinite value."""
    vectors = np.stack(rows) if rows else np.zeros((0, d), np.float32)  # (V, d)
    return _finite(path, keys, vectors)


def _finite(path: Path, keys: list[str], vectors: np.ndarray) -> KeyedVectors:
    """KeyedVectors(keys, vectors); UserError naming the first word with a NaN or infinite value."""
    if not np.isfinite(vectors).all():
        bad = int(np.argwhere(~np.isfinite(vectors).all(1))[0, 0])
        raise UserError(f"{path}: word {keys[bad]!r} has a NaN or infinite value")
    return KeyedVectors(keys, vectors)


def _no_words(path: Path, count: int) -> None:
    if count == 0:
        raise UserError(f"{path}: the file holds no word vectors (header count 0 or no rows)")


def _read_binary(path: Path, fh, n: int, d: int, wanted: set[str] | None) -> KeyedVectors:
    keys, rows = [], []
    check = _WordCheck(path)
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
        w = check.decode(bytes(word), i + 1)
        if (wanted is None or w in wanted) and check.is_new(w, i + 1):
            keys.append(w)
            rows.append(np.frombuffer(buf, dtype="<f4").astype(np.float32))
    _no_words(path, n)
    _refuse_trailing_data(path, fh, n)
    check.warn("word")
    return _stack(path, keys, rows, d)


def _refuse_trailing_data(path: Path, fh, n: int) -> None:
    """After the header's n binary records only whitespace may follow (else the header under-counts words)."""
    offset = fh.tell()
    while chunk := fh.read(1 << 16):
        if chunk.strip():
            raise UserError(f"{path}: data continues after the {n} words the header announces (byte {offset}); "
                            f"the header under-counts the words, or this is not a word2vec file")
