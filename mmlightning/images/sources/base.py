"""What every image source shares: image references, the selection result, label text rules, sampling.

    ref = ImageRef("/data/cat/1.jpg", labels=frozenset({"cat"}))
    sel = select_by_labels([ref, ...], ["cat", "cats", "dog"], n_per_word=50, seed=0)
    sel.by_word["cat"]      # up to 50 ImageRefs, the same ones for the same seed
    sel.missing["dog"]      # why a word got no image ("no image labelled 'dog'")

A source turns its own layout into `ImageRef`s (path + labels + optional group for diversity) and
answers `candidates(words, n_per_word, seed) -> Selection` and `labelled_words()` (every word it labels:
`shard --words labelled`). Labelled sources (ESP, folder, Tux Paint,
OpenClipart) share `select_by_labels`: a concept word matches an image when the word's WordNet lemma is
one of the image's (lemmatised) labels; up to N images are drawn per word with a per-word seeded RNG
(adding a word never changes another word's images), round-robin over groups so that one folder cannot
fill a word's N on its own. With `subtree=True` a word also matches the images with a label in the
WordNet subtree of the word's first noun sense ("animal" gets the images labelled cat, heron, ...; "fruit"
those labelled lemon): the paper's ImageNet rule, applied to labels instead of synset folders.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from mmlightning.errors import UserError

log = logging.getLogger(__name__)

# Function words and label boilerplate never used as labels (image descriptions and titles).
STOPWORDS = frozenset("""
a an the and or but nor of in on at to from by for with without within into onto over under above below
up down out off about as is are was were be been being am it its it's this that these those there here
his her their our your my me you he she they we them him us i some any all each every no not very
too so than then just only also can could will would shall should may might must do does did done
has have had having one two three four five six seven eight nine ten own same other such more most
what which who whom whose when where why how again once s t ll ve re d m let lets let's say says said
""".split())


@dataclass(frozen=True)
class ImageRef:
    """One image of a source: where it is, what it is labelled with, and how to read it.

    `path` is an image file (an `.svg` is rendered), or `<archive>.tar::<member>` for an image inside a
    tar. `fallback_svg` is rendered instead when the raster at `path` is too large to decode. `group`
    (e.g. the folder) spreads a word's images over groups. `label` is the wnid for ImageNet, else None.
    """

    path: str
    labels: frozenset = frozenset()
    group: str = ""
    label: str | None = None
    fallback_svg: str | None = None


@dataclass
class Selection:
    """A source's answer: images per concept word, images it had to skip, and words left without images."""

    by_word: dict[str, list[ImageRef]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)   # {"path": ..., "reason": ...}
    missing: dict[str, str] = field(default_factory=dict)  # word -> why it has no image
    notes: dict = field(default_factory=dict)            # source-specific counts for the manifest


def word_rng(seed: int, word: str) -> random.Random:
    """A RNG that depends only on (seed, word): stable across word lists and runs."""
    digest = hashlib.sha256(f"{seed}\0{word}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def tokens(text: str) -> list[str]:
    """Lower-cased alphabetic tokens of a text, at least two letters long; numbers are dropped.

    CamelCase, digits and separators split words: 'blue_fedora' -> ['blue', 'fedora'], 'truck2' -> ['truck'].
    """
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out = []
    for tok in re.split(r"[^A-Za-z']+", text):
        tok = tok.strip("'").lower()
        if tok.endswith("'s"):
            tok = tok[:-2]
        if len(tok) >= 2 and tok.isalpha():
            out.append(tok)
    return out


def content_lemmas(text: str, lemma: Callable[[str], str], drop: Iterable[str] = ()) -> set[str]:
    """Lemmas of the content words of `text` (stopwords, numbers, one-letter tokens and `drop` removed)."""
    drop = set(drop)
    return {lemma(t) for t in tokens(text) if t not in STOPWORDS and t not in drop}


def interleave_groups(refs: Sequence[ImageRef], rng: random.Random,
                      max_per_group: int | None = None) -> list[ImageRef]:
    """Shuffle within each group, then take one per group in turn (group order shuffled too).

    The first k of the result are a seeded sample spread as evenly as possible over groups; with
    `max_per_group`, no group contributes more than that many.
    """
    groups: dict[str, list[ImageRef]] = defaultdict(list)
    for r in sorted(refs, key=lambda r: r.path):
        groups[r.group].append(r)
    names = sorted(groups)
    rng.shuffle(names)
    for name in names:
        rng.shuffle(groups[name])
        if max_per_group is not None:
            del groups[name][max_per_group:]
    out: list[ImageRef] = []
    depth = 0
    while True:
        layer = [groups[n][depth] for n in names if depth < len(groups[n])]
        if not layer:
            return out
        out.extend(layer)
        depth += 1


def select_by_labels(images: Iterable[ImageRef], words: Iterable[str], n_per_word: int, seed: int,
                     lemma: Callable[[str], str] = str.lower,
                     max_per_group: int | None = None, subtree: bool = False) -> Selection:
    """Up to `n_per_word` images per concept word among `images`, matched on lemmatised labels (and, with
    `subtree`, on labels below the word's first noun sense in WordNet)."""
    index: dict[str, list[ImageRef]] = defaultdict(list)
    for ref in images:
        for lab in ref.labels:
            index[lab].append(ref)
    below: dict[str, set[ImageRef]] = defaultdict(set)  # synset name -> images with a label under it
    if subtree:
        from mmlightning.images.wordnet import first_noun_synset, noun_ancestors

        for lab, refs in index.items():
            for synset in noun_ancestors(lab):
                below[synset].update(refs)
    sel = Selection()
    via_subtree = 0
    by_lemma: dict[str, list[str]] = defaultdict(list)
    for word in sorted(set(words)):
        key = lemma(word)
        by_lemma[key].append(word)
        pool = index.get(key, [])
        if subtree and (synset := first_noun_synset(key)) is not None:
            via_subtree += bool(below[synset].difference(pool))
            pool = sorted(below[synset].union(pool), key=lambda r: r.path)
        if not pool:
            sel.missing[word] = f"no image labelled {key!r}" + (" or below it in WordNet" if subtree else "")
            continue
        sel.by_word[word] = interleave_groups(pool, word_rng(seed, word), max_per_group)[:n_per_word]
    if subtree:
        sel.notes["words_with_subtree_images"] = via_subtree
    shared = {key: ws for key, ws in by_lemma.items() if len(ws) > 1 and ws[0] in sel.by_word}
    if shared:  # "cat" and "cats" both take the images labelled "cat": say so, it is easy to miss
        sel.notes["words_sharing_a_lemma"] = {key: ws for key, ws in sorted(shared.items())}
        example = ", ".join(f"{'/'.join(ws)} -> {key}" for key, ws in sorted(shared.items())[:3])
        log.info("%d words share their images with another word of the same lemma (%s%s)",
                 sum(len(ws) for ws in shared.values()), example, ", ..." if len(shared) > 3 else "")
    return sel


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


# The most bytes read from one file of a source: an image (configurable per run: `shard --max_image_mb`), or a
# label / description text file (tag lists and descriptions are a few hundred bytes).
MAX_IMAGE_BYTES = 64 * 2 ** 20
MAX_TEXT_BYTES = 2 ** 20


class NotReadable(ValueError):
    """A source file that is not read: not a regular file, over the size cap, or unreadable (the reason)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a special file"


def mib(n: float) -> str:
    """A byte count in MiB for messages: 64 MiB, 0.005 MiB."""
    return f"{n / 2 ** 20:.4g} MiB"


def file_problem(path) -> str | None:
    """Why `path` (its target, for a symlink) is not a regular file to read, or None when it is one."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"unreadable: {e.strerror}"
    return None if stat.S_ISREG(st.st_mode) else f"not a regular file ({_kind(st.st_mode)})"


def read_regular(path, max_bytes: int) -> bytes:
    """The bytes of the regular file `path` (a symlink to one is fine), at most `max_bytes` of them.

    A FIFO, device or socket is refused without blocking (opened non-blocking, checked with fstat on the
    open descriptor, so a file swapped after listing is caught too); a file over `max_bytes`, or that grows
    past it while read, is refused. Raises NotReadable with the reason.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise NotReadable(f"unreadable: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise NotReadable(f"{st.st_size} bytes, larger than the {mib(max_bytes)} cap")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while chunk := os.read(fd, min(2 ** 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise NotReadable(f"grew larger than the {mib(max_bytes)} cap while read")
        return b"".join(chunks)
    except OSError as e:
        raise NotReadable(f"unreadable: {e.strerror}") from None
    finally:
        os.close(fd)


def skip_special(path: str, skipped: list[dict]) -> bool:
    """True (and the reason recorded in `skipped`, and logged) when `path` is not a regular file to read."""
    problem = file_problem(path)
    if problem is None:
        return False
    skipped.append({"path": path, "reason": problem})
    log.warning("skipped %s: %s", path, problem)
    return True


def walk_files(root, suffixes: Sequence[str], skipped: list[dict]) -> list[str]:
    """Sorted paths of the regular files under `root` ending in `suffixes` (case-insensitive), following no
    symlinked folder (a symlink to a regular file is listed).

    Folders that cannot be listed, and FIFOs, devices, sockets or broken links named like a wanted file,
    are recorded in `skipped` (never opened) and the walk goes on.
    """
    def onerror(err: OSError):
        skipped.append({"path": str(err.filename), "reason": f"unreadable folder: {err.strerror}"})

    suffixes = tuple(s.lower() for s in suffixes)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.lower().endswith(suffixes) and not skip_special(path, skipped):
                out.append(path)
    return sorted(out)


def check_flag(source: str, name: str, value) -> bool:
    """A yes/no source option: a bool, else a UserError (a YAML typo like `subtree: yes please`)."""
    if not isinstance(value, bool):
        raise UserError(f"{source}: option {name} must be true or false, got {value!r}")
    return value


def default_lemma() -> Callable[[str], str]:
    """NLTK's WordNet noun lemmatiser over the offline WordNet (imported only when needed)."""
    from mmlightning.images.wordnet import lemmatize

    return lemmatize


class LabelledSource:
    """A source whose images carry label sets: subclasses list them in `images()`, and `candidates`
    picks up to N per word among the images whose labels hold the word's lemma."""

    lemma: Callable[[str], str] | None = None
    max_per_group: int | None = None
    subtree: bool = False  # also match labels in the WordNet subtree of a word (set by the constructors)

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        raise NotImplementedError

    def describe(self, refs: list[ImageRef]) -> dict:
        """Counts stored in the selection's notes."""
        return {"images": len(refs)}

    def listing(self) -> tuple[list[ImageRef], list[dict]]:
        """(images, skipped files) of the source, listed once per source object."""
        if getattr(self, "_listing", None) is None:
            skipped: list[dict] = []
            self._listing = (self.images(skipped), skipped)
        return self._listing

    def labelled_words(self) -> list[str]:
        """Every label of an image of the source (lemmas), sorted: the words of `shard --words labelled`."""
        return sorted({lab for ref in self.listing()[0] for lab in ref.labels})

    def candidates(self, words, n_per_word: int, seed: int) -> Selection:
        refs, skipped = self.listing()
        sel = select_by_labels(refs, words, n_per_word, seed, lemma=self.lemma or default_lemma(),
                               max_per_group=self.max_per_group, subtree=self.subtree)
        sel.skipped.extend(skipped)
        sel.notes.update(self.describe(refs))
        return sel
