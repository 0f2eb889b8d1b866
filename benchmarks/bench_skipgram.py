"""Skip-gram speed, quality and memory: gensim's Word2Vec (the baseline) vs mmlightning's SkipGram.

    .venv/bin/python benchmarks/bench_skipgram.py                          # GCIDE, 5 epochs, both systems
    .venv/bin/python benchmarks/bench_skipgram.py --epochs 1 --max-words 1000000   # a quick look
    .venv/bin/python benchmarks/bench_skipgram.py --accelerator gpu        # ours on a GPU (gensim on CPU)
    .venv/bin/python benchmarks/bench_skipgram.py --pairs device --num-workers 0   # the device path, on CPU
    .venv/bin/python benchmarks/bench_skipgram.py --pairs native --num-workers 0 --gensim-workers 2 --seeds 3 \
        --json docs/figures/bench_skipgram_seeds.json                      # quality over seeds 1..3 per side
    .venv/bin/python benchmarks/bench_skipgram.py --render docs/figures/bench_skipgram.json \
        docs/figures/bench_skipgram_loaded.json --doc docs/skipgram.md     # rewrite the doc's block

Both train on the same encoded corpus (mmlightning's cache: same tokens, same sentences, same vocabulary)
with the same settings (sg, 100 dims, window 5, 5 negatives, sample 1e-3, min_count 5, lr 0.025 -> 0.0001).
Each system runs in its own child process, one after the other, so peak memory is per system: the peak
PSS of the child's process tree (sampled every 0.5 s; pages shared by forked workers counted once), and
ru_maxrss of the process + its largest worker (an upper bound that counts shared pages twice).
Printed for each: training wall time, words/s (corpus words x epochs / training time; ours includes
Lightning start-up and torch.compile), words per CPU-second (user + system time of the process and its
workers: the fair number when other jobs share the CPUs), WS353, MEN and SimLex-999 Spearman rho (pairs
with an unknown word skipped), peak memory; then the ratios ours / gensim.
The machine is shared: the load average before and after is printed too; the ratio is what counts.
`--background-load N` runs N busy processes for the whole benchmark (both systems alike), to see what
a shared machine costs each; `--json F` writes the results (docs/skipgram.md's tables are rendered from
them by `--render F... --doc docs/skipgram.md`, a test keeps them equal).

`--seeds N` runs each system with seeds 1..N (gensim seed s, then ours seed s, then s + 1: both see the
same drift in the machine's load) and prints, per system and benchmark, the mean and the sample sd (n - 1)
of rho over the seeds, and the difference of means ours - gensim with a Welch 95% interval
(mean difference +- t(0.975, Welch-Satterthwaite df) x sqrt(sd_o^2 / n_o + sd_g^2 / n_g)); the speed
figures are the means over the runs. One seed of one system moves WS353 rho by about 0.005 (sd): a
one-run difference of 0.01 says little; the interval says whether the systems differ.
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
    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.relatedness import score
    out = {}
    for name in BENCHMARKS:
        r = score(kv, load_benchmark(name), oov="skip")
        out[name] = r.rho
        out[name + "_pairs"] = f"{r.pairs_used}/{r.pairs_total}"
    return out


BENCHMARKS = ("ws353", "men", "simlex999")
LABELS = {"ws353": "WS353", "men": "MEN", "simlex999": "SimLex-999"}


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
    p.add_argument("--seeds", type=int, default=None,
                   help="run both systems with seeds 1..N; report mean, sd and the difference with a Welch 95%% CI")
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
    p.add_argument("--render", nargs="+", metavar="JSON",
                   help="only print the docs block of these --json records (one-run records, or one --seeds record)")
    p.add_argument("--doc", "--readme", dest="doc", metavar="MD",
                   help="with --render: rewrite this file's block (docs/skipgram.md: bench_skipgram for one-run "
                        "records, bench_skipgram_seeds for a --seeds record)")
    p.add_argument("--only", choices=["gensim", "ours"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        recs = [json.loads(Path(r).read_text()) for r in args.render]
        if any("seeds" in r for r in recs):
            if len(recs) != 1:
                sys.exit("--render: give a --seeds record alone")
            print(render_seeds(args.render[0], args.doc))
        else:
            print(render(args.render, args.doc))
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
        if args.seeds:
            _report_seeds(args, *_seeds(args))
        else:
            results, load = _both(args)
    finally:
        for b in busy:
            b.kill()
    if not args.seeds:
        _report(args, results, load)


def _child(which: str, extra: tuple[str, ...] = ()) -> dict:
    """One system in a child process (this script's arguments + `extra`); its RESULT record + peak PSS."""
    cmd = [sys.executable, __file__, *sys.argv[1:], *extra, "--only", which]
    proc, pss = _run_child(cmd)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        sys.exit(f"{which} failed")
    return {**json.loads(lines[-1][7:]), "peak_pss_mb": pss}


def _both(args) -> tuple[dict, tuple[float, float]]:
    before = os.getloadavg()[0]
    print(f"load average before: {before:.2f} ({os.cpu_count()} CPUs, {args.background_load} busy processes "
          "alongside)", flush=True)
    results = {which: _child(which) for which in ("gensim", "ours")}
    after = os.getloadavg()[0]
    print(f"load average after: {after:.2f}")
    return results, (before, after)


def _seeds(args) -> tuple[dict, tuple[float, float]]:
    """Seeds 1..N, gensim then ours for each seed; every run's record has its seed and the load before it."""
    before = os.getloadavg()[0]
    print(f"load average before: {before:.2f} ({os.cpu_count()} CPUs, {args.background_load} busy processes "
          f"alongside); seeds 1..{args.seeds} per system", flush=True)
    runs: dict[str, list] = {"gensim": [], "ours": []}
    for seed in range(1, args.seeds + 1):
        for which in ("gensim", "ours"):
            load = os.getloadavg()[0]
            r = {"seed": seed, "load_before": load, **_child(which, ("--seed", str(seed)))}
            runs[which].append(r)
            print(f"seed {seed} {which:6s} [load {load:.1f}] " + ", ".join(
                f"{LABELS[b]} {r[b]:.3f}" for b in BENCHMARKS) + f"; {r['words_per_s']:,.0f} words/s", flush=True)
    after = os.getloadavg()[0]
    print(f"load average after: {after:.2f}")
    return runs, (before, after)


def _report(args, results: dict, load: tuple[float, float]) -> None:
    for which, r in results.items():
        print(f"{which:7s} {r['system']}\n        {r['words']} words x {args.epochs} epochs: wall {r['wall_s']:.1f} s, "
              f"{r['words_per_s']:,.0f} words/s; CPU {r['cpu_s']:.1f} s, {r['words_per_cpu_s']:,.0f} words/CPU-s\n"
              f"        WS353 rho {r['ws353']:.3f} ({r['ws353_pairs']}), MEN rho {r['men']:.3f} ({r['men_pairs']}), "
              f"SimLex-999 rho {r['simlex999']:.3f} ({r['simlex999_pairs']}); "
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


def mean_sd(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; nan for one value)."""
    n = len(xs)
    m = sum(xs) / n
    return m, (sum((x - m) ** 2 for x in xs) / (n - 1)) ** 0.5 if n > 1 else float("nan")


def welch(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """mean(a) - mean(b) with Welch's t interval: diff +- t(df) x sqrt(sd_a^2/n_a + sd_b^2/n_b),
    df by Welch-Satterthwaite."""
    from scipy.stats import t
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = (va + vb) ** 0.5
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else float("inf")
    q = float(t.ppf(0.5 + level / 2, df)) if se > 0 else 0.0
    return {"diff": ma - mb, "se": se, "df": df, "lo": ma - mb - q * se, "hi": ma - mb + q * se}


def seeds_summary(runs: dict) -> dict:
    """Per system and benchmark mean and sd over the seeds; per benchmark ours - gensim with its Welch CI;
    mean speeds and their ratios."""
    out: dict = {}
    for which, rs in runs.items():
        out[which] = {b: dict(zip(("mean", "sd"), mean_sd([r[b] for r in rs]))) for b in BENCHMARKS}
        for k in ("words_per_s", "words_per_cpu_s", "wall_s", "peak_pss_mb"):
            out[which][k] = mean_sd([r[k] for r in rs])[0]
    out["diff"] = {b: welch([r[b] for r in runs["ours"]], [r[b] for r in runs["gensim"]]) for b in BENCHMARKS}
    out["ratio_wall"] = out["ours"]["words_per_s"] / out["gensim"]["words_per_s"]
    out["ratio_cpu"] = out["ours"]["words_per_cpu_s"] / out["gensim"]["words_per_cpu_s"]
    return out


def _report_seeds(args, runs: dict, load: tuple[float, float]) -> None:
    record = {"argv": list(sys.argv[1:]), "seeds": args.seeds, "load_before": load[0], "load_after": load[1],
              "background_load": args.background_load,
              "settings": {k: getattr(args, k) for k in ("epochs", "dim", "window", "negative", "sample", "min_count",
                                                         "gensim_workers", "num_workers", "pairs", "hogwild_threads",
                                                         "compile", "accelerator", "devices", "max_words")},
              "runs": runs}
    record["summary"] = seeds_summary(runs)
    print("\n" + markdown_seeds(record))
    if args.json:
        from mmlightning.atomic import write_json
        write_json(args.json, record)


SEEDS_BEGIN, SEEDS_END = "<!-- bench_skipgram_seeds:begin -->", "<!-- bench_skipgram_seeds:end -->"


def markdown_seeds(record: dict) -> str:
    """A --seeds record as docs/skipgram.md shows it: command and load, mean +- sd per system and benchmark,
    the differences with their Welch 95% intervals, the mean speeds; every seed's rho in a second table."""
    runs, n = record["runs"], record["seeds"]
    s = seeds_summary(runs)  # from the runs, not the stored summary: the record's numbers are the runs
    argv = [a for a in record["argv"] if not a.startswith("--json") and not a.endswith(".json")]
    loads = [r["load_before"] for rs in runs.values() for r in rs] + [record["load_after"]]
    lines = [f"`benchmarks/bench_skipgram.py {' '.join(argv)}` [load {record['load_before']:.1f} before, "
             f"{record['load_after']:.1f} after, {min(loads):.1f}-{max(loads):.1f} between runs]: rho, mean ± sample "
             f"sd over seeds 1..{n} per system", "",
             "| | " + " | ".join(LABELS[b] for b in BENCHMARKS) + " | words/s | words per CPU-second |",
             "| --- |" + " ---: |" * (len(BENCHMARKS) + 2)]
    for which in ("gensim", "ours"):
        lines.append(f"| {runs[which][0]['system']} | " + " | ".join(
            f"{s[which][b]['mean']:.3f} ± {s[which][b]['sd']:.3f}" for b in BENCHMARKS) +
            f" | {s[which]['words_per_s']:,.0f} | {s[which]['words_per_cpu_s']:,.0f} |")
    lines.append("| ours - gensim (Welch 95% CI) | " + " | ".join(
        f"{s['diff'][b]['diff']:+.3f} [{s['diff'][b]['lo']:+.3f}, {s['diff'][b]['hi']:+.3f}]" for b in BENCHMARKS) +
        f" | {s['ratio_wall']:.2f}x | {s['ratio_cpu']:.2f}x |")
    lines += ["", "Every run (seed: " + ", ".join(LABELS[b] for b in BENCHMARKS) + "):", "",
              "| seed | " + " | ".join(f"gensim {LABELS[b]}" for b in BENCHMARKS) + " | "
              + " | ".join(f"ours {LABELS[b]}" for b in BENCHMARKS) + " |",
              "| ---: |" + " ---: |" * (2 * len(BENCHMARKS))]
    for g, o in zip(runs["gensim"], runs["ours"]):
        lines.append(f"| {g['seed']} | " + " | ".join(f"{g[b]:.3f}" for b in BENCHMARKS) + " | "
                     + " | ".join(f"{o[b]:.3f}" for b in BENCHMARKS) + " |")
    inside = [LABELS[b] for b in BENCHMARKS if s["diff"][b]["lo"] <= 0 <= s["diff"][b]["hi"]]
    outside = [LABELS[b] for b in BENCHMARKS if LABELS[b] not in inside]
    lines += ["", (f"Zero is inside the interval for {', '.join(inside) or 'none'}" +
                   (f"; outside for {', '.join(outside)}" if outside else "") +
                   f". Pairs scored (unknown words skipped): " + ", ".join(
                       f"{LABELS[b]} {runs['ours'][0][b + '_pairs']}" for b in BENCHMARKS) +
                   f". Speeds are means over the {n} runs per system on a shared machine.")]
    return "\n".join(lines)


def render_seeds(record: str, doc: str | None = None) -> str:
    """The docs block of a --seeds record; with `doc`, written between the bench_skipgram_seeds markers."""
    from mmlightning.evaluation.report.readme import replace_block
    block = markdown_seeds(json.loads(Path(record).read_text()))
    if doc:
        from mmlightning.atomic import write_text
        write_text(doc, replace_block(Path(doc).read_text(), block, doc, SEEDS_BEGIN, SEEDS_END))
    return block


BEGIN, END = "<!-- bench_skipgram:begin -->", "<!-- bench_skipgram:end -->"
PAPER_WORDS = 117e6  # text8 (17M) + the BNC (~100M): Kiela & Bottou's text corpus


def markdown(record: dict) -> str:
    """One run (a --json record) as docs/skipgram.md shows it: the command and load, the table, the ratios."""
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


def render(records: list[str], doc: str | None = None) -> str:
    """The docs block of these one-run --json records; with `doc` (a file: docs/skipgram.md), written
    between the bench_skipgram markers."""
    from mmlightning.evaluation.report.readme import replace_block
    block = "\n\n".join(markdown(json.loads(Path(r).read_text())) for r in records)
    if doc:
        from mmlightning.atomic import write_text
        text = Path(doc).read_text()
        write_text(doc, replace_block(text, block, doc, BEGIN, END))
    return block


if __name__ == "__main__":
    main()
