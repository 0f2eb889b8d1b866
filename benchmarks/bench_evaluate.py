"""How long `evaluate` takes on one big word2vec text file: every shipped set against the 8 earlier sets,
and (with --gensim) against gensim, in one run.

    .venv/bin/python benchmarks/bench_evaluate.py                      # 100k x 300: all sets vs the 8 sets
    .venv/bin/python benchmarks/bench_evaluate.py --repeats 3          # best of 3 runs of each
    .venv/bin/python benchmarks/bench_evaluate.py --words 400000 --gensim   # the earlier gensim comparison

Baseline: the whole `evaluate` command (restricted loading: only set words are parsed; Table 1 with
1000-resample bootstrap CIs, Table 2, Markdown/JSON) on the 8 sets shipped before issue 24 (ws353 and
its two splits, men, simlex999, rg65, mturk287, rw). Measured: the same command with `--benchmarks all`
(13 relatedness sets + 4 categorisation sets, Ward clustering and purity CIs). The two alternate, after
one read of the file to warm the page cache, and the best of --repeats is kept; the budget is 2x.
With --gensim: gensim `KeyedVectors.load_word2vec_format` (parses every row) + `evaluate_word_pairs` on
WS353 and MEN (restrict_vocab = the whole file, OOV pairs skipped), as before.
The synthetic file reuses a pool of random rows (values do not matter for speed) and spreads every set's
words (those without a space: word2vec text cannot hold one) over the vocabulary, as in a real
frequency-sorted file, so every set is fully covered: the worst case for clustering time.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mmlightning import cli
from mmlightning.datasets import benchmark_vocabulary, load_benchmark

EARLIER_8 = ["ws353", "ws353_similarity", "ws353_relatedness", "men", "simlex999", "rg65", "mturk287", "rw"]
GENSIM_SETS = ["ws353", "men"]
BUDGET = 2.0


def make_file(path: Path, n_words: int, dim: int, seed: int = 0) -> Path:
    """Write (once) a word2vec text file of n_words x dim with every set's one-token words spread inside."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    pool = [" ".join(f"{x:.5f}" for x in row) for row in rng.normal(size=(4096, dim))]
    vocab = sorted(w for w in benchmark_vocabulary(["all"]) if w.split() == [w])
    words = [f"w{i:07d}" for i in range(n_words - len(vocab))]
    slots = sorted(rng.choice(n_words, len(vocab), replace=False).tolist())
    for s, w in zip(slots, vocab):
        words.insert(s, w)
    rows = rng.integers(0, len(pool), n_words)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{n_words} {dim}\n")
        for i in range(0, n_words, 10000):
            fh.write("".join(f"{w} {pool[r]}\n" for w, r in zip(words[i:i + 10000], rows[i:i + 10000])))
    os.replace(tmp, path)
    return path


def run_ours(path: Path, benchmarks: str, out_dir: str) -> float:
    t = time.perf_counter()
    code = cli.main(["evaluate", "--linguistic", str(path), "--benchmarks", benchmarks, "--out", out_dir])
    assert code in (0, None)
    return time.perf_counter() - t


def run_gensim(path: Path, tsv_dir: Path) -> tuple[float, dict]:
    from gensim.models import KeyedVectors as GKV

    t = time.perf_counter()
    kv = GKV.load_word2vec_format(str(path), binary=False)
    rhos = {}
    for name in GENSIM_SETS:
        tsv = tsv_dir / f"{name}.tsv"
        tsv.write_text("".join(f"{a}\t{b}\t{g}\n" for a, b, g in load_benchmark(name).pairs))
        _, (rho, _), _ = kv.evaluate_word_pairs(str(tsv), restrict_vocab=len(kv), case_insensitive=False)
        rhos[name] = rho
    return time.perf_counter() - t, rhos


def compare_sets(path: Path, repeats: int, tmp: Path) -> dict:
    """Best-of-`repeats` seconds of evaluate on the 8 earlier sets and on all sets, alternating."""
    with open(path, "rb") as fh:                       # warm the page cache for both alike
        while fh.read(1 << 24):
            pass
    times: dict[str, list[float]] = {"8 sets": [], "all sets": []}
    for _ in range(repeats):
        times["8 sets"].append(run_ours(path, f"[{', '.join(EARLIER_8)}]", str(tmp / "eight")))
        times["all sets"].append(run_ours(path, "all", str(tmp / "all")))
    return {k: min(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gensim", action="store_true", help="also time gensim on WS353 + MEN (the earlier baseline)")
    args = ap.parse_args()
    path = Path(tempfile.gettempdir()) / f"mmlightning_bench_all_{args.words}x{args.dim}.txt"
    t = time.perf_counter()
    make_file(path, args.words, args.dim)
    print(f"file: {path} ({path.stat().st_size / 1e9:.2f} GB, {args.words} words x {args.dim}; "
          f"ready in {time.perf_counter() - t:.1f} s); load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        best = compare_sets(path, args.repeats, Path(tmp))
        r = json.loads((Path(tmp) / "all" / "evaluation.json").read_text())
        ratio = best["all sets"] / best["8 sets"]
        print(f"evaluate, 8 earlier sets (baseline):           {best['8 sets']:7.2f} s")
        print(f"evaluate, all {len(r['table1'])} + {len(r['categorisation'])} sets (--benchmarks all): "
              f"{best['all sets']:7.2f} s")
        print(f"ratio all / 8: {ratio:.2f}x (budget {BUDGET:.1f}x: {'within' if ratio <= BUDGET else 'OVER'}); "
              f"best of {args.repeats}; load average {os.getloadavg()[0]:.2f}")
        if args.gensim:
            ours = best["8 sets"]
            base, rhos = run_gensim(path, Path(tmp))
            print(f"gensim (load_word2vec_format + evaluate_word_pairs x{len(GENSIM_SETS)}): {base:7.2f} s")
            t1 = r["table1"]
            for name in GENSIM_SETS:
                print(f"  {name}: rho ours {t1[name]['full']['linguistic']['rho']:.6f}  gensim {rhos[name]:.6f}")
            print(f"gensim / ours (8 sets): {base / ours:.1f}x")


if __name__ == "__main__":
    main()
