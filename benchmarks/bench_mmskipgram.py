"""MMSkip-gram's cost: text-only skip-gram vs MMSkip-gram A and B, same pair mode and settings, in one run.

    .venv/bin/python benchmarks/bench_mmskipgram.py --visual /tmp/fresh/checkpoints/extract-tuxpaint/mean.txt \
        /tmp/fresh/checkpoints/extract-openclipart/mean.txt --json docs/figures/bench_mmskipgram.json
    .venv/bin/python benchmarks/bench_mmskipgram.py --pairs host --epochs 1          # another pair mode, a quick look

Every system trains on the same encoded corpus (GCIDE by default; mmlightning's cache) with the same settings
(100 dims, window 5, 5 negatives, sample 1e-3, min_count 5, lr 0.025 -> 0.0001, one process: num_workers 0,
seed 1), each in its own child process, one after the other (text, B, A; `--rounds N` repeats the sequence and
reports the median). The visual vectors are the given files averaged where they share a word (the issue's
prototype: Tux Paint and OpenClipart CNN-Mean), matched to the vocabulary as written, else lower-cased.
Printed per system: the wall time of `trainer.fit` (Lightning start-up, the visual vectors' loading and PCA
included), the CPU time of the process, the time inside the visual steps, and each MMSkip-gram's ratio to
text-only (wall and CPU: on a shared machine the CPU ratio is the steadier one); the load average before and
after. Each variant trains with the settings `reproduce` uses (chosen on MEN dev: pipeline.config.DEV_CHOSEN).
Then, EXPLORATORY (one seed; the full sets, MEN's test pairs included, so not a result): the text part of
each system on WS353, MEN (all 3000 pairs) and SimLex-999, Spearman rho, pairs with an unknown word skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCHMARKS = ("ws353", "men", "simlex999")
SYSTEMS = ("text", "B", "A")


def average_visual(paths: list[str], out: Path) -> tuple[int, int]:
    """Write the mean of the files' vectors per word (word2vec text) to `out`; (words, dim)."""
    import numpy as np
    from mmlightning.vectors import KeyedVectors, load_vectors

    kvs = [load_vectors(p) for p in paths]
    words = list(dict.fromkeys(w for kv in kvs for w in kv.index_to_key))
    rows = [np.mean([kv.vectors[kv.key_to_index[w]] for kv in kvs if w in kv.key_to_index], 0) for w in words]
    KeyedVectors(words, np.stack(rows)).save_word2vec(out)
    return len(words), kvs[0].vector_size


def visual_settings(variant: str) -> dict:
    """SkipGram's visual_* arguments of a variant as `reproduce` trains it (the settings chosen on MEN dev)."""
    from mmlightning.pipeline.config import DEV_CHOSEN

    mm = DEV_CHOSEN[variant]
    return {"visual_weight": mm.weight, "visual_margin": mm.margin, "visual_negatives": mm.negatives,
            "visual_map_l2": mm.map_l2}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(args, system: str) -> dict:
    """Train one system in this process; its timings and (exploratory) scores."""
    import pytorch_lightning as pl
    import torch
    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.relatedness import score
    from mmlightning.text.data import SkipGramDataModule
    from mmlightning.text.skipgram import SkipGram

    torch.set_num_threads(1)
    visual_s = [0.0]
    step = SkipGram._visual_step

    def timed(self, *a, **k):  # time inside the visual steps (the whole of what MMSkip-gram adds per chunk)
        t = time.perf_counter()
        step(self, *a, **k)
        visual_s[0] += time.perf_counter() - t
    SkipGram._visual_step = timed
    visual = {} if system == "text" else {"visual_vectors": args.visual_file, "visual_variant": system,
                                          **visual_settings(system)}
    with tempfile.TemporaryDirectory() as out:
        dm = SkipGramDataModule(corpus=args.corpus, cache_dir=args.cache_dir, min_count=5, window=5, negative=5,
                                sample=1e-3, num_workers=0, seed=args.seed, pairs=args.pairs)
        dm.prepare_data()  # cached: not timed
        model = SkipGram(dim=args.dim, seed=args.seed, output_dir=None, compile=args.pairs == "host", **visual)
        trainer = pl.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=out)
        t, c = time.perf_counter(), _cpu_s()
        trainer.fit(model, datamodule=dm)
        wall, cpu = time.perf_counter() - t, _cpu_s() - c
    kv = model.word_vectors()
    res = {"system": system, "pairs": dm.pair_mode(), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "visual_step_s": round(visual_s[0], 2),
           "visual_words": 0 if model._visual is None else len(model._visual.vocab_ids)}
    for name in BENCHMARKS:
        r = score(kv, load_benchmark(name), oov="skip")
        res[name] = round(float(r.rho), 4)
        res[name + "_pairs"] = f"{r.pairs_used}/{r.pairs_total}"
    return res


def child(system: str) -> dict:
    cmd = [sys.executable, __file__, *sys.argv[1:], "--only", system]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{system} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(runs: list[dict]) -> dict:
    """Median timings per system over rounds, ratios to text-only, scores of the first round."""
    out = {}
    for s in SYSTEMS:
        mine = [r for r in runs if r["system"] == s]
        out[s] = {**mine[0], **{k: round(statistics.median(r[k] for r in mine), 2)
                                for k in ("wall_s", "cpu_s", "visual_step_s")}}
    for s in ("A", "B"):
        out[s]["ratio_wall"] = round(out[s]["wall_s"] / out["text"]["wall_s"], 3)
        out[s]["ratio_cpu"] = round(out[s]["cpu_s"] / out["text"]["cpu_s"], 3)
    return out


def report(args, summary: dict, load: tuple) -> None:
    print(f"corpus {args.corpus}, pairs {summary['text']['pairs']}, {args.epochs} epoch(s), dim {args.dim}, "
          f"visual vectors {args.visual_words} words x {args.visual_dim} (in the vocabulary: "
          f"{summary['B']['visual_words']}); load average before {load[0]} after {load[1]} on {os.cpu_count()} CPUs")
    print(f"{'system':<8}{'wall s':>9}{'cpu s':>9}{'visual s':>10}{'x wall':>8}{'x cpu':>7}   exploratory: "
          + "  ".join(f"{b} rho (pairs)" for b in BENCHMARKS))
    for s in SYSTEMS:
        r = summary[s]
        print(f"{s:<8}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['visual_step_s']:>10.1f}"
              f"{r.get('ratio_wall', 1):>8.2f}{r.get('ratio_cpu', 1):>7.2f}   "
              + "  ".join(f"{r[b]:.3f} ({r[b + '_pairs']})" for b in BENCHMARKS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="+", default=["gcide"])
    p.add_argument("--cache-dir", default=str(ROOT / "checkpoints" / "corpus_cache"))
    p.add_argument("--visual", nargs="+", default=[str(ROOT / "checkpoints" / f"extract-{s}" / "mean.txt")
                                                   for s in ("tuxpaint", "openclipart")],
                   help="visual vectors files (averaged where they share a word)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pairs", choices=["native", "host", "device"], default="native")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--rounds", type=int, default=1, help="repeat text, B, A this many times; medians are reported")
    p.add_argument("--json", help="write the record here")
    p.add_argument("--only", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--visual-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        print("RESULT " + json.dumps(run_one(args, args.only)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.visual_file = str(Path(tmp) / "visual.txt")
        args.visual_words, args.visual_dim = average_visual(args.visual, Path(args.visual_file))
        sys.argv += ["--visual-file", args.visual_file]
        from mmlightning.text.corpus import prepare_corpus
        prepare_corpus(args.corpus, args.cache_dir, 5)  # the cache, once, untimed
        before = tuple(round(x, 2) for x in os.getloadavg())
        runs = [child(s) for _ in range(args.rounds) for s in SYSTEMS]
        after = tuple(round(x, 2) for x in os.getloadavg())
    summary = summarise(runs)
    report(args, summary, (before, after))
    if args.json:
        write_record(args, summary, runs, before, after)


def write_record(args, summary: dict, runs: list[dict], before: tuple, after: tuple) -> None:
    """The run's record under its pair mode in `args.json` (the records of other pair modes are kept)."""
    from mmlightning.atomic import write_json

    path = Path(args.json)
    old = json.loads(path.read_text()) if path.is_file() else {}
    records = old.get("records", {}) if isinstance(old, dict) else {}
    records[summary["text"]["pairs"]] = {
        "command": "benchmarks/bench_mmskipgram.py " + " ".join(sys.argv[1:-2]), "corpus": args.corpus,
        "epochs": args.epochs, "rounds": args.rounds, "dim": args.dim, "seed": args.seed,
        "visual": {"files": args.visual, "words": args.visual_words, "dim": args.visual_dim},
        "load_average_before": before, "load_average_after": after, "cpus": os.cpu_count(),
        "settings": {v: visual_settings(v) for v in ("A", "B")},  # as reproduce trains them
        "systems": summary, "runs": runs}
    for rec in records.values():  # records made before the settings were chosen on dev used SkipGram's defaults
        rec.setdefault("settings", "margin 0.5, 20 visual negatives, weight 1 for A and B (before the dev choice)")
    write_json(path, {"what": "MMSkip-gram (A, B) vs text-only skip-gram: same pair mode and settings, one run each",
                      "quality_note": "EXPLORATORY: one seed, nothing chosen on a dev set or on MEN test; full sets, "
                                      "pairs with an unknown word skipped; the text part (input vectors) alone",
                      "records": records})


if __name__ == "__main__":
    main()
