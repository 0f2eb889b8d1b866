"""The ESP Game dataset: `images/<image>` + `labels/<image>.desc` (one tag per line).

    EspSource("ESPGame100k/").candidates(words, n_per_word=1000, seed=0)

Tags and concept words are both lemmatised with NLTK's WordNet lemmatizer (as in the paper), so the
tag "dogs" serves the word "dog". The label file of `images/x.jpg` is `labels/x.jpg.desc` (the
dataset's own naming) or `labels/x.desc`. An image without a label file, or whose label file is not
UTF-8, is skipped and listed with the reason; the run goes on.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (IMAGE_SUFFIXES, ImageRef, LabelledSource, check_flag, default_lemma,
                                      walk_files)


class EspSource(LabelledSource):
    """ESP Game images and their tag files."""

    name = "esp"

    def __init__(self, root: str | os.PathLike, lemma=None, subtree: bool = False):
        self.root = Path(root)
        for sub in ("images", "labels"):
            if not (self.root / sub).is_dir():
                raise UserError(f"{self.root / sub}: no such folder (an ESP Game root holds images/ and labels/)")
        self.lemma, self.subtree = lemma, check_flag("esp", "subtree", subtree)

    def read_tags(self, desc: Path) -> list[str]:
        """The tags of one .desc file; raises ValueError with the reason when it is not UTF-8 text."""
        data = desc.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{desc}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        return [line.strip().lower() for line in text.splitlines() if line.strip()]

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        lemma = self.lemma or default_lemma()
        labels_dir = self.root / "labels"
        refs = []
        for path in walk_files(self.root / "images", IMAGE_SUFFIXES, skipped):
            name = os.path.basename(path)
            desc = labels_dir / f"{name}.desc"
            if not desc.is_file():
                desc = labels_dir / f"{os.path.splitext(name)[0]}.desc"
            if not desc.is_file():
                skipped.append({"path": path, "reason": f"no label file labels/{name}.desc"})
                continue
            try:
                tags = self.read_tags(desc)
            except (ValueError, OSError) as e:
                skipped.append({"path": path, "reason": str(e)})
                continue
            labels = frozenset(lemma(t.replace(" ", "_")) for t in tags)
            if labels:
                refs.append(ImageRef(path, labels))
        return refs


