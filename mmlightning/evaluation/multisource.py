"""Multi-modal cosines with several image sources per word and an optional image-dispersion gate.

    data = prepare_benchmark(bench, linguistic_kv, {"tuxpaint": kv1, "openclipart": kv2},
                             dispersion={"tuxpaint": disp_kv1, "openclipart": disp_kv2})
    spec = Spec(sources=("tuxpaint", "openclipart"), fusion="average", gate={"tuxpaint": 0.41, ...})
    cos = spec_cosines(data, spec, alphas=[0.3, 0.5], missing_visual="text")   # (A, P) NaN where OOV

Rules (all pure functions; `fusion.py`'s Eq. 1 is the special case of one source, no gate):
- Text rows are centred over the benchmark's words that have a text vector, then L2-normalised.
- Each source's visual rows are centred over the words that have images in that source, then
  L2-normalised (`fusion.prepare`), so sources of different backbones / scales are comparable.
- Several sources: "average" is the mean of the unit vectors of the sources the word has images in
  (coverage is the union of the sources); "concat" concatenates them, with zeros for a source the
  word has no image in. The result is L2-normalised again inside Eq. 1.
- Gate: a source's images of a word are ignored when that word's image dispersion in that source is
  above the source's threshold (`gate[source]`); words with fewer than two images have no dispersion
  and are never gated. A word left without images falls under `missing_visual` ("zero" or "text").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from mmlightning.datasets import Benchmark
from mmlightning.evaluation.fusion import centre, l2_normalise

FUSIONS = ("single", "average", "concat")


@dataclass(frozen=True)
class BenchData:
    """One benchmark's words as tensors: centred text, per-source unit visual rows, dispersions, pairs."""

    bench: Benchmark
    text: torch.Tensor                      # (V, Dt) centred text rows (not yet normalised)
    unit: dict                              # source -> (V, Dv) unit visual rows, 0 without images
    has: dict                               # source -> (V,) bool: the word has images in the source
    disp: dict                              # source -> (V,) float64 dispersion, NaN when unknown
    i1: torch.Tensor                        # (K,) row of word 1 of each known pair
    i2: torch.Tensor                        # (K,) row of word 2
    known: np.ndarray = field(repr=False)   # (P,) bool: both words have a text vector


@dataclass(frozen=True)
class Spec:
    """Which sources, how they are fused, and the dispersion ceiling per source (None: no gate)."""

    sources: tuple[str, ...]
    fusion: str = "single"
    gate: Mapping[str, float] | None = None

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.fusion == "single" and len(self.sources) != 1:
            raise ValueError("fusion 'single' takes exactly one source")


def _rows(kv, vocab: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, D) float64 rows of `vocab` in `kv` (zeros where missing) and the (V,) bool found mask."""
    idx = torch.tensor([-1 if kv.lookup(w) is None else kv.lookup(w) for w in vocab], dtype=torch.int64)
    found = idx >= 0
    out = torch.zeros(len(vocab), kv.vector_size, dtype=torch.float64)
    if found.any():
        out[found] = torch.from_numpy(np.asarray(kv.vectors)[idx[found].numpy()]).double()
    return out, found


def prepare_benchmark(bench: Benchmark, linguistic, visual: Mapping[str, object],
                      dispersion: Mapping[str, object] | None = None) -> BenchData:
    """Centre and normalise each modality over the benchmark's words that have a text vector."""
    vocab = sorted(w for w in bench.words() if linguistic.lookup(w) is not None)
    row = {w: i for i, w in enumerate(vocab)}
    text, _ = _rows(linguistic, vocab)
    unit, has, disp = {}, {}, {}
    for src, kv in visual.items():
        vis, found = _rows(kv, vocab)
        unit[src], has[src] = l2_normalise(centre(vis, found)), found
        d = torch.full((len(vocab),), float("nan"), dtype=torch.float64)
        if dispersion and src in dispersion:
            vals, got = _rows(dispersion[src], vocab)
            d = torch.where(got, vals[:, 0], d)
        disp[src] = d
    i1 = np.array([row.get(a, -1) for a, _, _ in bench.pairs])
    i2 = np.array([row.get(b, -1) for _, b, _ in bench.pairs])
    known = (i1 >= 0) & (i2 >= 0)
    return BenchData(bench, centre(text), unit, has, disp, torch.from_numpy(i1[known]),
                     torch.from_numpy(i2[known]), known)


def kept(data: BenchData, source: str, gate: Mapping[str, float] | None) -> torch.Tensor:
    """(V,) bool: the word's images in `source` are used (it has some and is not gated out)."""
    has = data.has[source]
    if not gate or source not in gate:
        return has
    return has & ~(data.disp[source] > gate[source])   # NaN dispersion compares False: kept


def visual_rows(data: BenchData, spec: Spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused visual part (V, Dv') and its (V,) has-images mask for `spec`."""
    keeps = [kept(data, s, spec.gate) for s in spec.sources]                 # each (V,)
    parts = [data.unit[s] * k[:, None] for s, k in zip(spec.sources, keeps)]  # each (V, Dv_s)
    has = torch.stack(keeps).any(dim=0)                                       # (V,)
    if spec.fusion == "concat":
        return torch.cat(parts, dim=1), has
    if len(parts) > 1 and parts[0].shape[1] != parts[1].shape[1]:
        raise ValueError("fusion 'average' needs sources of one feature dimension (use 'concat')")
    n = torch.stack(keeps).sum(dim=0).clamp_min(1).to(torch.float64)         # (V,)
    return torch.stack(parts).sum(dim=0) / n[:, None], has


def pair_dots(data: BenchData, spec: Spec) -> tuple[torch.Tensor, ...]:
    """Per known pair: text and visual dot products of the unit parts, squared norms, has-visual flags.

    -> tt, vv, n1t, n2t, n1v, n2v (K,) float64 and h1, h2 (K,) bool; reused for every alpha and rule.
    """
    t = l2_normalise(data.text)                        # (V, Dt)
    v, has = visual_rows(data, spec)
    v = l2_normalise(v)                                # (V, Dv') unit rows, zero without images
    tt = torch.einsum("pd,pd->p", t[data.i1], t[data.i2])
    vv = torch.einsum("pd,pd->p", v[data.i1], v[data.i2])
    nt, nv = (t * t).sum(1), (v * v).sum(1)           # (V,) 1, or 0 for a zero row
    return tt, vv, nt[data.i1], nt[data.i2], nv[data.i1], nv[data.i2], has[data.i1], has[data.i2]


def combine(dots: tuple[torch.Tensor, ...], alphas: Sequence[float], missing_visual: str = "zero") -> torch.Tensor:
    """(A, K) Eq. 1 cosines from `pair_dots`, as `fusion.fused_pair_cosines` computes them, b = 1 - a:

    (a^2 tt + b^2 vv) / sqrt((a^2 n1t + b^2 n1v) (a^2 n2t + b^2 n2v))
    """
    tt, vv, n1t, n2t, n1v, n2v, h1, h2 = dots
    a = torch.tensor([float(x) for x in alphas], dtype=torch.float64)[:, None]   # (A, 1)
    a2, b2 = a ** 2, (1.0 - a) ** 2
    den = torch.sqrt((a2 * n1t + b2 * n1v) * (a2 * n2t + b2 * n2v))              # (A, K)
    cos = torch.where(den > 0, (a2 * tt + b2 * vv) / den.clamp_min(1e-300), torch.zeros_like(den))
    if missing_visual == "text":
        cos = torch.where((h1 & h2)[None, :], cos, tt.expand_as(cos))
    elif missing_visual != "zero":
        raise ValueError(f"missing_visual must be zero or text, got {missing_visual!r}")
    return cos


def spec_cosines(data: BenchData, spec: Spec, alphas: Sequence[float], missing_visual: str = "zero",
                 dots: tuple | None = None) -> np.ndarray:
    """(A, P) fused cosines of every pair for each alpha; NaN for pairs with a word lacking a text vector."""
    dots = pair_dots(data, spec) if dots is None else dots
    cos = np.full((len(alphas), len(data.bench)), np.nan)
    if data.known.any():
        cos[:, data.known] = combine(dots, alphas, missing_visual).numpy()
    return cos


def coverage(data: BenchData, spec: Spec) -> int:
    """Number of the benchmark's words (with a text vector) whose visual part is used under `spec`."""
    return int(visual_rows(data, spec)[1].sum())
