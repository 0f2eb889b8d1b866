"""Image sources: where a concept word's images come from.

    from mmlightning.images.sources import open_source
    src = open_source("tuxpaint")                       # or "openclipart", "imagenet", "esp", "folder"
    sel = src.candidates(["cat", "car"], n_per_word=20, seed=0)
    sel.by_word["cat"]     # [ImageRef(path, labels, group, label, fallback_svg), ...]
    sel.skipped            # [{"path": ..., "reason": ...}]  bad inputs met on the way
    sel.missing            # {"car": "no image labelled 'car'"}

Every source has `name` and `candidates(words, n_per_word, seed) -> Selection`; reading the pixels
of an ImageRef is `mmlightning.images.sources.imageio.load_image`. One module per source:
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
        raise UserError(f"source {name!r} needs a root folder (--root PATH)")
    module, cls = SOURCES[name].split(":")
    source_cls = getattr(importlib.import_module(module), cls)
    try:
        return source_cls(root, **options)
    except TypeError as e:
        raise UserError(f"source {name!r}: bad option ({e})") from None
