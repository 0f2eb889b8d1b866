"""Skip-gram on a GPU: gensim Word2Vec on every CPU core vs mmlightning's SkipGram with device pairs, one run each.

    PYTHONPATH=. python benchmarks/gpu_skipgram.py /data/gcide.txt.gz --out gpu_skipgram.json
    PYTHONPATH=. python benchmarks/gpu_skipgram.py .devdata/gcide.txt.gz --max-words 200000 --epochs 1 --device cpu

The corpus is a `.txt.gz` (or `.txt`) of one sentence per line, space-separated tokens. Both systems
train on the same encoded corpus (mmlightning's cache: same tokens, sentences and vocabulary) with the
same settings: skip-gram, 100 dims, window 5, 5 negatives, sample 1e-3, min_count 5, lr 0.025 -> 0.0001
linearly over all epochs, 5 epochs. Ours runs with `data.pairs: device`: the corpus lives on the device,
pairs and negatives are made there, one stretch of ~1M words per step. Printed and written as JSON
(`--out`): words/s on the training loop (ours: from the first to the last step, synchronised; and the
whole `fit` with start-up), wall seconds, WS353 and MEN Spearman rho (pairs with an unknown word skipped),
the device, torch version, CPU count and load average. Then ours on the same machine's CPUs (`data.pairs:
native`, `--native-workers`, default every core): the CPU figure against gensim's on the same cores.
Needs no network and no WordNet.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

SETTINGS = dict(dim=100, window=5, negative=5, sample=1e-3, min_count=5, lr=0.025, min_lr=0.0001)


def truncated(path: Path, max_words: int | None, tmp: Path) -> Path:
    """`path`, or a copy of its first lines holding about `max_words` words (for a quick run)."""
    if not max_words:
        return path
    out = tmp / f"first-{max_words}.txt"
    n = 0
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as src, \
            open(out, "w", encoding="utf-8") as dst:
        for line in src:
            dst.write(line)
            n += len(line.split())
            if n >= max_words:
                break
    return out


def scores(kv) -> dict:
    """WS353 and MEN Spearman rho with mmlightning's own loaders (pairs with an unknown word skipped)."""
    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.relatedness import score
    res = {}
    for name in ("ws353", "men"):
        r = score(kv, load_benchmark(name), oov="skip", n_boot=0)
        res[name] = None if r.rho is None else round(float(r.rho), 4)
        res[name + "_pairs"] = f"{r.pairs_used}/{r.pairs_total}"
    return res


def run_gensim(enc, epochs: int, workers: int, seed: int) -> dict:
    from gensim.models import Word2Vec
    from mmlightning.text.corpus import sentences_as_words
    from mmlightning.vectors import KeyedVectors
    s = SETTINGS
    sents = list(sentences_as_words(enc))
    model = Word2Vec(vector_size=s["dim"], window=s["window"], min_count=s["min_count"], sg=1, hs=0,
                     negative=s["negative"], sample=s["sample"], alpha=s["lr"], min_alpha=s["min_lr"],
                     workers=workers, seed=seed)
    model.build_vocab(sents)
    t = time.perf_counter()
    model.train(sents, total_examples=len(sents), epochs=epochs)
    wall = time.perf_counter() - t
    kv = KeyedVectors(list(model.wv.index_to_key), model.wv.vectors)
    return {"system": f"gensim {__import__('gensim').__version__} Word2Vec sg, workers={workers}",
            "train_s": round(wall, 3), "words_per_s": round(enc.n_tokens * epochs / wall), **scores(kv)}


class LoopTimer(pl.Callback):
    """Seconds from the start of the first training step to the end of the last (device synchronised)."""

    def on_train_start(self, trainer, pl_module):
        self.t0 = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.t0 is None:
            _sync(pl_module.device)
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        _sync(pl_module.device)
        self.seconds = time.perf_counter() - self.t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(corpus: Path, cache: Path, epochs: int, device: str, seed: int, batch_pairs: int,
             stretch_words: int, compile: bool) -> dict:
    from mmlightning.text.data import SkipGramDataModule
    from mmlightning.text.skipgram import SkipGram
    s = SETTINGS
    dm = SkipGramDataModule(corpus=[str(corpus)], cache_dir=str(cache), min_count=s["min_count"], window=s["window"],
                            negative=s["negative"], sample=s["sample"], num_workers=0, seed=seed, pairs="device",
                            stretch_words=stretch_words)
    model = SkipGram(dim=s["dim"], lr=s["lr"], min_lr=s["min_lr"], seed=seed, compile=compile,
                     device_batch_pairs=batch_pairs, output_dir=None)
    timer = LoopTimer()
    accel = "cpu" if device == "cpu" else "gpu"
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accel, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         default_root_dir=str(cache))
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t
    n = dm.encoded.n_tokens
    return {"system": f"mmlightning SkipGram, pairs on the device ({device}), device_batch_pairs={batch_pairs}, "
                      f"stretch_words={stretch_words}",
            "cuda_graphs": bool(model._train.updates.graphs), "steps": trainer.global_step,
            "train_s": round(timer.seconds, 3), "words_per_s": round(n * epochs / timer.seconds),
            "fit_s": round(fit_s, 3), "fit_words_per_s": round(n * epochs / fit_s), **scores(model.word_vectors())}


def run_native(corpus: Path, cache: Path, epochs: int, workers: int, seed: int) -> dict:
    """Ours on the machine's CPUs: the compiled kernel in `workers` Hogwild data-loader workers (data.pairs: native)."""
    from mmlightning.text.data import SkipGramDataModule
    from mmlightning.text.skipgram import SkipGram
    s = SETTINGS
    dm = SkipGramDataModule(corpus=[str(corpus)], cache_dir=str(cache), min_count=s["min_count"], window=s["window"],
                            negative=s["negative"], sample=s["sample"], num_workers=workers, seed=seed, pairs="native")
    model = SkipGram(dim=s["dim"], lr=s["lr"], min_lr=s["min_lr"], seed=seed, output_dir=None)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(cache))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    try:
        trainer.fit(model, datamodule=dm)
    finally:
        torch.set_num_threads(threads)
    fit_s = time.perf_counter() - t
    n = dm.encoded.n_tokens
    return {"system": f"mmlightning SkipGram, native kernel on the CPU, {workers} Hogwild workers",
            "fit_s": round(fit_s, 3), "words_per_s": round(n * epochs / fit_s), **scores(model.word_vectors())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path, help="a .txt.gz (or .txt): one sentence per line, space-separated tokens")
    p.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    p.add_argument("--max-words", type=int, default=None, help="train on the first lines up to this many words")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--gensim-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device-batch-pairs", type=int, default=4096)
    p.add_argument("--stretch-words", type=int, default=1 << 20)
    p.add_argument("--compile", action="store_true", help="torch.compile the update (CPU only)")
    p.add_argument("--skip-gensim", action="store_true")
    p.add_argument("--native-workers", type=int, default=os.cpu_count() or 1,
                   help="also run ours on the CPU (native kernel) with this many workers; 0: not")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"{args.corpus}: corpus not found")
    from mmlightning.text.corpus import prepare_corpus
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = truncated(args.corpus, args.max_words, tmp)
        t = time.perf_counter()
        enc = prepare_corpus([str(corpus)], tmp / "cache", SETTINGS["min_count"])
        res = {"corpus": str(args.corpus), "words": enc.n_tokens, "vocab": len(enc.words), "epochs": args.epochs,
               "settings": SETTINGS, "tokenise_s": round(time.perf_counter() - t, 2),
               "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "lightning": pl.__version__, "cpus": os.cpu_count(),
               "load_before": os.getloadavg()[0]}
        print(json.dumps(res), flush=True)
        if not args.skip_gensim:
            res["gensim"] = run_gensim(enc, args.epochs, args.gensim_workers, args.seed)
            print(json.dumps(res["gensim"]), flush=True)
        try:
            res["ours"] = run_ours(corpus, tmp / "cache", args.epochs, args.device, args.seed,
                                   args.device_batch_pairs, args.stretch_words, args.compile)
        except Exception as e:  # keep gensim's figures and say what broke
            import traceback
            traceback.print_exc()
            res["ours"] = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(res["ours"]), flush=True)
        if args.native_workers:
            try:
                res["ours_cpu"] = run_native(corpus, tmp / "cache", args.epochs, args.native_workers, args.seed)
            except Exception as e:  # no C compiler there, say: keep the other figures
                res["ours_cpu"] = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps(res["ours_cpu"]), flush=True)
    res["load_after"] = os.getloadavg()[0]
    if "gensim" in res and "error" not in res["ours"]:
        g, o = res["gensim"], res["ours"]
        res["ratio_words_per_s"] = round(o["words_per_s"] / g["words_per_s"], 2)
        res["ratio_fit_words_per_s"] = round(o["fit_words_per_s"] / g["words_per_s"], 2)
        res["ws353_diff"] = None if None in (o["ws353"], g["ws353"]) else round(o["ws353"] - g["ws353"], 4)
        res["men_diff"] = None if None in (o["men"], g["men"]) else round(o["men"] - g["men"], 4)
    if "gensim" in res and "words_per_s" in res.get("ours_cpu", {}):
        res["ratio_cpu_native_words_per_s"] = round(res["ours_cpu"]["words_per_s"] / res["gensim"]["words_per_s"], 2)
    print(json.dumps({k: v for k, v in res.items() if k not in ("gensim", "ours", "ours_cpu", "settings")}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
