"""Image dispersion per word (Kiela, Hill, Korhonen & Clark, ACL 2014), read from a source's aggregates.

    disp = load_dispersion("checkpoints/extract-tuxpaint-.../aggregates.pt")   # KeyedVectors (V, 1)
    disp[ "cat" ][0]                           # mean pairwise cosine distance of the word's images
    ceiling = quantile_threshold(disp, words, 0.8)   # 80% of these words have dispersion <= ceiling

Dispersion is exact (no per-image features needed): from the sum S of the word's n L2-normalised
image features, 1 - (|S|^2 - n) / (n (n - 1)) (`features.aggregates.dispersion`). Words with fewer
than two images have no dispersion (NaN) and are left out of the returned vectors. Abstract or
ambiguous words tend to have dispersed images; the dev/test protocol can gate their visual part.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from mmlightning.features.aggregates import dispersion, load_aggregates, word2vec_key
from mmlightning.vectors import KeyedVectors


def load_dispersion(path: str | os.PathLike) -> KeyedVectors:
    """Dispersion of every word with at least two images, as (V, 1) KeyedVectors keyed like mean.txt."""
    agg, _ = load_aggregates(path)
    d = dispersion(agg).numpy()                                   # (V,) NaN below two images
    ok = np.isfinite(d)
    words = [word2vec_key(w) for w, good in zip(agg.words, ok) if good]
    return KeyedVectors(words, d[ok].astype(np.float32)[:, None])


def values(disp: KeyedVectors, words: Iterable[str]) -> np.ndarray:
    """(n,) dispersions of those `words` that have one (lookup as given, then lower-cased)."""
    idx = [disp.lookup(w) for w in words]
    return np.array([float(disp.vectors[i, 0]) for i in idx if i is not None], dtype=np.float64)


def quantile_threshold(disp: KeyedVectors, words: Iterable[str], q: float) -> float | None:
    """The q-quantile of the dispersions of `words` (None if none has one): a gate keeping ~q of them."""
    v = values(disp, words)
    return float(np.quantile(v, q)) if v.size else None
