"""Grounding the words without pictures, chosen on MEN dev and reported on test (beyond the paper).

    section = run_grounding(text_kv, {"tuxpaint": mean_kv, "openclipart": mean_kv2},
                            mm_text={"mmskipgram-B": kv}, n_boot=1000)
    section["best"], section["test"]["simlex999"]["imagined"]["vs_linguistic"], section["by_concreteness"]

The visual part is one vector per word: the mean of its L2-normalised CNN-Mean vectors over the sources
that have images of it. Systems, each fused by Eq. 1 (centring over each benchmark's words, as Table 1):
- `text-centred`: the text part of Eq. 1 alone (alpha 1): what centring alone does, no image involved;
- `eq1`: the words with images get their visual vector, the rest a zero visual part (the paper's rule);
- `imagined`: imageless words get an imagined visual vector, predicted from their text vector by a ridge
  map fitted on the pictured words (`mmlightning.evaluation.imagined`; a pictured word keeps its own);
- `concreteness-gate`: only words whose Brysbaert et al. (2014) rating is at least a threshold keep their
  visual vector (unrated words keep it), `mmlightning.evaluation.concreteness`;
- for each MMSkip-gram text model X given: `X` (its text vectors alone, as Lazaridou et al. use them)
  and `X+eq1` (its text vectors in Eq. 1 with the same visual part).
Text alone (the baseline, and MMSkip-gram alone) is scored by plain cosines, as Table 1's text row.
Every alpha (0.05 grid) and the gate's threshold (a grid of ratings) are chosen by Spearman rho on MEN's
2000 dev pairs (the seeded split of `mmlightning.evaluation.protocol`), then applied unchanged to MEN's
1000 test pairs and to the test-only SimLex-999 and WS353, whose abstract pairs show where images cannot
help. Each test cell has a bootstrap CI and a paired-bootstrap difference against text on the same pairs;
every other system also against `eq1` (`vs_eq1`); the gain of `eq1` and of the dev-best system over
text is also given per concreteness quartile of the pairs.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import numpy as np

from mmlightning.datasets import Benchmark, load_benchmark
from mmlightning.errors import UserError
from mmlightning.evaluation.concreteness import gain_by_quartile, gate_visual, load_concreteness, pair_concreteness
from mmlightning.evaluation.fusion import alpha_grid, best_alpha, first_best
from mmlightning.evaluation.imagined import visual_with_imagined
from mmlightning.evaluation.multisource import bench_cosines
from mmlightning.evaluation.protocol import N_DEV, SPLIT_SEED, TUNE_ON, dev_test_split
from mmlightning.evaluation.relatedness import gold_scores, pair_cosines, paired_difference, score_cosines, subset
from mmlightning.vectors import KeyedVectors

log = logging.getLogger(__name__)

TEST_SETS = ("simlex999", "ws353")       # test-only sets with abstract pairs, reported beside MEN test
THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 4.25, 4.5, 4.75)   # concreteness gate grid (ratings 1-5)


def mean_visual(visual: Mapping[str, KeyedVectors]) -> KeyedVectors:
    """One visual vector per word: the mean of its L2-normalised vectors over the sources that have it."""
    dims = {kv.vector_size for kv in visual.values()}
    if len(dims) != 1:
        raise UserError(f"grounding: the visual sources differ in dimension ({sorted(dims)}); use one backbone")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for kv in visual.values():
        rows = np.asarray(kv.vectors, dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        for w, row in zip(kv.index_to_key, rows):
            sums[w] = sums.get(w, 0.0) + row
            counts[w] = counts.get(w, 0) + 1
    words = sorted(sums)
    return KeyedVectors(words, np.stack([sums[w] / counts[w] for w in words]) if words
                        else np.zeros((0, dims.pop()), np.float32))


def text_cosines(bench: Benchmark, text: KeyedVectors) -> np.ndarray:
    """(P,) plain cosines of the text vectors (no centring, as Table 1's text row); NaN for an unknown word."""
    cos, used = pair_cosines(text, bench.pairs, "skip")
    return np.where(used, cos, np.nan)


def _eq1(text: KeyedVectors, visual: KeyedVectors | None) -> Callable[[Benchmark, list[float]], np.ndarray]:
    """cosines(bench, alphas) -> (A, P) Eq. 1 cosines (`multisource.bench_cosines`; no visual part: text alone)."""
    return lambda bench, alphas: bench_cosines(bench, text, visual, alphas)[0]


class _Systems:
    """Each system as a function of a benchmark -> its (P,) cosines, with its settings chosen on MEN dev."""

    def __init__(self, text: KeyedVectors, visual: KeyedVectors, mm_text: Mapping[str, KeyedVectors],
                 conc: Mapping[str, float], seed: int, words: set[str]):
        self.text, self.visual, self.mm_text, self.conc = text, visual, dict(mm_text), conc
        self.imagined = visual_with_imagined(text, visual, words=sorted(words), seed=seed)
        self.gated = {th: gate_visual(visual, conc, th) for th in THRESHOLDS}
        self.chosen: dict[str, dict] = {}

    def candidates(self) -> dict[str, list[tuple[dict, Callable[[Benchmark, list[float]], np.ndarray]]]]:
        """name -> [(settings without alpha, cosines(bench, alphas) -> (A, P))]: the dev grid of each system."""
        out = {"text-centred": [({"alpha": 1.0}, _eq1(self.text, None))],
               "eq1": [({}, _eq1(self.text, self.visual))],
               "imagined": [({}, _eq1(self.text, self.imagined))],
               "concreteness-gate": [({"threshold": th}, _eq1(self.text, g)) for th, g in self.gated.items()]}
        for name, kv in self.mm_text.items():
            out[name] = [({"alpha": 1.0}, lambda b, a, kv=kv: text_cosines(b, kv)[None, :])]
            out[f"{name}+eq1"] = [({}, _eq1(kv, self.visual))]
        return out

    def tune(self, men: Benchmark, dev: np.ndarray) -> None:
        """Pick each system's alpha (and threshold) by rho on MEN dev (`fusion.best_alpha`, ties keep the first)."""
        gold, alphas = gold_scores(men), alpha_grid()
        for name, grid in self.candidates().items():
            found = []
            for settings, cosines in grid:
                a = [settings["alpha"]] if "alpha" in settings else alphas
                k, r = best_alpha(gold, dev, cosines(men, a))
                found.append({"settings": {**settings, "alpha": a[k]}, "cosines": cosines, "dev_rho": r})
            self.chosen[name] = found[first_best(f["dev_rho"] for f in found)[0]]

    def cosines(self, name: str, bench: Benchmark) -> np.ndarray:
        ch = self.chosen[name]
        return ch["cosines"](bench, [ch["settings"]["alpha"]])[0]


def _cells(bench: Benchmark, systems: _Systems, mask: np.ndarray, n_boot: int, seed: int) -> tuple[dict, dict]:
    """Cells {system: rho, CI, vs_linguistic} on the pairs of `mask` that text scores, and each system's
    (P,) cosines (NaN where not scored)."""
    gold = gold_scores(bench)
    cos = {"linguistic": text_cosines(bench, systems.text)}
    cos.update({name: systems.cosines(name, bench) for name in systems.chosen})
    cos = {n: np.where(np.isfinite(cos["linguistic"]), c, np.nan) for n, c in cos.items()}
    scores = {n: subset(score_cosines(bench, gold, c, np.isfinite(c), n_boot=0), mask, n_boot, seed)
              for n, c in cos.items()}
    row = {"linguistic": scores["linguistic"].to_dict()}
    for n, sc in scores.items():
        if n != "linguistic":
            row[n] = {**sc.to_dict(), "vs_linguistic": paired_difference(sc, scores["linguistic"], n_boot, seed).to_dict()}
            if n != "eq1" and "eq1" in scores:
                row[n]["vs_eq1"] = paired_difference(sc, scores["eq1"], n_boot, seed).to_dict()
    return row, cos


def run_grounding(text: KeyedVectors, visual: Mapping[str, KeyedVectors],
                  mm_text: Mapping[str, KeyedVectors] | None = None, n_boot: int = 1000, seed: int = 0,
                  conc: Mapping[str, float] | None = None) -> dict:
    """The JSON-ready `grounding` section: systems chosen on MEN dev, test cells, gains by concreteness."""
    if not visual:
        raise UserError("grounding: needs at least one visual source")
    conc = load_concreteness() if conc is None else conc
    men = load_benchmark(TUNE_ON)
    dev, test = dev_test_split(len(men), N_DEV, SPLIT_SEED)
    benches = {f"{TUNE_ON}_test": men, **{b: load_benchmark(b) for b in TEST_SETS}}
    words = set().union(*(b.words() for b in benches.values()))
    systems = _Systems(text, mean_visual(visual), mm_text or {}, conc, seed, words)
    systems.tune(men, dev)
    best = max(systems.chosen, key=lambda n: -np.inf if systems.chosen[n]["dev_rho"] is None
               else systems.chosen[n]["dev_rho"])
    log.info("grounding: best on MEN dev is %s (rho %.3f)", best, systems.chosen[best]["dev_rho"] or float("nan"))
    out = {"visual": f"mean of L2-normalised CNN-Mean over {', '.join(visual)}",
           "systems": {n: {**c["settings"], "dev_rho": c["dev_rho"]} for n, c in systems.chosen.items()},
           "best": best, "thresholds": list(THRESHOLDS), "test": {}, "by_concreteness": {}}
    for name, bench in benches.items():
        mask = test if bench is men else np.ones(len(bench), dtype=bool)
        row, cos = _cells(bench, systems, mask, n_boot, seed)
        out["test"][name] = row
        c = pair_concreteness(bench.pairs, conc)
        gold = gold_scores(bench)
        out["by_concreteness"][name] = {
            n: gain_by_quartile(gold[mask], cos[n][mask], cos["linguistic"][mask],
                                [x for x, m in zip(c, mask) if m], n_boot, seed)
            for n in dict.fromkeys(("eq1", best))}
    return out
