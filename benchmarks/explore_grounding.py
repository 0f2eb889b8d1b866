"""EXPLORATORY (not a result, nothing here is chosen): how far imagined visual vectors and a concreteness
gate move Eq. 1 on WS353, SimLex-999 and MEN, in full and by concreteness quartile of the pairs.

    python benchmarks/explore_grounding.py /tmp/fresh/checkpoints            # the embedded default's run
    python benchmarks/explore_grounding.py CHECKPOINTS --sources both --mlp   # + the MLP map's held-out fit

Reads <checkpoints>[/latest]/skipgram/vectors.txt and extract-{tuxpaint,openclipart}/mean.txt (CNN-Mean).
Visual sources: each one alone, and "both" (a word's CNN-Mean vectors averaged over the sources it has
images in: one EfficientNet-Lite0 feature space). Systems, Eq. 1 at alpha 0.5 with a zero visual part for
words without one (the paper's rule), for each source:
  text                       the skip-gram vectors alone
  eq1                        Eq. 1 with CNN-Mean (the paper)
  eq1+imagined               pictured words keep their vectors, every other benchmark word gets its imagined
                             one (ridge map, strength by inner CV on the pictured words: evaluation.imagined)
  eq1 imagined-all           every word's visual part is imagined; pictured words get their cross-fitted
                             prediction (5 seeded folds: their own images never enter it)
  eq1 gate>=t                only words rated >= t (Brysbaert et al. 2014; unrated words kept) keep images
  eq1+imagined gate>=t       the imagined visual part, gated the same way
Every threshold t is shown; none is picked. MEN is scored on all 3,000 pairs (dev and test together): a
later choice of anything (the gate's t, imagined or not) belongs on MEN dev by the protocol, never here.
rho [95% bootstrap CI] over the pairs whose two words have a text vector; differences are paired
bootstraps over the same pairs; quartiles are each benchmark's own (rated pairs), unrated pairs apart.
Writes the printed numbers as JSON (default docs/figures/explore_grounding.json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from mmlightning.datasets import load_benchmark
from mmlightning.evaluation.concreteness import gain_by_quartile, gate_visual, load_concreteness, pair_concreteness
from mmlightning.evaluation.imagined import imagine_with_info
from mmlightning.evaluation.multisource import Spec, prepare_benchmark, spec_cosines
from mmlightning.evaluation.relatedness import gold_scores, pair_cosines, paired_difference, score_cosines
from mmlightning.vectors import KeyedVectors, load_vectors

BENCHMARKS = ("ws353", "simlex999", "men")
SOURCES = ("tuxpaint", "openclipart")
THRESHOLDS = (3.0, 3.5, 4.0, 4.5)
ALPHA = 0.5
ROOT = Path(__file__).resolve().parents[1]


def _file(root: Path, *parts: str) -> Path:
    for base in (root / "latest", root):
        if (base.joinpath(*parts)).is_file():
            return base.joinpath(*parts)
    raise SystemExit(f"{root}: no {'/'.join(parts)} (nor under latest/)")


def average_sources(kvs: list[KeyedVectors]) -> KeyedVectors:
    """Per word, the mean of its vectors over the sources that have it (first-seen word order)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for kv in kvs:
        for w, v in zip(kv.index_to_key, kv.vectors):
            sums[w] = sums.get(w, 0) + v.astype(np.float64)
            counts[w] = counts.get(w, 0) + 1
    words = list(sums)
    return KeyedVectors(words, np.stack([sums[w] / counts[w] for w in words]))


def visual_systems(text, visual, vocab, conc, seed: int) -> tuple[dict, dict]:
    """name -> visual KeyedVectors for every system of one source (None: text alone), + imagined info."""
    real, info_real = imagine_with_info(text, visual, words=vocab, own="real", seed=seed)
    allim, info_all = imagine_with_info(text, visual, words=vocab, own="crossfit", seed=seed)
    systems = {"text": None, "eq1": visual, "eq1+imagined": real, "eq1 imagined-all": allim}
    for t in THRESHOLDS:
        systems[f"eq1 gate>={t}"] = gate_visual(visual, conc, t)
    for t in THRESHOLDS:
        systems[f"eq1+imagined gate>={t}"] = gate_visual(real, conc, t)
    info = {k: v for k, v in info_all.items() if k not in ("imagined", "own")}
    info["words_imagined_in_eq1+imagined"] = len(info_real["imagined"])
    return systems, info


def cosines(bench, text, visual) -> np.ndarray:
    """(P,) cosines, NaN where a word has no text vector: text alone, or Eq. 1 at ALPHA."""
    if visual is None:
        return pair_cosines(text, bench.pairs, "skip")[0]
    data = prepare_benchmark(bench, text, {"v": visual})
    return spec_cosines(data, Spec(("v",)), [ALPHA], "zero")[0]


def score_source(text, systems: dict, conc, n_boot: int, seed: int) -> dict:
    """benchmark -> system -> rho, CI, differences vs text and vs eq1, gains by concreteness quartile."""
    out = {}
    for name in BENCHMARKS:
        bench = load_benchmark(name)
        gold = gold_scores(bench)
        pc = pair_concreteness(bench.pairs, conc)
        cos = {s: cosines(bench, text, v) for s, v in systems.items()}
        sc = {s: score_cosines(bench, gold, c, np.isfinite(c), n_boot=n_boot, seed=seed) for s, c in cos.items()}
        row = {}
        for s, c in cos.items():
            cell = sc[s].to_dict()
            v = systems[s]
            cell["words_with_visual"] = 0 if v is None else sum(1 for w in bench.words() if v.lookup(w) is not None)
            if s != "text":
                cell["vs_text"] = paired_difference(sc[s], sc["text"], n_boot, seed).to_dict()
                cell["by_quartile_vs_text"] = gain_by_quartile(gold, c, cos["text"], pc, n_boot, seed)
            if s not in ("text", "eq1"):
                cell["vs_eq1"] = paired_difference(sc[s], sc["eq1"], n_boot, seed).to_dict()
            row[s] = cell
        out[name] = row
    return out


def _fmt(x, ci=None, sign=False) -> str:
    if x is None:
        return "n/a"
    s = f"{x:+.3f}" if sign else f"{x:.3f}"
    if ci:
        s += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if sign else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        if sign and (ci[0] > 0 or ci[1] < 0):
            s += "*"
    return s


def print_source(src: str, res: dict, info: dict) -> None:
    print(f"\n=== visual source: {src} (imagined map: {info['training_words']} pictured words, "
          f"ridge c {info['full_strength']:.3g}, held-out cosine {info['heldout_cosine']:.3f}"
          + (f"; MLP held-out cosine {info['mlp_heldout_cosine']:.3f}" if "mlp_heldout_cosine" in info else "")
          + ") ===", flush=True)
    for name, row in res.items():
        print(f"\n{name}: rho [CI] pairs | minus text [paired CI] | minus eq1 (* CI excludes 0)")
        for s, c in row.items():
            vt = c.get("vs_text", {})
            ve = c.get("vs_eq1", {})
            print(f"  {s:26s} {_fmt(c['rho'], c['ci95'])} {c['pairs_used']}/{c['pairs_total']}"
                  f" | {_fmt(vt.get('diff'), vt.get('ci95'), True) if vt else '':30s}"
                  f" | {_fmt(ve.get('diff'), ve.get('ci95'), True) if ve else ''}")
        q = row["eq1"]["by_quartile_vs_text"]
        print(f"  minus text by concreteness quartile (edges {', '.join(f'{e:.2f}' for e in q['edges'])}):")
        for s, c in row.items():
            if s == "text":
                continue
            g = c["by_quartile_vs_text"]
            cells = [f"{k} {_fmt(g[k]['diff'], g[k]['ci95'], True)} n={g[k]['pairs_used']}"
                     for k in ("Q1", "Q2", "Q3", "Q4", "unrated")]
            print(f"    {s:26s} " + " | ".join(cells))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path)
    p.add_argument("--sources", nargs="+", default=[*SOURCES, "both"], choices=[*SOURCES, "both"])
    p.add_argument("--n_boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mlp", action="store_true", help="also fit the MLP map (slow) and report its held-out cosine")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "explore_grounding.json")
    a = p.parse_args(argv)
    t0 = time.time()
    vocab = sorted(set().union(*(load_benchmark(b).words() for b in BENCHMARKS)))
    files = {"text": _file(a.checkpoints, "skipgram", "vectors.txt"),
             **{s: _file(a.checkpoints, f"extract-{s}", "mean.txt") for s in SOURCES}}
    text = load_vectors(files["text"], restrict_to=vocab)
    vis = {s: load_vectors(files[s]) for s in SOURCES}
    vis["both"] = average_sources([vis[s] for s in SOURCES])
    conc = load_concreteness()
    record = {"exploratory": True, "note": "nothing is chosen here; MEN is all 3,000 pairs (dev + test)",
              "files": {k: str(v) for k, v in files.items()}, "alpha": ALPHA, "thresholds": list(THRESHOLDS),
              "n_boot": a.n_boot, "seed": a.seed, "commit": _commit(), "sources": {}}
    for src in a.sources:
        systems, info = visual_systems(text, vis[src], vocab, conc, a.seed)
        if a.mlp:
            info["mlp_heldout_cosine"] = imagine_with_info(text, vis[src], words=[], method="mlp",
                                                           inner_k=3, seed=a.seed)[1]["heldout_cosine"]
        res = score_source(text, systems, conc, a.n_boot, a.seed)
        print_source(src, res, info)
        record["sources"][src] = {"imagined": info, "results": res}
    record["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwrote {a.out} ({record['seconds']} s)")
    return record


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
