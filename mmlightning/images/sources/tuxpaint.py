"""Tux Paint stamps (Debian `tuxpaint-stamps-default`): the curated, ImageNet-like default source.

    TuxPaintSource().candidates(words, n_per_word=20, seed=0)     # root /usr/share/tuxpaint/stamps

A stamp is `<dir>/<name>.png` (many are photo cut-outs) or, for SVG-only stamps, `<dir>/<name>.svg`
(rendered with rsvg-convert; a stamp with both uses the PNG). Beside it `<name>.txt` holds a
description: its first line is English ("A yellow lemon."), the others are translations.
Labels = the words of the stamp's name ("blue_fedora" -> blue, fedora) plus, from the English
description, the nouns of a short one: with `description="short"` (default) a description of at most
`max_description_words` content words ("A yellow lemon.", "A garlic bulb.") gives its WordNet nouns,
a chatty one ("Remember to flush the toilet and wash your hands with soap!") gives none. All words are
lemmatised; numbers, one-letter tokens and function words are dropped. Other modes: "nouns" (the
nouns of any description), "all" (every content word), "none" (the name alone). Sample groups are the
stamp folders. `subtree=True` also gives a word the stamps labelled below it in WordNet ("animal" ->
cat, heron, ...; the paper's ImageNet rule, on in configs/reproduce.yaml; study in docs/SOURCES.md).

Why "short" (visual-only Spearman, EfficientNet-Lite0 CNN-Mean, MEN pairs with images, N=50): name
alone 0.434 on 198 pairs; short 0.296 on 337 pairs (0.429 on the name's 198); nouns of any description
0.219 on 370 (0.274 on short's 337); every content word 0.200 on 385 (0.266 on short's 337).
"""
from __future__ import annotations

import os
from pathlib import Path

from mmlightning.errors import UserError
from mmlightning.images.sources.base import (MAX_TEXT_BYTES, STOPWORDS, ImageRef, LabelledSource, NotReadable,
                                             check_flag, default_lemma, read_regular, tokens, walk_files)

DEFAULT_ROOT = "/usr/share/tuxpaint/stamps"
DESCRIPTION_MODES = ("short", "nouns", "all", "none")


class TuxPaintSource(LabelledSource):
    """The stamps of a Tux Paint stamps folder."""

    name = "tuxpaint"

    def __init__(self, root: str | os.PathLike | None = None, lemma=None, description: str = "short",
                 max_description_words: int = 4, subtree: bool = False):
        self.root = Path(root or DEFAULT_ROOT)
        if not self.root.is_dir():
            hint = " (apt-get install tuxpaint-stamps-default)" if root is None else ""
            raise UserError(f"{self.root}: no Tux Paint stamps folder{hint}")
        if description not in DESCRIPTION_MODES:
            raise UserError(f"tuxpaint: description must be one of {DESCRIPTION_MODES}, got {description!r}")
        self.lemma = lemma or default_lemma()
        self.description, self.max_description_words = description, max_description_words
        self.subtree = check_flag("tuxpaint", "subtree", subtree)

    def description_line(self, txt: Path, skipped: list[dict]) -> str:
        """The English (first) line of a stamp description; '' when absent or unreadable (recorded)."""
        if not os.path.lexists(txt):
            return ""
        try:
            text = read_regular(txt, MAX_TEXT_BYTES).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            skipped.append({"path": str(txt), "reason": f"description not UTF-8 ({e.reason}); name used alone"})
            return ""
        except NotReadable as e:
            skipped.append({"path": str(txt), "reason": f"description {e}; name used alone"})
            return ""
        lines = text.splitlines()
        return lines[0].strip() if lines else ""

    def stamp_labels(self, name: str, description: str) -> frozenset:
        """Labels of one stamp from its file name and English description."""
        labels = {self.lemma(t) for t in tokens(name) if t not in STOPWORDS}
        words = [self.lemma(t) for t in tokens(description) if t not in STOPWORDS]
        if self.description == "short" and len(words) > self.max_description_words:
            words = []
        if self.description in ("short", "nouns"):
            words = [w for w in words if _is_noun(w)]
        if self.description != "none":
            labels |= set(words)
        return frozenset(labels)

    def images(self, skipped: list[dict]) -> list[ImageRef]:
        stamps: dict[str, dict[str, str]] = {}
        for path in walk_files(self.root, (".png", ".svg"), skipped):
            stem, ext = os.path.splitext(path)
            stamps.setdefault(stem, {})[ext.lower()] = path
        refs = []
        for stem, files in sorted(stamps.items()):
            path = files.get(".png") or files[".svg"]
            desc = self.description_line(Path(stem + ".txt"), skipped)
            labels = self.stamp_labels(os.path.basename(stem), desc)
            group = os.path.relpath(os.path.dirname(stem), self.root)
            refs.append(ImageRef(path, labels, group=group, fallback_svg=files.get(".svg")))
        return refs

    def describe(self, refs: list[ImageRef]) -> dict:
        return {"stamps": len(refs), "svg_only": sum(r.path.endswith(".svg") for r in refs)}


def _is_noun(lemma: str) -> bool:
    from mmlightning.images.wordnet import wordnet

    return bool(wordnet().synsets(lemma, "n"))
