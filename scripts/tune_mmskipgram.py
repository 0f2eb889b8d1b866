"""Choose MMSkip-gram's settings on MEN dev: train a grid of variants / weights / margins / negatives / epochs.

    .venv/bin/python scripts/tune_mmskipgram.py --grid stage1     # after `make reproduce` (needs its outputs)
    .venv/bin/python scripts/tune_mmskipgram.py --grid stage2 --base '{"A": {...}, "B": {...}}'

Every setting trains skip-gram + the visual objective on the embedded default's corpus with the `skipgram:`
settings of configs/reproduce.yaml and the visual vectors of the reproduce `mmskipgram` stage (the mean of the
sources' L2-normalised CNN-Mean). Each is scored as the grounding section scores it (evaluation.grounding:
`X` alone and `X+eq1` with alpha chosen on dev), and ONLY the MEN dev rho is recorded: the test pairs and the
test-only sets are not looked at here; the chosen settings are reported on test by `make reproduce`.
Results are appended to docs/figures/mmskipgram_dev_grid.json (a setting already there is not retrained). A
setting without `visual_variant` is a text-only control (e.g. {"epochs": 10}: what more epochs alone do). Per
variant, the setting chosen is the best among those trained for the skip-gram block's epochs (`chosen`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER = {"A": {"visual_negatives": 20, "visual_margin": 0.5}, "B": {"visual_negatives": 5, "visual_margin": 0.5}}
GRIDS = {
    # the paper's k and margin per variant; the weight is ours (the paper adds the two terms: weight 1)
    "stage1": [{"visual_variant": v, **PAPER[v], "visual_weight": w} for v in ("A", "B") for w in (0.3, 1.0, 3.0)],
}


def name_of(s: dict) -> str:
    parts = [s.get("visual_variant") or "text"]
    for key, short in (("visual_weight", "w"), ("visual_margin", "m"), ("visual_negatives", "k"), ("epochs", "e"),
                       ("min_concreteness", "c"), ("visual_map_l2", "l2")):
        if key in s:
            parts.append(f"{short}{s[key]:g}")
    return "-".join(parts)


def concrete_only(visual_file: Path, threshold: float, out: Path) -> Path:
    """The visual vectors of words rated at least `threshold` (Brysbaert et al. 2014; unrated words dropped),
    as the reproduce stage's `min_concreteness` makes them."""
    from mmlightning.evaluation.concreteness import gate_visual, load_concreteness
    from mmlightning.vectors import load_vectors

    gate_visual(load_vectors(str(visual_file)), load_concreteness(), threshold, unrated="drop").save_word2vec(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", default="stage1", help="a named grid (stage1) or a JSON list of settings")
    ap.add_argument("--config", default="configs/reproduce.yaml")
    ap.add_argument("--checkpoints", default="checkpoints", help="the reproduce run's checkpoints folder")
    ap.add_argument("--work", default="/tmp/tune_mmskipgram", help="where the grid's vectors are trained")
    ap.add_argument("--out", default="docs/figures/mmskipgram_dev_grid.json")
    args = ap.parse_args()

    import yaml

    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.grounding import TEST_SETS, run_grounding
    from mmlightning.pipeline.config import ReproduceConfig
    from mmlightning.text.train import train_skipgram
    from mmlightning.vectors import load_vectors

    cfg = ReproduceConfig(**{k: v for k, v in yaml.safe_load(Path(args.config).read_text()).items()})
    ck = Path(args.checkpoints) / "latest"
    visual_file = ck / "mmskipgram" / "visual_mean.txt"
    grid = GRIDS[args.grid] if args.grid in GRIDS else json.loads(args.grid)
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    record.update({"config": args.config, "skipgram": asdict(cfg.skipgram), "corpus": cfg.corpus, "seed": cfg.seed,
                   "criterion": "MEN dev rho (2000 seeded pairs), the better of X alone and X+eq1 (alpha on dev)"})
    words = set().union(*(load_benchmark(b).words() for b in ("men", *TEST_SETS)))
    means = {p.name.split("-", 1)[1]: load_vectors(str(p / "mean.txt")) for p in sorted(ck.glob("extract-*"))}
    text = load_vectors(str(ck / "skipgram" / "vectors.txt"), restrict_to=words)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for setting in grid:
        name = name_of(setting)
        if name in record["runs"]:
            continue
        s = dict(setting)
        vis = visual_file
        if "min_concreteness" in s:
            vis = concrete_only(visual_file, s.pop("min_concreteness"), work / f"visual-{name}.txt")
        text_only = s.pop("visual_variant", None) is None   # a text-only control (e.g. more epochs)
        if not text_only:
            s["visual_variant"] = setting["visual_variant"]
        sg = replace(cfg.skipgram, visual_vectors=None if text_only else str(vis), progress_bar=False, relatedness=[],
                     **s)
        t0 = time.perf_counter()
        vectors = train_skipgram(sg, work / name, corpus=cfg.corpus, seed=cfg.seed,
                                 cache_dir=str(Path(args.checkpoints) / "corpus_cache"))
        seconds = time.perf_counter() - t0
        g = run_grounding(text, means, {name: load_vectors(str(vectors), restrict_to=words)}, n_boot=10, seed=cfg.seed)
        dev = {k: g["systems"][k]["dev_rho"] for k in (name, f"{name}+eq1", "eq1", "text-centred")}
        record["runs"][name] = {"settings": setting, "dev": dev, "score": max(dev[name], dev[f"{name}+eq1"]),
                                "alpha_eq1": g["systems"][f"{name}+eq1"]["alpha"], "train_seconds": round(seconds, 1)}
        print(f"{name}: MEN dev {dev[name]:.4f} alone, {dev[name + '+eq1']:.4f} +eq1 ({seconds:.0f} s)", flush=True)
        out.write_text(json.dumps(record, indent=1) + "\n")
    epochs = cfg.skipgram.epochs
    record["chosen_rule"] = (f"per variant, the best score among the settings trained for the text model's {epochs} "
                             "epochs (more epochs lift text as much: see the text-only controls)")
    record["chosen"] = {}
    for v in ("A", "B"):
        runs = {n: r for n, r in record["runs"].items() if r["settings"].get("visual_variant") == v
                and r["settings"].get("epochs", epochs) == epochs}
        if runs:
            best = max(runs, key=lambda n: runs[n]["score"])
            record["chosen"][v] = best
            print(f"chosen {v} on MEN dev: {best} ({runs[best]['score']:.4f})")
    out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
