"""ImageNet: a word's images are sampled from the WordNet subtree of its synset, as in the paper.

    src = ImageNetSource("/data/imagenet")      # train/<wnid>/*.JPEG or train/<wnid>.tar
    src.candidates(["dog", "car"], n_per_word=1000, seed=0)

Layout: `<root>/train/<wnid>/` image files, or `<root>/train/<wnid>.tar` (one archive per synset,
images read as `archive.tar::member`), plus the hierarchy ImageNet distributes: `wordnet.is_a.txt`
(`parent child` wnid pairs) and `words.txt` (`wnid<TAB>lemma, lemma, ...`), looked up in `<root>` or
given explicitly. When those files are absent the hierarchy is WordNet 3.0's noun hierarchy (hyponyms
and instance hyponyms; wnid = 'n' + 8-digit offset), read lazily from the offline WordNet.

A word maps to its first noun sense (senses ranked by WordNet when it knows the wnid, else by
words.txt order); `all_senses=True` pools every noun sense. Up to N distinct images are sampled
uniformly (seeded per word) from the images of every synset in the sense's subtree; when the subtree
has fewer than N, all of them are kept and the rest is sampled from the subtree of the sense's first
hypernym (`backoff=False` turns that off). "First" is the first line of `wordnet.is_a.txt` naming it, or
the lowest wnid when the hierarchy is WordNet's: never Python's set order, so every run backs off alike.
The words it labels (`labelled_words`, for `shard --words labelled`) are the lemmas of the synsets under train/.
"""
from __future__ import annotations

import logging
import os
import re
import tarfile
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (IMAGE_SUFFIXES, ImageRef, Selection, default_lemma, file_problem,
                                             skip_special, word_rng)

log = logging.getLogger(__name__)


class FileHierarchy:
    """The hierarchy from ImageNet's `wordnet.is_a.txt` and `words.txt`."""

    def __init__(self, is_a: Path, words: Path):
        self.children: dict[str, list[str]] = defaultdict(list)
        self.parents: dict[str, list[str]] = defaultdict(list)
        for lineno, parts in _read_lines(is_a):
            if len(parts) != 2:
                raise UserError(f"{is_a}:{lineno}: expected 'parent_wnid child_wnid'")
            self.children[parts[0]].append(parts[1])
            self.parents[parts[1]].append(parts[0])
        self.by_lemma: dict[str, list[str]] = defaultdict(list)
        self.names: dict[str, str] = {}
        for lineno, line in _read_lines(words, split=False):
            wnid, sep, lemmas = line.partition("\t")
            if not sep:
                raise UserError(f"{words}:{lineno}: expected 'wnid<TAB>lemma, lemma, ...'")
            self.names[wnid] = lemmas.strip()
            for lemma in lemmas.split(","):
                key = lemma.strip().lower().replace(" ", "_")
                if key and wnid not in self.by_lemma[key]:
                    self.by_lemma[key].append(wnid)

    def senses(self, word: str) -> list[str]:
        """wnids whose lemmas include `word`, in words.txt order."""
        return list(self.by_lemma.get(word, []))

    def lemmas(self, wnid: str) -> list[str]:
        """The lemmas of `wnid` in words.txt ('domestic dog' as domestic_dog); [] when it is not listed."""
        return [k for k in (lem.strip().lower().replace(" ", "_") for lem in self.names.get(wnid, "").split(",")) if k]

    def hypernyms(self, wnid: str) -> list[str]:
        return list(self.parents.get(wnid, []))

    def hyponyms(self, wnid: str) -> list[str]:
        return list(self.children.get(wnid, []))


class WordNetHierarchy:
    """The same interface over WordNet 3.0's noun hierarchy (no files needed)."""

    def __init__(self):
        from mmlightning.images.wordnet import wordnet

        self.wn = wordnet()

    def _synset(self, wnid: str):
        try:
            return self.wn.synset_from_pos_and_offset("n", int(wnid[1:]))
        except Exception:  # not a WordNet noun offset
            return None

    def senses(self, word: str) -> list[str]:
        from mmlightning.images.wordnet import noun_senses, wnid

        return [wnid(s) for s in noun_senses(word)]

    def lemmas(self, wnid_: str) -> list[str]:
        """The lemmas of the WordNet noun synset `wnid_`, lower-cased; [] when it is not one."""
        s = self._synset(wnid_)
        return [lem.name().lower() for lem in s.lemmas()] if s else []

    def hypernyms(self, wnid_: str) -> list[str]:
        """Hypernyms in wnid order (NLTK's own order follows the hash seed: back-off would vary by run)."""
        from mmlightning.images.wordnet import hypernyms, wnid

        s = self._synset(wnid_)
        return [wnid(h) for h in hypernyms(s)] if s else []

    def hyponyms(self, wnid_: str) -> list[str]:
        """Hyponyms in wnid order."""
        from mmlightning.images.wordnet import hyponyms, wnid

        s = self._synset(wnid_)
        return [wnid(h) for h in hyponyms(s)] if s else []


WNID = re.compile(r"n\d{8}(\.tar)?")


def check_synsets(train: Path) -> None:
    """`train` holds at least one `<wnid>/` folder or `<wnid>.tar` archive (listed, stopping at the first)."""
    try:
        with os.scandir(train) as entries:
            if any(WNID.fullmatch(e.name) for e in entries):
                return
    except OSError as e:
        raise UserError(f"{train}: cannot list the folder ({e.strerror})") from None
    raise UserError(f"{train}: no <wnid>/ folder or <wnid>.tar archive in it (ImageNet's train/n02084071/...); "
                    f"point root at the folder that holds train/")


def _read_lines(path: Path, split: bool = True):
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first wnid
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            yield lineno, (line.split() if split else line)


class ImageNetSource:
    """ImageNet-layout images sampled through the WordNet hierarchy."""

    name = "imagenet"

    def __init__(self, root: str | os.PathLike, is_a: str | None = None, words_file: str | None = None,
                 all_senses: bool = False, backoff: bool = True, lemma=None):
        self.root = Path(root)
        self.train = self.root / "train" if (self.root / "train").is_dir() else self.root
        if not self.train.is_dir():
            raise UserError(f"{self.root}: no such folder (expected train/<wnid>/ images or train/<wnid>.tar)")
        check_synsets(self.train)
        is_a_path = Path(is_a) if is_a else self.root / "wordnet.is_a.txt"
        words_path = Path(words_file) if words_file else self.root / "words.txt"
        if is_a_path.is_file() and words_path.is_file():
            self.hierarchy = FileHierarchy(is_a_path, words_path)
        elif is_a or words_file or is_a_path.is_file() or words_path.is_file():
            missing = is_a_path if not is_a_path.is_file() else words_path
            raise UserError(f"{missing}: no such file (ImageNet ships wordnet.is_a.txt and words.txt together: "
                            f"give both, or neither to use WordNet 3.0's hierarchy)")
        else:
            log.info("imagenet: no %s / %s in %s: the hierarchy is WordNet 3.0's", is_a_path.name, words_path.name,
                     self.root)
            self.hierarchy = WordNetHierarchy()
        self.all_senses, self.backoff = all_senses, backoff
        self.lemma = lemma or default_lemma()
        self.skipped: list[dict] = []
        self._listed: dict[str, list[str]] = {}

    def images_of(self, wnid: str) -> list[str]:
        """The image paths of one synset (folder files or tar members), cached; [] when it has none.

        Only regular files (or links to them) are listed: a FIFO, device or broken link named like an image,
        or a `<wnid>.tar` that is not a regular file, is recorded in `skipped` and never opened.
        """
        if wnid in self._listed:
            return self._listed[wnid]
        out: list[str] = []
        folder, archive = self.train / wnid, self.train / f"{wnid}.tar"
        try:
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    names = sorted(e.path for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES)
                                   and (e.is_file(follow_symlinks=False) or not skip_special(e.path, self.skipped)))
                out = names
            elif os.path.lexists(archive) and (problem := file_problem(archive)):
                self.skipped.append({"path": str(archive), "reason": f"synset archive {problem}"})
            elif archive.is_file():
                with tarfile.open(archive) as tar:
                    out = sorted(f"{archive}::{m.name}" for m in tar.getmembers()
                                 if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES))
        except (OSError, tarfile.TarError) as e:
            self.skipped.append({"path": str(folder if folder.exists() else archive),
                                 "reason": f"unreadable synset folder/archive: {e}"})
        self._listed[wnid] = out
        return out

    def labelled_words(self) -> list[str]:
        """The lemmas of every synset with a `<wnid>/` folder or `<wnid>.tar` under train/, sorted (a synset whose
        folder holds no image is listed too: its words end up in the manifest's missing words)."""
        try:
            with os.scandir(self.train) as entries:
                wnids = sorted(e.name[:9] for e in entries if WNID.fullmatch(e.name))
        except OSError as e:
            raise UserError(f"{self.train}: cannot list the folder ({e.strerror})") from None
        return sorted({lem for w in wnids for lem in self.hierarchy.lemmas(w)})

    def subtree(self, wnid: str) -> list[str]:
        """`wnid` and all its descendants (each once, cycles ignored), in a stable order."""
        seen, stack, order = {wnid}, [wnid], []
        while stack:
            node = stack.pop()
            order.append(node)
            for child in reversed(self.hierarchy.hyponyms(node)):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return order

    def subtree_images(self, wnid: str) -> list[tuple[str, str]]:
        """(path, wnid of its folder) for every image in the subtree of `wnid`."""
        return [(p, w) for w in self.subtree(wnid) for p in self.images_of(w)]

    def senses(self, word: str) -> list[str]:
        """The word's noun senses present in the hierarchy, most frequent first."""
        for form in dict.fromkeys([word.lower(), self.lemma(word)]):
            found = self.hierarchy.senses(form)
            if found:
                return _rank_by_wordnet(form, found) if isinstance(self.hierarchy, FileHierarchy) else found
        return []

    def sample_word(self, word: str, n: int, seed: int) -> tuple[list[ImageRef], dict]:
        """Up to n images for one word, and what was used (senses, back-off) for the manifest."""
        senses = self.senses(word)
        if not senses:
            return [], {"reason": "no noun synset"}
        senses = senses if self.all_senses else senses[:1]
        rng = word_rng(seed, word)
        own = sorted({item for s in senses for item in self.subtree_images(s)})
        info: dict = {"synsets": senses, "subtree_images": len(own)}
        chosen = rng.sample(own, n) if len(own) > n else own
        if len(chosen) < n and self.backoff:
            parents = [p for s in senses for p in self.hierarchy.hypernyms(s)][:1]
            if parents:
                have = set(own)
                rest = sorted({item for item in self.subtree_images(parents[0]) if item not in have})
                extra = rng.sample(rest, min(n - len(chosen), len(rest)))
                chosen = chosen + extra
                info.update(backoff=parents[0], backoff_images=len(extra))
        if not chosen:
            info["reason"] = f"no image in the subtree of {', '.join(senses)}" + \
                (" nor of its hypernym" if self.backoff else "")
        return [ImageRef(p, frozenset(), group=w, label=w) for p, w in chosen], info

    def candidates(self, words, n_per_word: int, seed: int) -> Selection:
        sel = Selection()
        sel.notes["words"] = {}
        for word in sorted(set(words)):
            refs, info = self.sample_word(word, n_per_word, seed)
            sel.notes["words"][word] = info
            if refs:
                sel.by_word[word] = refs
            else:
                sel.missing[word] = info["reason"]
        sel.notes["synsets_listed"] = len(self._listed)
        sel.notes["synsets_without_images"] = sum(not v for v in self._listed.values())
        sel.skipped.extend(self.skipped)
        return sel


@lru_cache(maxsize=None)
def _wordnet_rank(form: str) -> dict[str, int]:
    try:
        from mmlightning.images.wordnet import noun_senses, wnid

        return {wnid(s): i for i, s in enumerate(noun_senses(form))}
    except UserError:  # no WordNet: keep the file order
        return {}


def _rank_by_wordnet(form: str, wnids: list[str]) -> list[str]:
    """Order wnids by WordNet sense number where WordNet knows them, file order otherwise (stable)."""
    rank = _wordnet_rank(form)
    return sorted(wnids, key=lambda w: rank.get(w, len(rank) + wnids.index(w)))
