"""The `evaluate` command: linguistic, visual and multi-modal vectors on relatedness and categorisation sets.

    python -m mmlightning evaluate --linguistic text.txt \\
        --visual '{"tuxpaint/cnn-mean": "ckpt/tux/mean.txt", "tuxpaint/cnn-max": "ckpt/tux/max.txt"}' \\
        --alpha 0.5 --benchmarks '[ws353, men]' --oov skip --out reports
    python -m mmlightning evaluate --linguistic text.txt --benchmarks all    # every shipped set
    python -m mmlightning evaluate --linguistic text.txt --visual.tuxpaint/cnn-mean mean.txt   # same dict
    python -m mmlightning evaluate --config configs/evaluate.yaml
    python -m mmlightning evaluate --linguistic mine.kv --unsafe_gensim_pickle true  # unpickles: only for files you trust

    # from Python (the `reproduce` command does this):
    result = evaluate_systems(ling_kv, {"tuxpaint/cnn-mean": kv1, "openclipart/cnn-mean": kv2})
    paths = report.write_reports(result, "reports")  # mmlightning.evaluation.report: .md / .json / figure4_alpha.png

Vectors files: word2vec text or binary, or a `.npy` matrix with its `.vocab.txt` word list beside it
(`mmlightning.vectors`); gensim's native `.kv` is a pickle, read only with `--unsafe_gensim_pickle true`.
Visual systems are named `<source>/<method>` (e.g. `tuxpaint/bovw`); Table 1 groups columns by them.
Rows: each benchmark x {full, relevant:<source> for each source, relevant:all when several sources}.
Categorisation sets (`ap`, `battig`, `bless`, `esslli2008_verbs`, or a category,word CSV) are scored by
`mmlightning.evaluation.categorisation` (Ward clusters, purity, bootstrap CI over words) for every system.
A source covers a word when every one of its methods has a vector for it (lookup: as given, then
lower-cased); relevant:all needs both words covered by every source (the paper's "Relevant").

Multi-modal vectors (Eq. 1, `mmlightning.evaluation.fusion`) are built per benchmark over that benchmark's words
that have a linguistic vector (the centring vocabulary), so a benchmark's scores do not depend on which
other benchmarks run with it; words without images get a zero visual part (or, with
`missing_visual="text"`, such pairs are scored by their text cosine). A pair is usable by a multi-modal
system exactly when it is usable by the linguistic one.

JSON schema (`evaluation.json`, format "mmlightning-evaluation/1"):
    settings:  {alpha, oov, missing_visual, centring, n_boot, seed, ci_level, sweep_alphas, inputs}
    systems:   {"linguistic" | "visual:<src>/<m>" | "multimodal:<src>/<m>": {kind, source, method, dim, words}}
    sources:   {"<src>": ["<m>", ...]}
    table1:    {bench: {subset: {system: {rho, ci95: [lo, hi], pairs_used, pairs_total, oov,
                                          vs_linguistic (multimodal only): {diff, ci95, pairs}}}}}
    alpha_sweep: {alphas: [0.0, 0.05, ..., 1.0], bench: {subset: {"<src>/<m>": [rho per alpha]}}}
    table2:    {bench: {system: {best: [pair x5], worst: [pair x5]}}}, a pair being
               {word1, word2, gold, gold01, cosine, error = |cosine - gold01|}, gold01 = gold rescaled
               to [0, 1] by the benchmark's min and max
    table2_system: the system the Markdown Table 2 shows
    categorisation: {set: {system: {purity, ci95, words_used, words_total, categories, oov_words,
                                    vs_linguistic (multimodal only): {diff, ci95, words}}}}
                (settings.clustering names the method)
    tuned (only with `protocol`): the dev/test section, `mmlightning.evaluation.protocol.run_protocol`
rho, diff and CI values are null where undefined (fewer than 3 usable pairs or a constant side).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence, Union

import numpy as np

from mmlightning.datasets import PAPER_BENCHMARKS, Benchmark, CategorySet, expand_names, load_set
from mmlightning.errors import UserError
from mmlightning.evaluation.categorisation import METHOD as CLUSTERING, categorisation_systems
from mmlightning.evaluation.fusion import alpha_grid
from mmlightning.evaluation.multisource import bench_cosines
from mmlightning.evaluation.relatedness import (
    OOV_POLICIES, Score, gold_scores, pair_cosines, paired_difference, relevant_mask, score_cosines, spearman, subset,
)
from mmlightning.vectors import KeyedVectors, load_vectors

FORMAT = "mmlightning-evaluation/1"
DEFAULT_BENCHMARKS = list(PAPER_BENCHMARKS)
LINGUISTIC = "linguistic"


def split_name(name: str) -> tuple[str, str]:
    """'tuxpaint/cnn-mean' -> ('tuxpaint', 'cnn-mean'); a name without '/' is its own source, method 'vectors'."""
    source, sep, method = name.partition("/")
    if not source or (sep and not method):
        raise UserError(f"visual system name {name!r}: expected '<source>/<method>', e.g. 'tuxpaint/cnn-mean'")
    return (source, method) if sep else (name, "vectors")


def resolve_sets(benchmarks) -> list[Benchmark | CategorySet]:
    """Benchmark / CategorySet objects from names, files or objects; "all" is every shipped set."""
    items = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks or DEFAULT_BENCHMARKS)
    out: list[Benchmark | CategorySet] = []
    for b in items:
        out += [b] if isinstance(b, (Benchmark, CategorySet)) else [load_set(n) for n in expand_names([b])]
    return out


# ---------------------------------------------------------------- the library entry point

def evaluate_systems(linguistic: KeyedVectors, visual: Mapping[str, KeyedVectors] | None = None,
                     benchmarks: Sequence[Benchmark | CategorySet | str] | str | None = None, alpha: float = 0.5,
                     oov: str = "skip", missing_visual: str = "zero", centring: bool = True,
                     n_boot: int = 1000, seed: int = 0, sweep_step: float = 0.05,
                     table2_system: str | None = None, inputs: dict | None = None, relevant: bool = True) -> dict:
    """Score linguistic, each visual and each multi-modal system: Table 1, the alpha sweep, Table 2 and
    the purity of every categorisation set among `benchmarks`.

    Returns the JSON-ready dict described in the module docstring. `relevant=False` scores the full
    sets only (no relevant:<source> subsets), as a suite of many sets needs.
    """
    visual = dict(visual or {})
    if oov not in OOV_POLICIES:
        raise UserError(f"oov {oov!r} is not one of {', '.join(OOV_POLICIES)}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha {alpha} is outside [0, 1]")
    if missing_visual not in ("zero", "text"):
        raise UserError(f"missing_visual {missing_visual!r} is not one of zero, text")
    sets = resolve_sets(benchmarks)
    benches = [b for b in sets if isinstance(b, Benchmark)]
    sources: dict[str, list[str]] = {}
    for name in visual:
        src, method = split_name(name)
        sources.setdefault(src, []).append(method)
    if "all" in sources and len(sources) > 1:
        raise UserError("visual source name 'all' is reserved for the subset covered by every source; rename it")
    alphas = alpha_grid(sweep_step)
    systems = {LINGUISTIC: {"kind": "linguistic", "source": None, "method": None,
                            "dim": linguistic.vector_size, "words": len(linguistic)}}
    for name, kv in visual.items():
        src, method = split_name(name)
        systems[f"visual:{name}"] = {"kind": "visual", "source": src, "method": method,
                                     "dim": kv.vector_size, "words": len(kv)}
    for name, kv in visual.items():
        src, method = split_name(name)
        systems[f"multimodal:{name}"] = {"kind": "multimodal", "source": src, "method": method,
                                         "dim": linguistic.vector_size + kv.vector_size, "alpha": alpha}
    if table2_system is None:
        table2_system = next((s for s in systems if s.startswith("multimodal:")), LINGUISTIC)
    elif table2_system not in systems:
        raise UserError(f"table2_system {table2_system!r} is not one of {', '.join(systems)}")

    result = {"format": FORMAT,
              "settings": {"alpha": alpha, "oov": oov, "missing_visual": missing_visual, "centring": centring,
                           "n_boot": n_boot, "seed": seed, "ci_level": 0.95, "sweep_alphas": alphas,
                           "clustering": CLUSTERING, "inputs": inputs or {}},
              "systems": systems, "sources": sources, "table1": {}, "alpha_sweep": {"alphas": alphas},
              "table2": {}, "table2_system": table2_system, "categorisation": {}}
    for bench in benches:
        t1, sweep, t2 = _evaluate_benchmark(bench, linguistic, visual, alpha, alphas, oov,
                                            missing_visual, centring, n_boot, seed, relevant)
        result["table1"][bench.name] = t1
        result["alpha_sweep"][bench.name] = sweep
        result["table2"][bench.name] = t2
    for cset in (s for s in sets if isinstance(s, CategorySet)):
        result["categorisation"][cset.name] = categorisation_systems(linguistic, visual, cset, alpha, centring,
                                                                     n_boot, seed)
    return result


def _evaluate_benchmark(bench, linguistic, visual, alpha, alphas, oov, missing_visual, centring,
                        n_boot, seed, relevant=True):
    gold = gold_scores(bench)                                          # (P,)
    full: dict[str, Score] = {LINGUISTIC: score_cosines(bench, gold, *pair_cosines(linguistic, bench.pairs, oov),
                                                        oov=oov, n_boot=0)}
    sweep_cos: dict[str, tuple] = {}                   # name -> ((A, P) fused cosines per alpha, (P,) used)
    for name, kv in visual.items():
        full[f"visual:{name}"] = score_cosines(bench, gold, *pair_cosines(kv, bench.pairs, oov), oov=oov, n_boot=0)
        cos_a, used = bench_cosines(bench, linguistic, kv, [alpha, *alphas], missing_visual, centring)
        if oov == "zero":                              # a pair with a word lacking a text vector scores 0
            cos_a[:, ~used] = 0.0
            used = np.ones(len(bench), dtype=bool)
        full[f"multimodal:{name}"] = score_cosines(bench, gold, cos_a[0], used, oov=oov, n_boot=0)
        sweep_cos[name] = (cos_a[1:], used)

    masks = {"full": np.ones(len(bench), dtype=bool)}
    by_source: dict[str, list[KeyedVectors]] = {}
    for name, kv in visual.items():
        by_source.setdefault(split_name(name)[0], []).append(kv)
    covered = {src: _covered_words(bench, kvs) for src, kvs in by_source.items()} if relevant else {}
    for src, words in covered.items():
        masks[f"relevant:{src}"] = relevant_mask(bench, words)
    if len(covered) > 1:
        masks["relevant:all"] = relevant_mask(bench, *covered.values())

    table1, sweep = {}, {}
    for sub, mask in masks.items():
        ling = subset(full[LINGUISTIC], mask, n_boot, seed)
        row = {LINGUISTIC: ling.to_dict()}
        for system, s in full.items():
            if system == LINGUISTIC:
                continue
            cell = subset(s, mask, n_boot, seed)
            row[system] = cell.to_dict()
            if system.startswith("multimodal:"):
                row[system]["vs_linguistic"] = paired_difference(cell, ling, n_boot, seed).to_dict()
        table1[sub] = row
        sweep[sub] = {name: [spearman(gold[mask & used], c[mask & used]) for c in cos]
                      for name, (cos, used) in sweep_cos.items()}
    table2 = {system: best_worst_pairs(bench, s) for system, s in full.items()}
    return table1, sweep, table2


def _covered_words(bench: Benchmark, kvs: list[KeyedVectors]) -> set[str]:
    """Benchmark words (as written) that every one of `kvs` has a vector for."""
    return {w for w in bench.words() if all(kv.lookup(w) is not None for kv in kvs)}


def best_worst_pairs(bench: Benchmark, s: Score, k: int = 5) -> dict:
    """Table 2: the k used pairs whose cosine is closest to / farthest from the gold rescaled to [0, 1]."""
    gold = s.gold
    span = gold.max() - gold.min()
    gold01 = (gold - gold.min()) / span if span > 0 else np.zeros_like(gold)
    idx = np.flatnonzero(s.used)
    err = np.abs(s.cosines[idx] - gold01[idx])
    order = idx[np.lexsort((idx, err))]                                # by error, then file order

    def row(i):
        a, b, g = bench.pairs[i]
        return {"word1": a, "word2": b, "gold": g, "gold01": float(gold01[i]), "cosine": float(s.cosines[i]),
                "error": float(abs(s.cosines[i] - gold01[i]))}
    return {"best": [row(i) for i in order[:k]], "worst": [row(i) for i in order[::-1][:k]]}


# ---------------------------------------------------------------- loading

def load_inputs(linguistic: str, visual: Mapping[str, str], benchmarks: Sequence[str] | str,
                unsafe_gensim_pickle: bool = False):
    """Load the sets (benchmarks and categorisation sets; "all" is every shipped one), then only their
    words from each vectors file; UserError on bad input.

    `unsafe_gensim_pickle`: also read gensim's native (pickled) files; unpickles: only for files you trust.
    """
    benches = resolve_sets(benchmarks)
    words = set().union(*(b.words() for b in benches))
    names = ", ".join(b.name for b in benches)
    ling = load_vectors(linguistic, restrict_to=words, unsafe_gensim_pickle=unsafe_gensim_pickle)
    if len(ling) == 0:
        raise UserError(f"{linguistic}: no word in common with the benchmarks ({names})")
    vis, dims = {}, {}
    for name, path in visual.items():
        _, method = split_name(name)
        kv = load_vectors(path, restrict_to=words, unsafe_gensim_pickle=unsafe_gensim_pickle)
        if len(kv) == 0:
            raise UserError(f"{path}: no word in common with the benchmarks ({names}); is it the right file for {name}?")
        if method in dims and dims[method][1] != kv.vector_size:
            other, d = dims[method]
            raise UserError(f"{path}:1: {name} has dimension {kv.vector_size} but {other} (same method "
                            f"{method!r}) has {d}; the files of one method must come from one backbone")
        dims.setdefault(method, (path, kv.vector_size))
        vis[name] = kv
    return ling, vis, benches


# ---------------------------------------------------------------- the command

def evaluate(linguistic: Optional[str] = None, visual: Optional[dict[str, str]] = None, alpha: float = 0.5,
             benchmarks: Optional[Union[list[str], str]] = None, oov: Literal["skip", "zero"] = "skip",
             missing_visual: Literal["zero", "text"] = "zero", centring: bool = True, n_boot: int = 1000,
             seed: int = 0, table2_system: Optional[str] = None, out: str = "reports", protocol: bool = False,
             aggregates: Optional[dict[str, str]] = None, source_fusion: Optional[list[str]] = None,
             dispersion_gate: bool = True, unsafe_gensim_pickle: bool = False) -> dict:
    """Score linguistic, visual and multi-modal vectors on relatedness and categorisation sets (Table 1,
    Figure 4, Table 2, and one table of every set x every system).

    Args:
        linguistic: the text vectors: word2vec text/binary, or a .npy matrix with its .vocab.txt word list
            beside it (gensim's native .kv only with unsafe_gensim_pickle).
        visual: visual vector files by system name '<source>/<method>', e.g. {"tuxpaint/cnn-mean": "mean.txt"}.
        alpha: weight of the linguistic part in Eq. 1 (1 - alpha for the visual part).
        benchmarks: shipped set names or files, or "all" (every shipped set); default the first five. Relatedness:
            ws353, ws353_similarity, ws353_relatedness, men, simlex999, rg65, mturk287, rw, simverb3500, mturk771,
            mc30, yp130, semeval2017, or a file of word1 word2 score lines. Categorisation (purity of Ward
            clusters): ap, battig, bless, esslli2008_verbs, or a CSV with columns category, word.
        oov: a pair with a word missing from a system is left out ("skip") or scored as cosine 0 ("zero").
        missing_visual: multi-modal score of a pair with an imageless word: zero visual part ("zero", Eq. 1) or the text cosine ("text").
        centring: subtract each modality's mean vector before L2 normalisation (Eq. 1; off only for ablations).
        n_boot: bootstrap resamples for the 95% confidence intervals (0 disables them).
        seed: seed of the bootstrap resampling.
        table2_system: system shown in the Markdown Table 2 (default: the first multi-modal one).
        out: output directory for evaluation.md, evaluation.json and figure4_alpha.png.
        protocol: also tune on MEN dev and report on MEN test + test-only benchmarks (section "tuned").
        aggregates: aggregates.pt files by source (image dispersion for the protocol's dispersion gate).
        source_fusion: how the protocol fuses several sources per word: average and/or concat (default both).
        dispersion_gate: let the protocol try gating dispersed words' visual part (needs aggregates).
        unsafe_gensim_pickle: also read vectors in gensim's native format (.kv / .model, a Python pickle);
            unpickles: only for files you trust (a pickle can run any code). Off: such a file is refused unread.
    """
    from mmlightning.evaluation.report import render_markdown, write_reports

    if not linguistic:
        raise UserError("is required (the text vectors: word2vec text/binary or .npy + .vocab.txt)", argument="linguistic")
    visual = dict(visual or {})
    benchmarks = benchmarks or DEFAULT_BENCHMARKS
    ling, vis, benches = load_inputs(linguistic, visual, benchmarks, unsafe_gensim_pickle)
    Path(out).mkdir(parents=True, exist_ok=True)  # an unusable --out fails now (one line), not after the bootstrap
    result = evaluate_systems(ling, vis, benches, alpha=alpha, oov=oov, missing_visual=missing_visual,
                              centring=centring, n_boot=n_boot, seed=seed, table2_system=table2_system,
                              inputs={"linguistic": str(linguistic), "visual": {k: str(v) for k, v in visual.items()}})
    if protocol:
        from mmlightning.evaluation.protocol import run_protocol_files

        result["tuned"] = run_protocol_files(linguistic, visual, aggregates, source_fusion, dispersion_gate, n_boot, seed,
                                             unsafe_gensim_pickle=unsafe_gensim_pickle)
    paths = write_reports(result, out)
    print(render_markdown(result, tables=("suite", "table1", "diff", "categorisation", "tuned")))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result

