"""Skip-gram speed, quality and memory: gensim's Word2Vec (the baseline) vs mmlightning's SkipGram, one run.

    .venv/bin/python benchmarks/bench_skipgram.py                          # GCIDE, 5 epochs, both systems
    .venv/bin/python benchmarks/bench_skipgram.py --epochs 1 --max-words 1000000   # a quick look
    .venv/bin/python benchmarks/bench_skipgram.py --accelerator gpu        # ours on a GPU (gensim on CPU)
    .venv/bin/python benchmarks/bench_skipgram.py --pairs device --num-workers 0   # the device path, on CPU

Both train on the same encoded corpus (mmlightning's cache: same tokens, same sentences, same vocabulary)
with the same settings (sg, 100 dims, window 5, 5 negatives, sample 1e-3, min_count 5, lr 0.025 -> 0.0001).
Each system runs in its own child process, one after the other, so peak memory is per system: the peak
PSS of the child's process tree (sampled every 0.5 s; pages shared by forked workers counted once), and
ru_maxrss of the process + its largest worker (an upper bound that counts shared pages twice).
Printed for each: training wall time, words/s (corpus words x epochs / training time; ours includes
Lightning start-up and torch.compile), words per CPU-second (user + system time of the process and its
workers: the fair number when other jobs share the CPUs), WS353 and MEN Spearman rho (pairs with an
unknown word skipped), peak memory; then the ratios ours / gensim.
The machine is shared: the load average before and after is printed too; the ratio is what counts.
`--background-load N` runs N busy processes for the whole benchmark (both systems alike), to see what
a shared machine costs each; `--json F` writes the results (the README's table is rendered from them).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024.0  # KiB -> MiB (own + the largest worker: an upper bound of the peak)


def _tree_pss_mb(root: int) -> float:
    """Proportional set size (MiB) of process `root` and all its descendants: shared pages counted once."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def _run_child(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd`, sampling its process tree's PSS every 0.5 s; returns (result, peak PSS in MiB)."""
    import threading
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss_mb(proc.pid))
            time.sleep(0.5)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    t.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak[0]


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished children (DataLoader workers)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _corpus(args):
    from mmlightning.text.corpus import prepare_corpus
    return prepare_corpus(args.corpus, args.cache_dir, args.min_count)


def _truncate(enc, max_words: int | None):
    """(number of sentences, number of words) of the first sentences holding at most max_words words."""
    import numpy as np
    if not max_words or max_words >= enc.n_tokens:
        return len(enc.sentences) - 1, enc.n_tokens
    s = int(np.searchsorted(enc.sentences, max_words, side="right")) - 1
    return s, int(enc.sentences[s])


def _scores(kv) -> dict:
    from mmlightning.benchmarks import load_benchmark
    from mmlightning.evaluation.relatedness import score
    out = {}
    for name in ("ws353", "men"):
        r = score(kv, load_benchmark(name), oov="skip")
        out[name] = r.rho
        out[name + "_pairs"] = f"{r.pairs_used}/{r.pairs_total}"
    return out


def run_gensim(args) -> dict:
    from gensim.models import Word2Vec
    from mmlightning.text.corpus import sentences_as_words
    from mmlightning.vectors import KeyedVectors
    enc = _corpus(args)
    n_sent, n_words = _truncate(enc, args.max_words)
    sents = [s for _, s in zip(range(n_sent), sentences_as_words(enc))]
    model = Word2Vec(vector_size=args.dim, window=args.window, min_count=args.min_count, sg=1, hs=0,
                     negative=args.negative, sample=args.sample, alpha=0.025, min_alpha=0.0001,
                     workers=args.gensim_workers, seed=args.seed)
    model.build_vocab(sents)
    t, c = time.perf_counter(), _cpu_s()
    model.train(sents, total_examples=len(sents), epochs=args.epochs)
    wall, cpu = time.perf_counter() - t, _cpu_s() - c
    kv = KeyedVectors(list(model.wv.index_to_key), model.wv.vectors)
    return {"system": f"gensim {__import__('gensim').__version__} Word2Vec (workers={args.gensim_workers})",
            "words": n_words, "wall_s": wall, "words_per_s": n_words * args.epochs / wall,
            "cpu_s": cpu, "words_per_cpu_s": n_words * args.epochs / cpu,
            **_scores(kv), "peak_rss_mb": _rss_mb()}


def run_ours(args) -> dict:
    import pytorch_lightning as pl
    import numpy as np
    from mmlightning.text.data import SkipGramDataModule
    from mmlightning.text.skipgram import SkipGram
    enc = _corpus(args)
    n_sent, n_words = _truncate(enc, args.max_words)
    corpus = args.corpus
    if n_words < enc.n_tokens:  # write the same truncated text as a .txt corpus
        from mmlightning.text.corpus import sentences_as_words
        tmp = Path(args.cache_dir) / f"bench-first-{n_words}.txt"
        if not tmp.exists():
            with open(tmp, "w") as fh:
                for _, s in zip(range(n_sent), sentences_as_words(enc)):
                    fh.write(" ".join(s) + "\n")
        corpus = [str(tmp)]
    with tempfile.TemporaryDirectory() as out:
        dm = SkipGramDataModule(corpus=corpus, cache_dir=args.cache_dir, min_count=args.min_count,
                                window=args.window, negative=args.negative, sample=args.sample,
                                num_workers=args.num_workers, seed=args.seed, pairs=args.pairs)
        dm.prepare_data()  # cached: not timed
        model = SkipGram(dim=args.dim, hogwild_threads=args.hogwild_threads, compile=args.compile,
                         seed=args.seed, output_dir=None, batch_pairs=args.batch_pairs,
                         device_batch_pairs=args.device_batch_pairs)
        trainer = pl.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
                             strategy=args.strategy, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
        t, c = time.perf_counter(), _cpu_s()
        trainer.fit(model, datamodule=dm)
        wall, cpu = time.perf_counter() - t, _cpu_s() - c
        if trainer.global_rank != 0:
            sys.exit(0)
        kv = model.word_vectors()
    return {"system": f"mmlightning SkipGram (compile={args.compile}, hogwild_threads={args.hogwild_threads}, "
                      f"data workers={args.num_workers}, pairs={dm.pair_mode()}, {args.accelerator} x{args.devices})",
            "words": n_words, "wall_s": wall, "words_per_s": n_words * args.epochs / wall,
            "cpu_s": cpu, "words_per_cpu_s": n_words * args.epochs / cpu,
            **_scores(kv), "peak_rss_mb": _rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="+", default=["gcide"])
    p.add_argument("--cache-dir", default=str(ROOT / "checkpoints" / "corpus_cache"))
    p.add_argument("--max-words", type=int, default=None, help="train on the first sentences up to this many words")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gensim-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--hogwild-threads", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=2, help="our DataLoader workers (pairs + Hogwild training)")
    p.add_argument("--compile", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--pairs", choices=["auto", "host", "device", "native"], default="auto", help="where our pairs are made")
    p.add_argument("--batch-pairs", type=int, default=1024, help="pairs per update (host pairs)")
    p.add_argument("--device-batch-pairs", type=int, default=4096, help="pairs per update (device pairs)")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--background-load", type=int, default=0, help="busy processes running alongside (both systems)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--render", nargs="+", metavar="JSON", help="only print the README block of these --json records")
    p.add_argument("--readme", help="with --render: rewrite this file's bench_skipgram block")
    p.add_argument("--only", choices=["gensim", "ours"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        print(render(args.render, args.readme))
        return
    if args.only:
        import torch
        torch.set_num_threads(1) if args.only == "ours" else None
        res = run_gensim(args) if args.only == "gensim" else run_ours(args)
        print("RESULT " + json.dumps(res))
        return
    _corpus(args)  # build the cache once, untimed
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.background_load)]
    try:
        results, load = _both(args)
    finally:
        for b in busy:
            b.kill()
    _report(args, results, load)


def _both(args) -> tuple[dict, tuple[float, float]]:
    before = os.getloadavg()[0]
    print(f"load average before: {before:.2f} ({os.cpu_count()} CPUs, {args.background_load} busy processes "
          "alongside)", flush=True)
    results = {}
    for which in ("gensim", "ours"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", which]
        proc, pss = _run_child(cmd)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            sys.exit(f"{which} failed")
        results[which] = {**json.loads(lines[-1][7:]), "peak_pss_mb": pss}
    after = os.getloadavg()[0]
    print(f"load average after: {after:.2f}")
    return results, (before, after)


def _report(args, results: dict, load: tuple[float, float]) -> None:
    for which, r in results.items():
        print(f"{which:7s} {r['system']}\n        {r['words']} words x {args.epochs} epochs: wall {r['wall_s']:.1f} s, "
              f"{r['words_per_s']:,.0f} words/s; CPU {r['cpu_s']:.1f} s, {r['words_per_cpu_s']:,.0f} words/CPU-s\n"
              f"        WS353 rho {r['ws353']:.3f} ({r['ws353_pairs']}), MEN rho {r['men']:.3f} ({r['men_pairs']}); "
              f"peak memory: PSS {r['peak_pss_mb']:.0f} MiB (process tree), "
              f"max RSS self + largest child {r['peak_rss_mb']:.0f} MiB (counts shared pages twice)")
    g, o = results["gensim"], results["ours"]
    print(f"ratio ours/gensim: speed {o['words_per_s'] / g['words_per_s']:.2f}x (wall), "
          f"{o['words_per_cpu_s'] / g['words_per_cpu_s']:.2f}x (per CPU second), "
          f"WS353 rho diff {o['ws353'] - g['ws353']:+.3f}, MEN rho diff {o['men'] - g['men']:+.3f}")
    record = {"argv": [a for a in sys.argv[1:]], "load_before": load[0], "load_after": load[1],
              "background_load": args.background_load, "gensim": g, "ours": o,
              "ratio_wall": o["words_per_s"] / g["words_per_s"], "ratio_cpu": o["words_per_cpu_s"] / g["words_per_cpu_s"]}
    print("\n" + markdown(record))
    if args.json:
        from mmlightning.atomic import write_json
        write_json(args.json, record)


BEGIN, END = "<!-- bench_skipgram:begin -->", "<!-- bench_skipgram:end -->"
PAPER_WORDS = 117e6  # text8 (17M) + the BNC (~100M): Kiela & Bottou's text corpus


def markdown(record: dict) -> str:
    """One run (a --json record) as the README shows it: the command and load, the table, the ratios."""
    g, o = record["gensim"], record["ours"]
    argv = [a for a in record["argv"] if not a.startswith("--json") and not a.endswith(".json")]
    lines = [f"`benchmarks/bench_skipgram.py {' '.join(argv)}` [load {record['load_before']:.1f} before, "
             f"{record['load_after']:.1f} after]:", "",
             "| | wall | words/s | words per CPU-second | WS353 rho | MEN rho | peak PSS (process tree) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in (g, o):
        lines.append(f"| {r['system']} | {r['wall_s']:.1f} s | {r['words_per_s']:,.0f} | {r['words_per_cpu_s']:,.0f} | "
                     f"{r['ws353']:.3f} ({r['ws353_pairs']}) | {r['men']:.3f} ({r['men_pairs']}) | "
                     f"{r['peak_pss_mb']:.0f} MiB |")
    lines += ["", f"Ours / gensim: **{record['ratio_wall']:.2f}x on the wall clock, {record['ratio_cpu']:.2f}x per "
                  f"CPU-second**; WS353 {o['ws353'] - g['ws353']:+.3f}, MEN {o['men'] - g['men']:+.3f}. "
                  f"At these rates the paper's corpus (text8 + BNC, ~{PAPER_WORDS / 1e6:.0f}M words) x 5 epochs "
                  f"would take {PAPER_WORDS * 5 / o['words_per_s'] / 60:.0f} min (gensim "
                  f"{PAPER_WORDS * 5 / g['words_per_s'] / 60:.0f} min): a projection, not a measurement."]
    return "\n".join(lines)


def render(records: list[str], readme: str | None = None) -> str:
    """The README block of these --json records; with `readme`, written between the bench_skipgram markers."""
    from mmlightning.pipeline.readme import replace_block
    block = "\n\n".join(markdown(json.loads(Path(r).read_text())) for r in records)
    if readme:
        from mmlightning.atomic import write_text
        text = Path(readme).read_text()
        write_text(readme, replace_block(text, block, readme, BEGIN, END))
    return block


if __name__ == "__main__":
    main()
