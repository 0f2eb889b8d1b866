"""Multi-modal fusion, the paper's Eq. 1, as pure tensor functions.

    v(w) = alpha * L2(centre(text(w)))  ||  (1 - alpha) * L2(centre(visual(w)))

    fused = fuse(text, visual, has_visual, alpha=0.5)            # (V, Dt + Dv)
    cos = fused_pair_cosines(text, visual, has_visual, i1, i2, alpha=0.5, missing_visual="zero")
    kv = fuse_keyed(linguistic_kv, visual_kv, words, alpha=0.5)   # KeyedVectors for a release

- Centring subtracts each modality's mean vector over the vocabulary being evaluated: all V rows for
  the text part, only the rows that have images for the visual part.
- L2 normalisation leaves an all-zero row at zero.
- A word without images gets a zero visual part (the paper's rule, the default: `missing_visual="zero"`).
- `missing_visual="text"` (documented option, not the paper's): a pair where either word has no images
  is scored by its text cosine instead of the fused cosine; pairs where both words have images keep the
  fused cosine. Zero visual parts otherwise shrink full-set multi-modal scores below text-only ones.

The alpha sweep, shared by Table 1 / Figure 4 (`systems`), the dev/test protocol (`protocol`,
`multisource`) and the grounding section (`grounding`):

    alphas = alpha_grid()                                  # [0.0, 0.05, ..., 1.0]
    cos = sweep_cosines(unit_pair_dots(t, v, has, i1, i2), alphas, "zero")   # (A, P), one row per alpha
    k, rho = best_alpha(gold, dev, cos)                    # the row with the highest dev rho, first on ties
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from mmlightning.evaluation.relatedness import spearman

MISSING_VISUAL = ("zero", "text")
TIE = 1e-12          # a later dev rho replaces the best one only when higher by more than this: ties keep the first


def alpha_grid(step: float = 0.05) -> list[float]:
    """0, step, ..., 1 (rounded to avoid float drift): Figure 4's sweep and every alpha chosen on dev."""
    n = int(round(1.0 / step))
    return [round(i / n, 10) for i in range(n + 1)]


def centre(x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Subtract the mean of the selected rows (bool (V,), default all) from those rows; others become 0.

    x: (V, D) -> (V, D)
    """
    if rows is None:
        return x - x.mean(dim=0, keepdim=True)
    out = torch.zeros_like(x)
    if rows.any():
        sel = x[rows]                                  # (V', D)
        out[rows] = sel - sel.mean(dim=0, keepdim=True)
    return out


def l2_normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero. (V, D) -> (V, D)"""
    norms = x.norm(dim=1, keepdim=True)                # (V, 1)
    return torch.where(norms > eps, x / norms.clamp_min(eps), torch.zeros_like(x))


def prepare(text: torch.Tensor, visual: torch.Tensor, has_visual: torch.Tensor,
            centring: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (optionally) and L2-normalise each modality: (V, Dt), (V, Dv) unit rows (zero where no images)."""
    has_visual = has_visual.to(torch.bool)
    t = centre(text) if centring else text
    v = centre(visual, has_visual) if centring else torch.where(has_visual[:, None], visual, torch.zeros_like(visual))
    return l2_normalise(t), l2_normalise(v)


def fuse(text: torch.Tensor, visual: torch.Tensor, has_visual: torch.Tensor, alpha: float = 0.5,
         centring: bool = True) -> torch.Tensor:
    """Eq. 1: alpha * L2(centre(text)) || (1 - alpha) * L2(centre(visual)).

    text: (V, Dt), visual: (V, Dv) (rows without images are ignored), has_visual: (V,) bool
    -> (V, Dt + Dv)
    """
    _check_alpha(alpha)
    t, v = prepare(text, visual, has_visual, centring)
    return torch.cat([alpha * t, (1.0 - alpha) * v], dim=1)


def fused_pair_cosines(text: torch.Tensor, visual: torch.Tensor, has_visual: torch.Tensor,
                       i1: torch.Tensor, i2: torch.Tensor, alpha: float | Iterable[float] = 0.5,
                       centring: bool = True, missing_visual: str = "zero") -> torch.Tensor:
    """Cosines of fused vectors for the word pairs (i1[p], i2[p]), for one alpha or many at once.

    `prepare` then `sweep_cosines`, which equals the cosine of `fuse` rows without building
    (V, Dt + Dv) per alpha. i1, i2: (P,) int64 row indices -> (P,) float64 for a float alpha, (A, P)
    for a sequence of alphas.
    """
    scalar = isinstance(alpha, (int, float))
    alphas = [float(alpha)] if scalar else [float(a) for a in alpha]
    t, v = prepare(text.double(), visual.double(), has_visual, centring)
    cos = sweep_cosines(unit_pair_dots(t, v, has_visual, i1, i2), alphas, missing_visual)
    return cos[0] if scalar else cos


def unit_pair_dots(t: torch.Tensor, v: torch.Tensor, has_visual: torch.Tensor, i1: torch.Tensor,
                   i2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What every alpha's cosine of the pairs (i1[p], i2[p]) needs, from prepared rows (unit or zero):

    t: (V, Dt), v: (V, Dv), has_visual: (V,) -> tt, vv (text / visual dot products), n1t, n2t, n1v, n2v
    (squared norms: 1, or 0 for a zero row), all (P,) float64, and h1, h2 (P,) bool (has images).
    """
    hv = has_visual.to(torch.bool)
    tt = torch.einsum("pd,pd->p", t[i1], t[i2])       # (P,) text dot products (cosines of unit rows)
    vv = torch.einsum("pd,pd->p", v[i1], v[i2])       # (P,) visual dot products
    nt, nv = (t * t).sum(1), (v * v).sum(1)            # (V,) squared norms: 1, or 0 for a zero row
    return tt, vv, nt[i1], nt[i2], nv[i1], nv[i2], hv[i1], hv[i2]


def sweep_cosines(dots: tuple[torch.Tensor, ...], alphas: Sequence[float], missing_visual: str = "zero") -> torch.Tensor:
    """(A, P) Eq. 1 cosines for every alpha from `unit_pair_dots`, b = 1 - a:

    (a^2 tt + b^2 vv) / sqrt((a^2 n1t + b^2 n1v) (a^2 n2t + b^2 n2v)), 0 where the denominator is 0;
    with missing_visual "text", a pair where either word has no images keeps its text cosine tt.
    """
    _check_sweep(alphas, missing_visual)
    tt, vv, n1t, n2t, n1v, n2v, h1, h2 = dots
    a = torch.tensor([float(x) for x in alphas], dtype=torch.float64)[:, None]   # (A, 1)
    a2, b2 = a ** 2, (1.0 - a) ** 2
    num = a2 * tt + b2 * vv                                                     # (A, P)
    den = torch.sqrt((a2 * n1t + b2 * n1v) * (a2 * n2t + b2 * n2v))
    cos = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))
    if missing_visual == "text":
        cos = torch.where((h1 & h2)[None, :], cos, tt.expand_as(cos))
    return cos


def first_best(scores: Iterable[float | None]) -> tuple[int, float | None]:
    """Index and value of the best score: a later one replaces it only when higher by more than `TIE`
    (ties keep the first); None scores never win. (0, None) when no score is defined."""
    best, best_r = 0, None
    for k, r in enumerate(scores):
        if r is not None and (best_r is None or r > best_r + TIE):
            best, best_r = k, r
    return best, best_r


def best_alpha(gold: np.ndarray, dev: np.ndarray, cos: np.ndarray) -> tuple[int, float | None]:
    """The row of `cos` (A, P) (one per alpha) with the highest Spearman rho against `gold` (P,) over the
    `dev` (P,) pairs it scores (finite cosines), and that rho; ties keep the first row (`first_best`)."""
    return first_best(spearman(gold[use], c[use]) for c in cos for use in (dev & np.isfinite(c),))


def fuse_keyed(linguistic, visual, words: Iterable[str] | None = None, alpha: float = 0.5,
               centring: bool = True):
    """Fused KeyedVectors for `words` (default: every linguistic word) that have a linguistic vector.

    Words are looked up as given, then lower-cased; centring uses exactly these words.
    """
    from mmlightning.vectors import KeyedVectors

    words = list(linguistic.index_to_key if words is None else words)
    keys, ti, vi = [], [], []
    for w in words:
        i = linguistic.lookup(w)
        if i is not None:
            keys.append(w)
            ti.append(i)
            j = visual.lookup(w)
            vi.append(-1 if j is None else j)
    text = torch.from_numpy(linguistic.vectors[ti]).double()                     # (V, Dt)
    vi_t = torch.tensor(vi, dtype=torch.int64)
    has_visual = vi_t >= 0                                                        # (V,)
    visual_rows = torch.from_numpy(visual.vectors).double()[vi_t.clamp_min(0)] if len(visual) else \
        torch.zeros(len(keys), visual.vector_size, dtype=torch.float64)           # (V, Dv)
    return KeyedVectors(keys, fuse(text, visual_rows, has_visual, alpha, centring).float().numpy())


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _check_sweep(alphas: Sequence[float], missing_visual: str) -> None:
    if missing_visual not in MISSING_VISUAL:
        raise ValueError(f"missing_visual must be one of {MISSING_VISUAL}, got {missing_visual!r}")
    for a in alphas:
        _check_alpha(float(a))
