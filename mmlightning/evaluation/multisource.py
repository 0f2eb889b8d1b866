"""Multi-modal cosines with several image sources per word and an optional image-dispersion gate.

    data = prepare_benchmark(bench, linguistic_kv, {"tuxpaint": kv1, "openclipart": kv2},
                             dispersion={"tuxpaint": disp_kv1, "openclipart": disp_kv2})
    spec = Spec(sources=("tuxpaint", "openclipart"), fusion="average", gate={"tuxpaint": 0.41, ...})
    cos = spec_cosines(data, spec, alphas=[0.3, 0.5], missing_visual="text")   # (A, P) NaN where OOV
    cos, known = bench_cosines(bench, linguistic_kv, visual_kv, alphas)          # one source: Eq. 1 as such

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
- `bench_cosines` is Eq. 1 itself for one visual KeyedVectors (`fusion.fused_pair_cosines`, optional
  centring), as Table 1, Figure 4 and the grounding section score it; `spec_cosines` normalises a
  source's rows once more after fusing, so on one source the two agree to ~1e-15, not bit for bit.
  Both get every alpha's cosines from `fusion.sweep_cosines`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from mmlightning.datasets import Benchmark
from mmlightning.evaluation.fusion import centre, fused_pair_cosines, l2_normalise, sweep_cosines, unit_pair_dots

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


def _index(bench: Benchmark, linguistic) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark's words that have a text vector (sorted: the centring vocabulary), and per pair the
    (P,) rows of word 1 and word 2 in it (-1: no text vector) and the (P,) bool both-known mask."""
    vocab = sorted(w for w in bench.words() if linguistic.lookup(w) is not None)
    row = {w: i for i, w in enumerate(vocab)}
    i1 = np.array([row.get(a, -1) for a, _, _ in bench.pairs])
    i2 = np.array([row.get(b, -1) for _, b, _ in bench.pairs])
    return vocab, i1, i2, (i1 >= 0) & (i2 >= 0)


def bench_cosines(bench: Benchmark, linguistic, visual, alphas: Sequence[float], missing_visual: str = "zero",
                  centring: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 1 cosines of every pair for each alpha, centring over the benchmark's words with a text vector:
    (A, P) float64, NaN where a word has no text vector, and that (P,) bool known mask.

    `visual`: one KeyedVectors, or None for the text part alone (a zero visual part everywhere).
    """
    vocab, i1, i2, known = _index(bench, linguistic)
    text, _ = _rows(linguistic, vocab)                                     # (V, Dt)
    if visual is None:
        vis, has = torch.zeros(len(vocab), 1, dtype=torch.float64), torch.zeros(len(vocab), dtype=torch.bool)
    else:
        vis, has = _rows(visual, vocab)                                    # (V, Dv), (V,)
    cos = np.full((len(alphas), len(bench)), np.nan)
    if known.any():
        cos[:, known] = fused_pair_cosines(text, vis, has, torch.from_numpy(i1[known]), torch.from_numpy(i2[known]),
                                           alphas, centring, missing_visual).numpy()
    return cos, known


def prepare_benchmark(bench: Benchmark, linguistic, visual: Mapping[str, object],
                      dispersion: Mapping[str, object] | None = None) -> BenchData:
    """Centre and normalise each modality over the benchmark's words that have a text vector."""
    vocab, i1, i2, known = _index(bench, linguistic)
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
    return unit_pair_dots(t, v, has, data.i1, data.i2)


def spec_cosines(data: BenchData, spec: Spec, alphas: Sequence[float], missing_visual: str = "zero",
                 dots: tuple | None = None) -> np.ndarray:
    """(A, P) fused cosines of every pair for each alpha; NaN for pairs with a word lacking a text vector."""
    dots = pair_dots(data, spec) if dots is None else dots
    cos = np.full((len(alphas), len(data.bench)), np.nan)
    if data.known.any():
        cos[:, data.known] = sweep_cosines(dots, alphas, missing_visual).numpy()
    return cos


def coverage(data: BenchData, spec: Spec) -> int:
    """Number of the benchmark's words (with a text vector) whose visual part is used under `spec`."""
    return int(visual_rows(data, spec)[1].sum())
