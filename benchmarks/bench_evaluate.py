"""How long `evaluate` takes on a 400k-word x 300-dim word2vec text file, against gensim, in one run.

    .venv/bin/python benchmarks/bench_evaluate.py                  # 400k x 300 (file cached in /tmp)
    .venv/bin/python benchmarks/bench_evaluate.py --words 50000    # quicker

Baseline: gensim `KeyedVectors.load_word2vec_format` (parses every row) + `evaluate_word_pairs` on
WS353 and MEN (restrict_vocab = the whole file, OOV pairs skipped). Ours: the whole `evaluate` command
(restricted loading: only benchmark rows are parsed; Table 1 with 1000-resample bootstrap CIs, alpha
sweep, Table 2, Markdown/JSON/PNG). Both run in this process after imports; the ratio is printed.
The synthetic file reuses a pool of random rows (values do not matter for speed) and spreads the
benchmark words over the whole vocabulary, as in a real frequency-sorted file.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mmlightning import cli
from mmlightning.datasets import benchmark_vocabulary, load_benchmark

BENCHES = ["ws353", "men"]


def make_file(path: Path, n_words: int, dim: int, seed: int = 0) -> Path:
    """Write (once) a word2vec text file of n_words x dim with the benchmark words spread inside."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    pool = [" ".join(f"{x:.5f}" for x in row) for row in rng.normal(size=(4096, dim))]
    vocab = sorted(benchmark_vocabulary(BENCHES))
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


def run_ours(path: Path, out_dir: str) -> float:
    t = time.perf_counter()
    code = cli.main(["evaluate", "--linguistic", str(path), "--benchmarks", f"[{', '.join(BENCHES)}]",
                     "--out", out_dir])
    assert code in (0, None)
    return time.perf_counter() - t


def run_gensim(path: Path, tsv_dir: Path) -> tuple[float, dict]:
    from gensim.models import KeyedVectors as GKV

    t = time.perf_counter()
    kv = GKV.load_word2vec_format(str(path), binary=False)
    rhos = {}
    for name in BENCHES:
        tsv = tsv_dir / f"{name}.tsv"
        tsv.write_text("".join(f"{a}\t{b}\t{g}\n" for a, b, g in load_benchmark(name).pairs))
        _, (rho, _), _ = kv.evaluate_word_pairs(str(tsv), restrict_vocab=len(kv), case_insensitive=False)
        rhos[name] = rho
    return time.perf_counter() - t, rhos


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=400_000)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--skip-gensim", action="store_true", help="time only ours")
    args = ap.parse_args()
    path = Path(tempfile.gettempdir()) / f"mmlightning_bench_{args.words}x{args.dim}.txt"
    t = time.perf_counter()
    make_file(path, args.words, args.dim)
    print(f"file: {path} ({path.stat().st_size / 1e9:.2f} GB, {args.words} words x {args.dim}; "
          f"ready in {time.perf_counter() - t:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(path, tmp)
        import json

        table = json.loads((Path(tmp) / "evaluation.json").read_text())["table1"]
        print(f"ours   (mmlightning evaluate, restricted load, CIs, sweep, reports): {ours:7.2f} s")
        if args.skip_gensim:
            return
        base, rhos = run_gensim(path, Path(tmp))
        print(f"gensim (load_word2vec_format + evaluate_word_pairs x{len(BENCHES)}):      {base:7.2f} s")
        print(f"speed-up: {base / ours:.1f}x")
        for name in BENCHES:
            print(f"  {name}: rho ours {table[name]['full']['linguistic']['rho']:.6f}  gensim {rhos[name]:.6f}")


if __name__ == "__main__":
    main()
