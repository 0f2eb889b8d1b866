"""A plain folder of `<word>/<images>`: every image under `<root>/<word>/` is labelled with that word.

    FolderSource("photos/").candidates(["cat", "dog"], n_per_word=50, seed=0)

Folder names and concept words are compared by WordNet lemma (`cats/` serves the word "cat"); images
in sub-folders of `<word>/` count too and spread the sample (one sub-folder cannot fill N alone).
"""
from __future__ import annotations

import os
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (IMAGE_SUFFIXES, ImageRef, LabelledSource, check_flag, default_lemma,
                                      walk_files)


class FolderSource(LabelledSource):
    """Images in `<root>/<word>/`."""

    name = "folder"

    def __init__(self, root: str | os.PathLike, lemma=None, subtree: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: no such folder (expected <word>/<images> inside)")
        with os.scandir(self.root) as entries:
            if not any(e.is_dir() for e in entries):
                raise UserError(f"{self.root}: no <word>/ sub-folder in it (the folder source reads "
                                f"<root>/<word>/<images>)")
        self.lemma, self.subtree = lemma, check_flag("folder", "subtree", subtree)

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        lemma = self.lemma or default_lemma()
        refs = []
        for word_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            label = lemma(word_dir.name.lower().replace(" ", "_"))
            for path in walk_files(word_dir, IMAGE_SUFFIXES + (".svg",), skipped):
                group = os.path.relpath(os.path.dirname(path), self.root)
                refs.append(ImageRef(path, frozenset({label}), group=group))
        return refs


