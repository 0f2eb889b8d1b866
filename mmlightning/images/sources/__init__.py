"""Image sources: where a concept word's images come from.

    from mmlightning.images.sources import open_source
    src = open_source("tuxpaint")                       # or "openclipart", "imagenet", "esp", "folder"
    sel = src.candidates(["cat", "car"], n_per_word=20, seed=0)
    sel.by_word["cat"]     # [ImageRef(path, labels, group, label, fallback_svg), ...]
    sel.skipped            # [{"path": ..., "reason": ...}]  bad inputs met on the way
    sel.missing            # {"car": "no image labelled 'car'"}

Every source has `name`, `candidates(words, n_per_word, seed) -> Selection` and `labelled_words()` (the
words it labels: `shard --words labelled`; `labelled_words(src)` says in one line when a source cannot);
reading the pixels of an ImageRef is `mmlightning.images.sources.imageio.load_image`. One module per source:
imagenet (WordNet subtree sampling), esp (ESP Game tags), folder (<word>/<images>), tuxpaint and
openclipart (the two installable defaults).
"""
from __future__ import annotations

import importlib

from mmlightning.errors import UserError
from mmlightning.images.sources.base import ImageRef, Selection  # noqa: F401  (public API)

SOURCES = {
    "imagenet": "mmlightning.images.sources.imagenet:ImageNetSource",
    "esp": "mmlightning.images.sources.esp:EspSource",
    "folder": "mmlightning.images.sources.folder:FolderSource",
    "tuxpaint": "mmlightning.images.sources.tuxpaint:TuxPaintSource",
    "openclipart": "mmlightning.images.sources.openclipart:OpenClipartSource",
}
NEEDS_ROOT = ("imagenet", "esp", "folder")


def open_source(name: str, root: str | None = None, **options):
    """The source `name` reading `root` (the Debian defaults need none); options go to its constructor."""
    if name not in SOURCES:
        raise UserError(f"unknown image source {name!r}; choose one of {', '.join(SOURCES)}")
    if root is None and name in NEEDS_ROOT:
        raise UserError(f"source {name!r} needs a root folder", argument="root")
    module, cls = SOURCES[name].split(":")
    source_cls = getattr(importlib.import_module(module), cls)
    try:
        return source_cls(root, **options)
    except TypeError as e:
        raise UserError(f"source {name!r}: bad option ({e})") from None


def labelled_words(src) -> list[str]:
    """Every word the source `src` labels, sorted; a one-line UserError for a source that cannot list them."""
    lister = getattr(src, "labelled_words", None)
    if lister is None:
        raise UserError(f"source {getattr(src, 'name', type(src).__name__)!r} cannot list the words it labels; "
                        f"give words: a word-list file or a benchmark instead of labelled")
    return lister()
