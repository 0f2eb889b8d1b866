"""The ESP Game dataset, in either public layout: images + one tag file per image (one tag per line).

    EspSource("ESPGame100k/").candidates(words, n_per_word=1000, seed=0)

Layouts, detected in this order (the one found is logged and stored in the selection's notes):

| layout | images | tag files |
| --- | --- | --- |
| ESPGame100k | `originals/<n>.jpg` (`thumbnails/` is ignored) | `labels/<n>.jpg.desc` |
| ESP-ImageSet | `images/<n>.jpg` | `LABELS/<n>.jpg.desc` |
| plain | `images/<n>.jpg` | `labels/<n>.jpg.desc` |

Tags and concept words are both lemmatised with NLTK's WordNet lemmatizer (as in the paper), so the
tag "dogs" serves the word "dog". The tag file of `x.jpg` is `x.jpg.desc` (the datasets' own naming) or
`x.desc`. An image without a tag file, or whose tag file is empty or not UTF-8, is skipped and listed with
the reason; the run goes on. A UTF-8 byte-order mark at the start of a tag file is ignored.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (IMAGE_SUFFIXES, MAX_TEXT_BYTES, ImageRef, LabelledSource, NotReadable,
                                             check_flag, default_lemma, read_regular, walk_files)

log = logging.getLogger(__name__)

# (name, image folder, tag folder), tried in order; the first whose two folders exist is read.
LAYOUTS = (
    ("ESPGame100k", "originals", "labels"),
    ("ESP-ImageSet", "images", "LABELS"),
    ("plain", "images", "labels"),
)


def detect_layout(root: Path) -> tuple[str, Path, Path]:
    """(layout name, image folder, tag folder) of an ESP Game root; a one-line UserError when none matches."""
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (the ESP Game root)")
    for name, images, labels in LAYOUTS:
        if (root / images).is_dir() and (root / labels).is_dir():
            return name, root / images, root / labels
    expected = "; ".join(f"{images}/ + {labels}/ ({name})" for name, images, labels in LAYOUTS)
    raise UserError(f"{root}: not an ESP Game folder; expected one of: {expected}")


class EspSource(LabelledSource):
    """ESP Game images and their tag files."""

    name = "esp"

    def __init__(self, root: str | os.PathLike, lemma=None, subtree: bool = False):
        self.root = Path(root)
        self.layout, self.images_dir, self.labels_dir = detect_layout(self.root)
        log.info("esp: %s layout (%s/ + %s/) in %s", self.layout, self.images_dir.name, self.labels_dir.name,
                 self.root)
        self.lemma, self.subtree = lemma, check_flag("esp", "subtree", subtree)

    def read_tags(self, desc: Path) -> list[str]:
        """The tags of one .desc file; raises ValueError with the reason when it is not a regular file of UTF-8
        text (at most MAX_TEXT_BYTES)."""
        try:
            data = read_regular(desc, MAX_TEXT_BYTES)
        except NotReadable as e:
            raise ValueError(f"{desc}: {e}") from None
        try:
            text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first tag
        except UnicodeDecodeError as e:
            raise ValueError(f"{desc}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        return [line.strip().lower() for line in text.splitlines() if line.strip()]

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        lemma = self.lemma or default_lemma()
        refs = []
        for path in walk_files(self.images_dir, IMAGE_SUFFIXES, skipped):
            name = os.path.basename(path)
            desc = self.labels_dir / f"{name}.desc"
            if not os.path.lexists(desc):  # lexists: a FIFO or a link to a device is a skip with its reason
                desc = self.labels_dir / f"{os.path.splitext(name)[0]}.desc"
            if not os.path.lexists(desc):
                skipped.append({"path": path, "reason": f"no label file {self.labels_dir.name}/{name}.desc"})
                continue
            try:
                tags = self.read_tags(desc)
            except (ValueError, OSError) as e:
                skipped.append({"path": path, "reason": str(e)})
                continue
            labels = frozenset(lemma(t.replace(" ", "_")) for t in tags)
            if not labels:
                skipped.append({"path": path, "reason": f"empty label file {self.labels_dir.name}/{desc.name}"})
                continue
            refs.append(ImageRef(path, labels))
        return refs

    def describe(self, refs: list[ImageRef]) -> dict:
        """Counts and the layout found, stored in the selection's notes (and so in the manifest)."""
        return {**super().describe(refs), "layout": self.layout,
                "folders": [self.images_dir.name, self.labels_dir.name]}
