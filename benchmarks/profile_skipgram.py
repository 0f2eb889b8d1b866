"""Where skip-gram's CPU time goes: the compiled kernel alone, then one epoch of the real fit split by part.

    .venv/bin/python benchmarks/profile_skipgram.py                 # GCIDE, native pairs, 2 Hogwild workers
    .venv/bin/python benchmarks/profile_skipgram.py --num-workers 0 # everything in the training process

Part 1 times `NativeKernel.train` on the first 1M corpus words in this process (best CPU time of 3,
fresh tables each time): nanoseconds per pair and words per CPU-second of the kernel by itself.
Part 2 runs one epoch of `SkipGram` + `SkipGramDataModule` with timers around the kernel call and the
chunk making (in every worker: each writes its totals to a file), and reports the CPU seconds of the
kernel, of making chunks, of the rest of the workers (start-up, queues) and of the training process
(Lightning's loop, logging): the shares of the whole. The load average is printed; the shares, not the
seconds, are what to compare across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def kernel_alone(enc, words: int) -> dict:
    import numpy as np
    import torch
    from mmlightning.text.native import NativeKernel
    from mmlightning.text.sgns import alias_table, keep_probabilities
    k = NativeKernel.load()
    V, D, n = len(enc.words), 100, min(words, enc.n_tokens)
    keep, table = keep_probabilities(enc.counts, 1e-3), alias_table(enc.counts)
    ids = np.asarray(enc.tokens[:n])
    sent = np.searchsorted(enc.sentences, np.arange(n), side="right").astype(np.int32)
    best, pairs = float("inf"), 0
    for rep in range(3):
        syn0, syn1 = (torch.rand(V, D) - 0.5) / D, torch.zeros(V, D)
        c = time.process_time()
        pairs, _ = k.train(syn0, syn1, ids, sent, keep, table, 5, 5, 0.025, 0.02, seed=rep)
        best = min(best, time.process_time() - c)
    return {"words": n, "pairs": pairs, "cpu_s": best, "ns_per_pair": best / pairs * 1e9, "words_per_cpu_s": n / best}


def one_epoch(args, timers_dir: str) -> dict:
    import pytorch_lightning as pl
    import torch
    import mmlightning.text.data as data
    import mmlightning.text.native as native
    from mmlightning.text.skipgram import SkipGram

    def timed(cls, name, key):
        fn = getattr(cls, name)

        def wrapper(*a, **kw):
            c = time.process_time()
            out = fn(*a, **kw)
            totals[key] = totals.get(key, 0.0) + time.process_time() - c
            with open(f"{timers_dir}/{os.getpid()}.json", "w") as fh:  # each process: its own totals
                json.dump(totals, fh)
            return out
        setattr(cls, name, wrapper)
    totals: dict[str, float] = {}
    timed(native.NativeTrainer, "__call__", "kernel")
    timed(data.PairChunks, "chunk", "chunks")
    torch.set_num_threads(1)
    dm = data.SkipGramDataModule(corpus=args.corpus, cache_dir=args.cache_dir, num_workers=args.num_workers,
                                 pairs="native")
    dm.prepare_data()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=timers_dir)
    t, c0 = time.perf_counter(), time.process_time()
    trainer.fit(SkipGram(output_dir=None), datamodule=dm)
    wall, main_cpu = time.perf_counter() - t, time.process_time() - c0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    per_proc = [json.loads(p.read_text()) for p in Path(timers_dir).glob("*.json")]
    kernel = sum(p.get("kernel", 0.0) for p in per_proc)
    chunks = sum(p.get("chunks", 0.0) for p in per_proc)
    worker_cpu = kids.ru_utime + kids.ru_stime
    total = main_cpu + worker_cpu
    in_main = totals.get("kernel", 0.0) + totals.get("chunks", 0.0)  # with num_workers 0 these ran in this process
    return {"wall_s": wall, "cpu_s": total, "words": dm.encoded.n_tokens, "kernel_cpu_s": kernel,
            "chunks_cpu_s": chunks, "workers_other_cpu_s": max(worker_cpu - (kernel + chunks - in_main), 0.0),
            "training_process_other_cpu_s": main_cpu - in_main}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="+", default=["gcide"])
    p.add_argument("--cache-dir", default=str(ROOT / "checkpoints" / "corpus_cache"))
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--kernel-words", type=int, default=1 << 20)
    args = p.parse_args()
    from mmlightning.text.corpus import prepare_corpus
    enc = prepare_corpus(args.corpus, args.cache_dir, 5)
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    k = kernel_alone(enc, args.kernel_words)
    print(f"kernel alone: {k['pairs']:,} pairs of {k['words']:,} words in {k['cpu_s']:.2f} CPU-s: "
          f"{k['ns_per_pair']:.0f} ns per pair, {k['words_per_cpu_s']:,.0f} words per CPU-second")
    with tempfile.TemporaryDirectory() as d:
        r = one_epoch(args, d)
    print(f"one epoch, {args.num_workers} workers: {r['words']:,} words, wall {r['wall_s']:.1f} s, "
          f"CPU {r['cpu_s']:.1f} s ({r['words'] / r['cpu_s']:,.0f} words per CPU-second)")
    for key, label in (("kernel_cpu_s", "compiled kernel (pairs + update)"), ("chunks_cpu_s", "making chunks"),
                       ("workers_other_cpu_s", "workers: the rest (start-up, queues)"),
                       ("training_process_other_cpu_s", "training process (Lightning loop, logging)")):
        print(f"  {label:45s} {r[key]:6.2f} CPU-s  {100 * r[key] / r['cpu_s']:5.1f}%")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
