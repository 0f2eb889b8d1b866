"""Dev/test protocol: every choice made from data is made on MEN dev and reported on MEN test.

    result["tuned"] = run_protocol(linguistic_kv, {"tuxpaint": mean_kv, "openclipart": mean_kv2},
                                   dispersion={"tuxpaint": disp_kv, ...})
    result["tuned"]["best"]                        # the system with the highest rho on MEN dev
    result["tuned"]["test"]["men_test"]["all-sources:average"]   # rho, CI, vs_linguistic, vs_cnn_mean

- Split: MEN's official 2000/1000 dev/test split is not installed by any package we use, so MEN's
  3000 pairs are split by a seeded permutation (seed 0): 2000 dev pairs, 1000 test pairs.
- Choices made on dev (highest Spearman rho over the dev pairs both words of which have a text
  vector): alpha on a 0.05 grid, the missing-visual rule (zero / text), the source fusion (average /
  concat) and the dispersion gate (a word keeps a source's images when its dispersion is at most that
  source's q-quantile over MEN's words, q on a grid; the absolute ceilings are then fixed).
- Systems (each tuned on dev within its family): `cnn-mean:<src>` (plain CNN-Mean, one source),
  `cnn-mean:<src>+dispersion`, `all-sources:average`, `all-sources:concat` and
  `all-sources+dispersion` (the dev-chosen fusion, gated); `eq1:<src>` is the paper's untuned Eq. 1 at
  alpha 0.5 for reference. `best` names the tuned system with the highest dev rho.
- Reported on MEN test and on the test-only benchmarks (WS353, SimLex-999, RG-65, MTurk-287, RW):
  rho with a bootstrap CI, and paired-bootstrap differences against text (`vs_linguistic`) and
  against plain CNN-Mean (`vs_cnn_mean`: the same source's tuned CNN-Mean, or for all-sources systems
  the single-source CNN-Mean that is best on dev) over the same pairs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mmlightning.datasets import Benchmark, load_benchmark
from mmlightning.evaluation.fusion import alpha_grid, best_alpha, first_best
from mmlightning.evaluation.multisource import (
    BenchData, Spec, coverage, pair_dots, prepare_benchmark, spec_cosines,
)
from mmlightning.evaluation.relatedness import gold_scores, pair_cosines, paired_difference, score_cosines, subset

log = logging.getLogger(__name__)

TUNE_ON = "men"
N_DEV = 2000
SPLIT_SEED = 0
TEST_ONLY = ("ws353", "simlex999", "rg65", "mturk287", "rw")
GATE_QUANTILES = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
MISSING = ("zero", "text")
FUSIONS = ("average", "concat")


def dev_test_split(n_pairs: int, n_dev: int = N_DEV, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of pair indices: (dev (P,) bool, test (P,) bool), n_dev pairs in dev, the rest in test."""
    perm = np.random.default_rng(seed).permutation(n_pairs)
    dev = np.zeros(n_pairs, dtype=bool)
    dev[perm[:n_dev]] = True
    return dev, ~dev


@dataclass(frozen=True)
class Tuned:
    """A system as chosen on dev: its spec, alpha, missing-visual rule, gate quantile and dev rho."""

    name: str
    spec: Spec
    alpha: float
    missing_visual: str
    gate_quantile: float | None
    dev_rho: float | None
    baseline: str | None = None     # the plain CNN-Mean system it is measured against

    def to_dict(self) -> dict:
        return {"sources": list(self.spec.sources), "fusion": self.spec.fusion, "alpha": self.alpha,
                "missing_visual": self.missing_visual, "gate_quantile": self.gate_quantile,
                "dispersion_max": dict(self.spec.gate) if self.spec.gate else None, "dev_rho": self.dev_rho,
                "baseline": self.baseline}


def best_on_dev(data: BenchData, dev: np.ndarray, spec: Spec, alphas: Sequence[float],
                missing: Sequence[str] = MISSING) -> tuple[float, str, float | None]:
    """(alpha, missing rule, dev rho) maximising Spearman rho over the dev pairs, the rules' alpha sweeps
    taken in turn (`fusion.best_alpha`: ties keep the first); (0.5, missing[0], None) when no rho is defined."""
    dots = pair_dots(data, spec)
    cos = np.concatenate([spec_cosines(data, spec, alphas, m, dots) for m in missing])   # (M * A, P)
    k, r = best_alpha(gold_scores(data.bench), dev & data.known, cos)
    if r is None:
        return 0.5, missing[0], None
    return float(alphas[k % len(alphas)]), missing[k // len(alphas)], r


def gate_ceilings(data: BenchData, sources: Sequence[str], q: float) -> dict[str, float]:
    """Per source, the q-quantile of the dispersions of the benchmark's words with images there."""
    out = {}
    for s in sources:
        d = data.disp[s][data.has[s]].numpy()
        d = d[np.isfinite(d)]
        if d.size:
            out[s] = float(np.quantile(d, q))
    return out


def _tune_family(name, data, dev, sources, fusion, alphas, gates, baseline=None) -> Tuned:
    """The best (gate quantile, alpha, missing rule) on dev for one family; gates: [None] or quantiles."""
    found = []
    for q in gates:
        spec = Spec(tuple(sources), fusion, None if q is None else gate_ceilings(data, sources, q))
        a, m, r = best_on_dev(data, dev, spec, alphas)
        found.append(Tuned(name, spec, a, m, q, r, baseline))
    return found[first_best(t.dev_rho for t in found)[0]]


def tune(data: BenchData, dev: np.ndarray, alphas: Sequence[float] | None = None,
         fusions: Sequence[str] = FUSIONS, gate: bool = True) -> dict[str, Tuned]:
    """Every system family tuned on the dev pairs of `data` (MEN), in report order."""
    alphas = list(alphas or alpha_grid())
    sources = list(data.unit)
    gates = list(GATE_QUANTILES)
    out: dict[str, Tuned] = {}
    for s in sources:
        out[f"eq1:{s}"] = Tuned(f"eq1:{s}", Spec((s,)), 0.5, "zero", None,
                                best_on_dev(data, dev, Spec((s,)), [0.5], ["zero"])[2])
        out[f"cnn-mean:{s}"] = _tune_family(f"cnn-mean:{s}", data, dev, [s], "single", alphas, [None])
    plain = max((out[f"cnn-mean:{s}"] for s in sources), key=_dev)
    for s in sources:
        if gate and _has_dispersion(data, s):
            n = f"cnn-mean:{s}+dispersion"
            out[n] = _tune_family(n, data, dev, [s], "single", alphas, gates, f"cnn-mean:{s}")
    if len(sources) > 1:
        for f in fusions:
            out[f"all-sources:{f}"] = _tune_family(f"all-sources:{f}", data, dev, sources, f, alphas, [None], plain.name)
        fused = max((out[f"all-sources:{f}"] for f in fusions), key=_dev)
        if gate and all(_has_dispersion(data, s) for s in sources):
            out["all-sources+dispersion"] = _tune_family("all-sources+dispersion", data, dev, sources,
                                                         fused.spec.fusion, alphas, gates, plain.name)
    return out


def _dev(t: Tuned) -> float:
    return -np.inf if t.dev_rho is None else t.dev_rho


def _has_dispersion(data: BenchData, source: str) -> bool:
    return bool(np.isfinite(data.disp[source].numpy()).any())


def best_tuned(tuned: Mapping[str, Tuned]) -> str | None:
    """The tuned (non-eq1) system with the highest dev rho (None when no rho is defined on dev)."""
    cands = [t for n, t in tuned.items() if not n.startswith("eq1:") and t.dev_rho is not None]
    return max(cands, key=lambda t: t.dev_rho).name if cands else None


def score_on(data: BenchData, tuned: Mapping[str, Tuned], linguistic, mask: np.ndarray | None = None,
             n_boot: int = 1000, seed: int = 0) -> dict:
    """Each tuned system's settings applied unchanged to `data` (restricted to `mask`): cells with CIs."""
    bench = data.bench
    gold = gold_scores(bench)
    mask = np.ones(len(bench), dtype=bool) if mask is None else mask
    ling_full = score_cosines(bench, gold, *pair_cosines(linguistic, bench.pairs, "skip"), n_boot=0)
    ling = subset(ling_full, mask, n_boot, seed)
    full = {}
    for name, t in tuned.items():
        spec = Spec(t.spec.sources, t.spec.fusion, t.spec.gate)
        cos = spec_cosines(data, spec, [t.alpha], t.missing_visual)[0]          # (P,)
        full[name] = subset(score_cosines(bench, gold, cos, data.known, n_boot=0), mask, n_boot, seed)
    row = {"linguistic": ling.to_dict()}
    for name, s in full.items():
        cell = s.to_dict()
        cell["vs_linguistic"] = paired_difference(s, ling, n_boot, seed).to_dict()
        base = tuned[name].baseline
        if base is not None and base in full:
            cell["vs_cnn_mean"] = {**paired_difference(s, full[base], n_boot, seed).to_dict(), "baseline": base}
        cell["words_with_images"] = coverage(data, tuned[name].spec)
        row[name] = cell
    return row


def oov_counts(bench: Benchmark, linguistic, visual: Mapping[str, object]) -> dict:
    """Pairs and words of `bench` missing from the text vectors, and words with images per source."""
    words = bench.words()
    oov_words = {w for w in words if linguistic.lookup(w) is None}
    oov_pairs = sum(1 for a, b, _ in bench.pairs if a in oov_words or b in oov_words)
    return {"pairs": len(bench), "pairs_oov": oov_pairs, "words": len(words), "words_oov": len(oov_words),
            "words_with_images": {s: sum(1 for w in words if kv.lookup(w) is not None) for s, kv in visual.items()}}


def run_protocol(linguistic, visual: Mapping[str, object], dispersion: Mapping[str, object] | None = None,
                 test_only: Sequence[str] = TEST_ONLY, fusions: Sequence[str] = FUSIONS, gate: bool = True,
                 n_dev: int = N_DEV, split_seed: int = SPLIT_SEED, n_boot: int = 1000, seed: int = 0) -> dict:
    """Tune on MEN dev, report on MEN test and the test-only benchmarks: the JSON-ready `tuned` section."""
    men = load_benchmark(TUNE_ON)
    dev, test = dev_test_split(len(men), n_dev, split_seed)
    data = prepare_benchmark(men, linguistic, visual, dispersion)
    tuned = tune(data, dev, fusions=fusions, gate=gate and bool(dispersion))
    best = best_tuned(tuned)
    log.info("dev/test protocol: best on MEN dev is %s (rho %s)", best, tuned[best].dev_rho if best else "n/a")
    results = {f"{TUNE_ON}_test": score_on(data, tuned, linguistic, test, n_boot, seed)}
    oov = {TUNE_ON: oov_counts(men, linguistic, visual)}
    for name in test_only:
        bench = load_benchmark(name)
        results[name] = score_on(prepare_benchmark(bench, linguistic, visual, dispersion), tuned, linguistic,
                                 None, n_boot, seed)
        oov[name] = oov_counts(bench, linguistic, visual)
    return {"protocol": {"tune_on": TUNE_ON, "split": {"kind": "seeded permutation of MEN's pairs", "seed": split_seed,
                                                       "dev_pairs": int(dev.sum()), "test_pairs": int(test.sum())},
                         "selection": "highest Spearman rho on MEN dev pairs (OOV pairs skipped)",
                         "alphas": alpha_grid(), "missing_visual": list(MISSING), "fusions": list(fusions),
                         "gate_quantiles": list(GATE_QUANTILES) if gate and dispersion else [],
                         "test_only": list(test_only), "n_boot": n_boot, "seed": seed},
            "systems": {n: t.to_dict() for n, t in tuned.items()}, "best": best, "oov": oov, "test": results}


def protocol_visual(visual: Mapping[str, object]) -> dict[str, object]:
    """One visual system per source for the protocol: its `cnn-mean`, else its first method."""
    out: dict[str, object] = {}
    for name, v in visual.items():
        src, _, method = name.partition("/")
        if method == "cnn-mean" or src not in out:
            out[src] = v
    return out


def run_protocol_files(linguistic: str, visual: Mapping[str, str], aggregates: Mapping[str, str] | None = None,
                       fusions: Sequence[str] | None = FUSIONS, gate: bool = True, n_boot: int = 1000,
                       seed: int = 0, unsafe_gensim_pickle: bool = False) -> dict:
    """`run_protocol` on files: text vectors, visual vectors by system name, aggregates.pt by source.

    `unsafe_gensim_pickle`: also read gensim's native (pickled) vectors; unpickles: only for files you trust.
    """
    from mmlightning.errors import UserError
    from mmlightning.evaluation.dispersion import load_dispersion

    fusions = list(FUSIONS if fusions is None else fusions)
    bad = [f for f in fusions if f not in FUSIONS]
    if bad or not fusions:
        raise UserError(f"source_fusion: {bad or fusions} is not a non-empty list of {', '.join(FUSIONS)}")
    if not visual:
        raise UserError("the protocol needs at least one visual system to tune", argument="visual")

    try:
        ling, vis = _load(linguistic, protocol_visual(visual), unsafe_gensim_pickle)
    except UserError as e:   # e.g. a toy vocabulary without MEN's words: Table 1 stands, the section says why
        log.warning("dev/test protocol skipped: %s", e)
        return {"skipped": str(e)}
    disp = {src: load_dispersion(path) for src, path in (aggregates or {}).items() if gate}
    return run_protocol(ling, vis, disp or None, fusions=fusions, gate=gate, n_boot=n_boot, seed=seed)


def _load(linguistic: str, visual: Mapping[str, str], unsafe_gensim_pickle: bool = False):
    """Text and visual vectors restricted to the words of MEN and the test-only benchmarks."""
    from mmlightning.errors import UserError
    from mmlightning.vectors import load_vectors

    words = set().union(*(load_benchmark(b).words() for b in (TUNE_ON, *TEST_ONLY)))
    ling = load_vectors(linguistic, restrict_to=words, unsafe_gensim_pickle=unsafe_gensim_pickle)
    if not any(ling.lookup(w) is not None for w in load_benchmark(TUNE_ON).words()):
        raise UserError(f"{linguistic}: no word of MEN, the benchmark the protocol tunes on")
    vis = {src: load_vectors(path, restrict_to=words, unsafe_gensim_pickle=unsafe_gensim_pickle)
           for src, path in visual.items()}
    empty = [src for src, kv in vis.items() if len(kv) == 0]
    if empty:
        raise UserError(f"{visual[empty[0]]}: no word of MEN or the test-only benchmarks")
    return ling, vis
