"""Text corpora as token streams, and the vocabulary + encoded-corpus cache that skip-gram trains on.

    for sentence in iter_sentences(["gcide", "text8", "bnc/Texts", "notes.txt.gz"]):
        ...                                    # lists of lower-case words, never the whole corpus
    enc = prepare_corpus(["gcide"], cache_dir="checkpoints/corpus_cache", min_count=5)
    enc.tokens      # uint32 (N,) memmap: word ids, rare words dropped
    enc.sentences   # int64 (S + 1,): sentence s is tokens[sentences[s]:sentences[s + 1]]
    enc.words, enc.counts   # vocabulary, most frequent first (ties: first seen first), int64 (V,)

Sources (a string or a list of them, concatenated in order):
- `gcide`: the GCIDE dictionary from Debian's dict-gcide (`/usr/share/dictd/gcide.dict.dz`); any
  `*.dict` / `*.dict.dz` file is read the same way (dictzip is gzip). Markup (pronunciations `\\..\\`,
  source tags `[1913 Webster]`, citations `--Milton.`, braces) is stripped; one entry paragraph = one sentence.
- `text8`: `text8` in the current folder or `$MMLIGHTNING_DATA`; downloaded only with `download=True`.
- `*.xml`: BNC XML; the words are the text of `<w>` elements, `</s>` ends a sentence.
- `*.txt`, `*.gz`, any other file: plain text, one line = one sentence (long lines such as text8's
  single line are read in pieces and cut every 10,000 words, as word2vec does).
- a folder: every file below it, in sorted order.

Text is UTF-8; undecodable bytes become U+FFFD and are counted (`CorpusStats.replaced`), never fatal.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mmlightning.atomic import write_json
from mmlightning.errors import UserError

GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
MAX_SENTENCE = 10_000  # word2vec's MAX_SENTENCE_LENGTH
CACHE_VERSION = 1  # bump when tokenisation changes: old caches are then ignored
_CHUNK = 1 << 20  # bytes read at a time

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # a unicode word, apostrophes inside kept (don't, o'clock)
_GCIDE_WORD = re.compile(r"[a-z]+")
_GCIDE_STRIP = re.compile(
    r"\\[^\\\n]*\\"  # pronunciation \Af*fect"\
    r"|\[(?:[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers)[^\]\n]*)\]"  # source tags
    r"|--\s?[A-Z][A-Za-z.']*"  # citation of an author: --Milton.
    r"|^\s*Syn:|^\s*Note:"
)
_GCIDE_HEADWORD = re.compile(r"^\S.*\s\\[^\\]+\\")  # first real entry: "Affect \Af*fect"\, v. t."
_BNC_W = re.compile(r"<w\b[^>]*>([^<]*)")
_BNC_SENT_END = re.compile(r"</s>")


@dataclass
class CorpusStats:
    """What reading a corpus found: files, sentences, tokens, and replaced undecodable bytes per file."""

    files: list[str] = field(default_factory=list)
    sentences: int = 0
    tokens: int = 0
    replaced: int = 0
    replaced_by_file: dict[str, int] = field(default_factory=dict)


class _ReplaceCounter:
    """A codecs error handler that substitutes U+FFFD for each undecodable byte run and counts bytes."""

    def __init__(self):
        self.count = 0

    def __call__(self, err: UnicodeDecodeError):
        self.count += err.end - err.start
        return "\ufffd", err.end


_counter = _ReplaceCounter()
codecs.register_error("mmlightning.count", _counter)


# ---------------------------------------------------------------------------------------------- sources
def resolve_sources(sources: str | os.PathLike | Sequence[str | os.PathLike], download: bool = False) -> list[Path]:
    """Expand aliases (`gcide`, `text8`) and folders into the ordered list of files to read."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise UserError("corpus: no source given (use e.g. corpus: [gcide] or a path to a text file)")
    files: list[Path] = []
    for src in sources:
        name = str(src)
        if name == "gcide":
            if not GCIDE_PATH.is_file():
                raise UserError(f"{GCIDE_PATH}: GCIDE not installed; run `sudo apt-get install dict-gcide` "
                                "(or `make system-data`), or point corpus at another text")
            files.append(GCIDE_PATH)
        elif name == "text8":
            files.append(find_text8(download))
        else:
            p = Path(name).expanduser()
            if p.is_dir():
                found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
                if not found:
                    raise UserError(f"{p}: corpus folder holds no files")
                files.extend(found)
            elif p.is_file():
                files.append(p)
            else:
                raise UserError(f"{p}: corpus file not found")
    return files


def find_text8(download: bool = False) -> Path:
    """Return the text8 file: ./text8 or $MMLIGHTNING_DATA/text8; download it only when asked."""
    base = Path(os.environ.get("MMLIGHTNING_DATA", "."))
    for cand in (Path("text8"), base / "text8"):
        if cand.is_file():
            return cand
    target = base / "text8"
    if not download:
        raise UserError(f"{target}: text8 not found; download {TEXT8_URL}, unzip it to {target} "
                        "(or set MMLIGHTNING_DATA to its folder), or pass download=True where a network exists")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            zpath = Path(tmp) / "text8.zip"
            urllib.request.urlretrieve(TEXT8_URL, zpath)
            with zipfile.ZipFile(zpath) as z:
                z.extract("text8", tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "text8"), target)
    except OSError as e:
        raise UserError(f"{TEXT8_URL}: download failed ({e}); fetch it elsewhere and unzip it to {target}") from None
    return target


def _open_text(path: Path):
    """A text stream over `path` (gzip/dictzip transparently) that replaces and counts bad bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    return codecs.getreader("utf-8")(raw, errors="mmlightning.count")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".dict", ".dict.dz")):
        return "gcide"
    if name.endswith((".xml", ".xml.gz")):
        return "bnc"
    return "text"


# ---------------------------------------------------------------------------------------------- readers
def _split_long(words: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(words), MAX_SENTENCE):
        yield words[i:i + MAX_SENTENCE]


def _read_text(stream) -> Iterator[list[str]]:
    """Plain text: one line = one sentence; lines are read in pieces so one 100 MB line is fine."""
    pending: list[str] = []
    tail = ""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        chunk = tail + chunk
        lines = chunk.split("\n")
        tail = lines.pop()  # maybe incomplete
        for line in lines:
            pending.extend(_WORD.findall(line.lower()))
            if pending:
                yield from _split_long(pending)
            pending = []
        # cut the incomplete line at its last space so a single huge line streams in pieces
        cut = tail.rfind(" ")
        if cut > 0:
            pending.extend(_WORD.findall(tail[:cut].lower()))
            tail = tail[cut:]
            while len(pending) >= MAX_SENTENCE:
                yield pending[:MAX_SENTENCE]
                pending = pending[MAX_SENTENCE:]
    pending.extend(_WORD.findall(tail.lower()))
    if pending:
        yield from _split_long(pending)


def _read_gcide(stream) -> Iterator[list[str]]:
    """GCIDE dictd text: skip the licence header, strip markup, one paragraph = one sentence."""
    started = False
    para: list[str] = []
    for line in stream:
        if not started:
            if not _GCIDE_HEADWORD.match(line):
                continue
            started = True
        if not line.strip():
            if para:
                yield from _split_long(para)
                para = []
            continue
        para.extend(_GCIDE_WORD.findall(_GCIDE_STRIP.sub(" ", line).lower()))
    if para:
        yield from _split_long(para)


def _read_bnc(stream) -> Iterator[list[str]]:
    """BNC XML: the text of each `<w>` element (lower-cased, stripped); `</s>` closes a sentence."""
    sent: list[str] = []
    for line in stream:
        parts = _BNC_SENT_END.split(line)
        for k, part in enumerate(parts):
            for w in _BNC_W.findall(part):
                sent.extend(_WORD.findall(w.lower()))
            if k < len(parts) - 1 and sent:  # a </s> followed this part
                yield from _split_long(sent)
                sent = []
    if sent:
        yield from _split_long(sent)


_READERS = {"text": _read_text, "gcide": _read_gcide, "bnc": _read_bnc}


def iter_sentences(sources, download: bool = False, stats: CorpusStats | None = None) -> Iterator[list[str]]:
    """Stream the sentences (lists of lower-case words) of every source, in order; fill `stats` if given."""
    stats = stats if stats is not None else CorpusStats()
    for path in resolve_sources(sources, download):
        stats.files.append(str(path))
        before = _counter.count
        try:
            with _open_text(path) as stream:
                for sent in _READERS[_kind(path)](stream):
                    stats.sentences += 1
                    stats.tokens += len(sent)
                    yield sent
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: cannot read corpus file ({type(e).__name__}: {e})") from None
        bad = _counter.count - before
        if bad:
            stats.replaced += bad
            stats.replaced_by_file[str(path)] = bad


# ---------------------------------------------------------------------------------------------- cache
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

    def vocab_hash(self) -> str:
        """A short fingerprint of the vocabulary (words in order) to match checkpoints against."""
        return hashlib.sha1("\n".join(self.words).encode()).hexdigest()[:16]

    def sentence_ids(self) -> np.ndarray:
        """int32 (N,): the sentence index of every token."""
        lengths = np.diff(self.sentences)
        return np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)


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
