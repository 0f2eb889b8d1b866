"""Text corpora as streams of sentences (lists of lower-case words); the encoded-corpus cache is in corpus.py.

    for sentence in iter_sentences(["gcide", "text8", "bnc/Texts", "notes.txt.gz"]):
        ...                                    # lists of lower-case words, never the whole corpus

Sources (a string or a list of them, concatenated in order):
- `gcide`: the GCIDE dictionary from Debian's dict-gcide (`/usr/share/dictd/gcide.dict.dz`); any
  `*.dict` / `*.dict.dz` file is read the same way (dictzip is gzip). Markup (pronunciations `\\..\\`,
  source tags `[1913 Webster]`, citations `--Milton.`, braces) is stripped; one entry paragraph = one sentence.
- `text8`: `text8` in the current folder or `$MMLIGHTNING_DATA`; downloaded only with `download=True`.
- `*.xml`: BNC XML; the words are the text of `<w>` elements, `</s>` ends a sentence.
- `*.txt`, `*.gz`, any other file: plain text, one line = one sentence (long lines such as text8's
  single line are read in pieces and cut every 10,000 words, as word2vec does).
- a folder: every file below it, in sorted order.

Text is UTF-8; undecodable bytes become U+FFFD and are counted (`CorpusStats.replaced`). A file where
more than `MAX_REPLACED_RATIO` (1%) of the bytes are undecodable is not text (a binary file, another
encoding): it is refused with a UserError naming the file and the ratio.
"""
from __future__ import annotations

import codecs
import gzip
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from mmlightning.errors import UserError

GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
MAX_SENTENCE = 10_000  # word2vec's MAX_SENTENCE_LENGTH
MAX_REPLACED_RATIO = 0.01  # more undecodable bytes than this share of a file: not a text corpus
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
                size = stream.stream.tell()  # bytes read (uncompressed for gzip)
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: cannot read corpus file ({type(e).__name__}: {e})") from None
        bad = _counter.count - before
        if bad:
            stats.replaced += bad
            stats.replaced_by_file[str(path)] = bad
            check_replaced(path, bad, size)


def check_replaced(path: str | os.PathLike, replaced: int, size: int) -> None:
    """UserError if more than MAX_REPLACED_RATIO of a file's `size` bytes were undecodable (`replaced`)."""
    ratio = replaced / max(size, 1)
    if ratio > MAX_REPLACED_RATIO:
        raise UserError(f"{path}: {ratio:.1%} of its bytes are not UTF-8 text ({replaced} of {size}; at most "
                        f"{MAX_REPLACED_RATIO:.0%} allowed); is it a text corpus? convert it to UTF-8 or remove it")
