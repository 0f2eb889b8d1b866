"""OpenClipart (Debian `openclipart-png` + `openclipart-svg`): the noisy, ESP-like default source.

    OpenClipartSource().candidates(words, n_per_word=25, seed=0)   # root /usr/share/openclipart

Images are the PNGs under `<root>/png/<category>/...` (the same file symlinked into several categories
counts once); labels come from the metadata of the matching `<root>/svg/.../<name>.svg`:
- the title's content words ("Blue Vacuum Cleaner" -> blue, vacuum, cleaner), unless the title is a
  collection name shared by more than `max_title_files` files ("Lemon SVG theme", "gramastar");
- the subject keywords of a file with a handful of them (at most `max_keywords`), minus keywords that
  tag more than `max_keyword_files` files ("hash", "icons", "lemon_theme_icon": collection tags) and
  keywords that are just the name of a folder the file sits in ("signs_and_symbols", "unsorted",
  "stars" in shapes/stars): such names were propagated to every file, they do not describe one;
  multi-word keywords ("united_nations_member", "north_america") are category tags and are not split;
- never the author: every word of the `dc:creator` / `dc:rights` names is removed ("Clipart by Nicu
  Buculei - ...", the keyword "architetto francesco rollandin"), and numbers are dropped.
Folder names themselves are never labels. Sample groups are the folders and at most `max_per_group`
images of one folder serve one word, so one icon folder cannot dominate a word. PNGs over 40
megapixels are rendered from their SVG at the target size instead of decoded.
"""
from __future__ import annotations

import html
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (MAX_IMAGE_BYTES, ImageRef, LabelledSource, NotReadable, check_flag,
                                             content_lemmas, default_lemma, read_regular, tokens, walk_files)

DEFAULT_ROOT = "/usr/share/openclipart"
NOT_LABELS = frozenset({"clipart", "clip", "art", "svg", "png", "openclipart", "inkscape", "part",
                        "collection", "untitled", "unnamed"})
_META = re.compile(rb"<metadata.*?</metadata>", re.S)
_TITLE = re.compile(rb"<dc:title>(.*?)</dc:title>", re.S)
_SUBJECT = re.compile(rb"<dc:subject>(.*?)</dc:subject>", re.S)
_LI = re.compile(rb"<rdf:li>(.*?)</rdf:li>", re.S)
_AGENT = re.compile(rb"<dc:(?:creator|rights)>.*?<dc:title>(.*?)</dc:title>", re.S)


@dataclass(frozen=True)
class ClipMeta:
    """The metadata of one clip-art SVG that matters for labels."""

    title: str
    keywords: tuple[str, ...]
    authors: tuple[str, ...]


def _text(raw: bytes) -> str:
    return html.unescape(raw.decode("utf-8", "replace")).strip()


def read_meta(svg: Path) -> ClipMeta | None:
    """Title, subject keywords and author names from an SVG's RDF metadata (None when it has none)."""
    m = _META.search(read_regular(svg, MAX_IMAGE_BYTES))  # NotReadable: a FIFO, a device, over 64 MiB
    if m is None:
        return None
    block = m.group(0)
    title = _TITLE.search(block)
    subject = _SUBJECT.search(block)
    keywords = [_text(k).lower() for k in _LI.findall(subject.group(1))] if subject else []
    return ClipMeta(title=_text(title.group(1)) if title else "",
                    keywords=tuple(k for k in keywords if k),
                    authors=tuple(_text(a) for a in _AGENT.findall(block)))


class OpenClipartSource(LabelledSource):
    """OpenClipart PNGs labelled from their SVG metadata."""

    name = "openclipart"

    def __init__(self, root: str | os.PathLike | None = None, lemma=None, max_keywords: int = 12,
                 max_keyword_files: int = 300, max_title_files: int = 20, max_per_group: int | None = 10,
                 subtree: bool = False):
        self.root = Path(root or DEFAULT_ROOT)
        if not (self.root / "png").is_dir():
            hint = " (apt-get install openclipart-png openclipart-svg)" if root is None else ""
            raise UserError(f"{self.root / 'png'}: no OpenClipart PNG folder{hint}")
        if not (self.root / "svg").is_dir():
            raise UserError(f"{self.root / 'svg'}: no OpenClipart SVG folder (labels come from the SVG "
                            f"metadata: apt-get install openclipart-svg)")
        self.lemma = lemma or default_lemma()
        self.max_keywords, self.max_keyword_files = max_keywords, max_keyword_files
        self.max_title_files, self.max_per_group = max_title_files, max_per_group
        self.subtree = check_flag("openclipart", "subtree", subtree)

    def metadata(self, skipped: list[dict]) -> dict[str, tuple[str, ClipMeta]]:
        """Distinct PNG (real path) -> (its path under png/, metadata of its SVG); unlabelled ones skipped."""
        out: dict[str, tuple[str, ClipMeta]] = {}
        for path in walk_files(self.root / "png", (".png",), skipped):
            real = os.path.realpath(path)
            if real in out or not os.path.isfile(real):
                continue
            rel = os.path.relpath(real, self.root / "png")
            svg = self.root / "svg" / (os.path.splitext(rel)[0] + ".svg")
            try:
                meta = read_meta(svg) if os.path.lexists(svg) else None
            except NotReadable as e:
                skipped.append({"path": path, "reason": f"SVG metadata {svg.name}: {e}"})
                continue
            if meta is None:
                skipped.append({"path": path, "reason": f"no SVG metadata ({svg.name}), no labels"})
                continue
            out[real] = (rel, meta)
        return out

    def labels(self, rel: str, meta: ClipMeta, keyword_files: Counter, title_files: Counter) -> frozenset:
        """The labels of one file under the rules in the module docstring."""
        authors = {t for a in meta.authors for t in tokens(a)}
        folders = set(Path(rel).parent.parts)
        drop = authors | NOT_LABELS
        labels: set[str] = set()
        if title_files[meta.title.lower()] <= self.max_title_files:
            labels |= content_lemmas(meta.title, self.lemma, drop)
        if len(meta.keywords) <= self.max_keywords:
            for kw in meta.keywords:
                if keyword_files[kw] > self.max_keyword_files or kw in folders:
                    continue
                words = tokens(kw)
                if len(words) == 1 and words[0] not in drop:
                    labels.add(self.lemma(words[0]))
        return frozenset(labels)

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        metas = self.metadata(skipped)
        keyword_files = Counter(k for _, m in metas.values() for k in set(m.keywords))
        title_files = Counter(m.title.lower() for _, m in metas.values())
        refs = []
        for real, (rel, meta) in sorted(metas.items()):
            svg = self.root / "svg" / (os.path.splitext(rel)[0] + ".svg")
            refs.append(ImageRef(real, self.labels(rel, meta, keyword_files, title_files),
                                 group=os.path.dirname(rel), fallback_svg=str(svg)))
        return refs

    def describe(self, refs: list[ImageRef]) -> dict:
        return {"images": len(refs), "unlabelled": sum(not r.labels for r in refs)}
