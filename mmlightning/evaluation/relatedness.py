"""Word relatedness, as pure functions: cosine vs gold, Spearman rho, pairs used, bootstrap CIs.

    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.relatedness import score, paired_difference, relevant_mask
    bench = load_benchmark("men")
    r = score(kv, bench, oov="skip")         # r.rho, r.ci95, r.pairs_used, r.pairs_total, r.cosines
    print(r.cell())                           # "0.712 [0.690, 0.731] 2950/3000"
    d = paired_difference(r_multi, r_ling)    # d.diff, d.ci95: multi-modal minus linguistic, same pairs
    mask = relevant_mask(bench, tux_words, clipart_words)   # (P,) bool: both words covered by every set

Rules:
- Lookup: the word as given, then lower-cased (`KeyedVectors.lookup`). Every pair is kept, duplicates too.
- OOV policy: "skip" leaves a pair with an unknown word out (pairs_used < pairs_total); "zero" scores it
  as cosine 0 (every pair used). A zero vector has cosine 0 with anything.
- rho is Spearman (average ranks for ties) of cosines against gold over the used pairs; it is None
  (shown as "n/a") with fewer than 3 usable pairs or when either side is constant.
- CIs: percentile bootstrap over pairs (resampling pairs with replacement), seeded, so the same inputs
  always give the same interval. The paired version resamples the same pairs for both systems.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Collection, Sequence

import numpy as np
from scipy.stats import rankdata

from mmlightning.datasets import Benchmark
from mmlightning.evaluation.report.primitives import score_cell

OOV_POLICIES = ("skip", "zero")
MIN_PAIRS = 3
MIN_BOOT_PAIRS = 10  # below this a bootstrap CI says nothing (rho [-1, 1]): it is reported as n/a (None)


@dataclass(frozen=True)
class Score:
    """One system on one benchmark (or a subset of its pairs)."""

    benchmark: str
    rho: float | None
    ci95: tuple[float, float] | None
    pairs_used: int
    pairs_total: int
    oov: str
    gold: np.ndarray = field(repr=False)     # (P,) human scores, file order
    cosines: np.ndarray = field(repr=False)  # (P,) system cosines; NaN where the pair is not used
    used: np.ndarray = field(repr=False)     # (P,) bool

    def cell(self) -> str:
        """'rho [lo, hi] used/total' (`report.primitives.score_cell`); 'n/a' for an undefined rho."""
        return score_cell(self.to_dict(), "rho")

    def to_dict(self) -> dict:
        return {"rho": self.rho, "ci95": list(self.ci95) if self.ci95 else None,
                "pairs_used": self.pairs_used, "pairs_total": self.pairs_total, "oov": self.oov}


@dataclass(frozen=True)
class Difference:
    """rho(a) - rho(b) on the pairs both systems use, with a paired bootstrap CI."""

    diff: float | None
    ci95: tuple[float, float] | None
    pairs: int

    def to_dict(self) -> dict:
        return {"diff": self.diff, "ci95": list(self.ci95) if self.ci95 else None, "pairs": self.pairs}


# ---------------------------------------------------------------- cosines

def pair_indices(kv, pairs: Sequence[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of both words of each pair in `kv`, -1 where a word is missing: two (P,) int64."""
    i1 = np.array([_idx(kv, a) for a, _, _ in pairs], dtype=np.int64)
    i2 = np.array([_idx(kv, b) for _, b, _ in pairs], dtype=np.int64)
    return i1, i2


def _idx(kv, word: str) -> int:
    i = kv.lookup(word)
    return -1 if i is None else i


def row_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine of matching rows of (P, D) x and y, in float64; 0 where either row is all zeros."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    denom = nx * ny
    dots = np.einsum("pd,pd->p", x, y)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)  # (P,)


def pair_cosines(kv, pairs: Sequence[tuple[str, str, float]], oov: str = "skip") -> tuple[np.ndarray, np.ndarray]:
    """(cosines (P,), used (P,) bool) for each pair under the OOV policy; NaN cosine where not used."""
    _check_oov(oov)
    i1, i2 = pair_indices(kv, pairs)
    known = (i1 >= 0) & (i2 >= 0)
    cos = np.full(len(pairs), np.nan)
    if known.any():
        cos[known] = row_cosines(kv.vectors[i1[known]], kv.vectors[i2[known]])
    if oov == "zero":
        cos[~known] = 0.0
        return cos, np.ones(len(pairs), dtype=bool)
    return cos, known


def _check_oov(oov: str) -> None:
    if oov not in OOV_POLICIES:
        from mmlightning.errors import UserError

        raise UserError(f"oov policy {oov!r} is not one of {', '.join(OOV_POLICIES)}")


# ---------------------------------------------------------------- Spearman

def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rho of two (n,) arrays (average ranks for ties); None if n < 3 or a side is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] < MIN_PAIRS:
        return None
    r = _rank_pearson(rankdata(x)[None, :], rankdata(y)[None, :])[0]
    return None if not math.isfinite(r) else float(r)


def _rank_pearson(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (B, n) rank arrays: (B,), NaN where a row is constant."""
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    num = (rx * ry).sum(axis=1)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) pair indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def resample_ranks(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average ranks (ties averaged, as `rankdata`) of `values[idx]` within each row: (B, n) float64.

    values: (n,), idx: (B, n). Counts occurrences of each distinct value per row instead of sorting
    every resample: O(B * n) after one sort of `values`.
    """
    dense = rankdata(values, method="dense").astype(np.int64) - 1     # (n,) 0..U-1
    u = int(dense.max()) + 1 if dense.size else 0
    d = dense[idx]                                                    # (B, n)
    b = idx.shape[0]
    counts = np.bincount((d + np.arange(b)[:, None] * u).ravel(), minlength=b * u).reshape(b, u)
    upper = np.cumsum(counts, axis=1)                                 # (B, U) rank of the last tie
    avg = upper - (counts - 1) / 2.0                                  # (B, U) average rank per value
    return np.take_along_axis(avg, d, axis=1)                         # (B, n)


_GOLD_CACHE: dict = {}  # (gold bytes, n_boot, seed) -> (idx, gold ranks): cells of one subset share them


def _gold_resamples(gold: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded bootstrap indices (B, n) and the resampled gold ranks (B, n), memoised for a few gold arrays."""
    key = (gold.tobytes(), n_boot, seed)
    hit = _GOLD_CACHE.get(key)
    if hit is None:
        idx = _bootstrap_indices(len(gold), n_boot, seed)
        hit = (idx, resample_ranks(gold, idx))
        if len(_GOLD_CACHE) >= 4:
            _GOLD_CACHE.pop(next(iter(_GOLD_CACHE)))
        _GOLD_CACHE[key] = hit
    return hit


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(gold: np.ndarray, cos: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of Spearman rho over pairs; None with fewer than MIN_BOOT_PAIRS pairs or n_boot 0."""
    n = len(gold)
    if n < max(MIN_PAIRS, MIN_BOOT_PAIRS) or n_boot <= 0:
        return None
    idx, rank_g = _gold_resamples(np.asarray(gold, dtype=np.float64), n_boot, seed)
    return _percentile_ci(_rank_pearson(rank_g, resample_ranks(np.asarray(cos, dtype=np.float64), idx)), level)


# ---------------------------------------------------------------- scoring

def score_cosines(benchmark: Benchmark | str, gold: np.ndarray, cosines: np.ndarray, used: np.ndarray,
                  oov: str = "skip", n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Score:
    """A Score from per-pair cosines computed elsewhere (e.g. fused vectors); `used` marks usable pairs."""
    name = benchmark.name if isinstance(benchmark, Benchmark) else str(benchmark)
    gold = np.asarray(gold, dtype=np.float64)
    cosines = np.where(used, cosines, np.nan)
    g, c = gold[used], cosines[used]
    rho = spearman(g, c)
    ci = bootstrap_ci(g, c, n_boot, seed, level) if rho is not None else None
    return Score(name, rho, ci, int(used.sum()), len(gold), oov, gold, cosines, np.asarray(used, dtype=bool))


def gold_scores(benchmark: Benchmark) -> np.ndarray:
    """(P,) gold scores in file order."""
    return np.array([s for _, _, s in benchmark.pairs], dtype=np.float64)


def score(kv, benchmark: Benchmark, oov: str = "skip", n_boot: int = 1000, seed: int = 0,
          level: float = 0.95, mask: np.ndarray | None = None) -> Score:
    """Score vectors `kv` on `benchmark`: Spearman rho of cosines vs gold, pairs used/total, bootstrap CI.

    `mask` (P,) bool restricts to a subset of the pairs (e.g. `relevant_mask`); pairs_total then counts
    the subset.
    """
    cos, used = pair_cosines(kv, benchmark.pairs, oov)
    gold = gold_scores(benchmark)
    if mask is not None:
        return subset(score_cosines(benchmark, gold, cos, used, oov, n_boot=0), mask, n_boot, seed, level)
    return score_cosines(benchmark, gold, cos, used, oov, n_boot, seed, level)


def subset(s: Score, mask: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Score:
    """The same system's Score restricted to the pairs where `mask` (P,) is True."""
    mask = np.asarray(mask, dtype=bool)
    return score_cosines(s.benchmark, s.gold[mask], s.cosines[mask], s.used[mask], s.oov, n_boot, seed, level)


def paired_difference(a: Score, b: Score, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Difference:
    """rho(a) - rho(b) over the pairs both use, and its paired bootstrap CI (same resampled pairs for both)."""
    if len(a.gold) != len(b.gold) or not np.array_equal(a.gold, b.gold):
        raise ValueError("paired_difference needs two scores of the same pairs")
    both = a.used & b.used
    g, ca, cb = a.gold[both], a.cosines[both], b.cosines[both]
    ra, rb = spearman(g, ca), spearman(g, cb)
    if ra is None or rb is None:
        return Difference(None, None, int(both.sum()))
    ci = None
    if n_boot > 0 and len(g) >= MIN_BOOT_PAIRS:
        idx, rank_g = _gold_resamples(g, n_boot, seed)
        diffs = _rank_pearson(rank_g, resample_ranks(ca, idx)) - _rank_pearson(rank_g, resample_ranks(cb, idx))
        ci = _percentile_ci(diffs, level)
    return Difference(ra - rb, ci, int(both.sum()))


# ---------------------------------------------------------------- Relevant subsets

def _covers(covered: Collection[str], word: str) -> bool:
    return word in covered or word.lower() in covered


def relevant_mask(benchmark: Benchmark, *covered: Collection[str]) -> np.ndarray:
    """(P,) bool: pairs whose two words are both covered (as given or lower-cased) by every word set."""
    return np.array([all(_covers(c, a) and _covers(c, b) for c in covered) for a, b, _ in benchmark.pairs],
                    dtype=bool)
