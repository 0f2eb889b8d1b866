"""RelatednessCallback: score a module's current word vectors on relatedness benchmarks, once per epoch.

    trainer = pl.Trainer(callbacks=[RelatednessCallback(benchmarks=["ws353", "men", "simlex999"])])
    # YAML (LightningCLI):
    #   trainer:
    #     callbacks:
    #       - class_path: mmlightning.evaluation.callback.RelatednessCallback
    #         init_args: {benchmarks: [ws353, men], oov: skip}

The module must define `word_vectors() -> mmlightning.vectors.KeyedVectors` (its current embeddings).
Logged per benchmark: `relatedness/<name>` (Spearman rho by torchmetrics' SpearmanCorrCoef; NaN when
fewer than 3 pairs are usable) and `relatedness/<name>_pairs_used`. The cosines and pairs come from
`mmlightning.evaluation.relatedness.pair_cosines`, so the numbers equal `relatedness.score(...).rho`.
It runs at validation epoch end when a validation loop runs (not during the sanity check), else at
train epoch end; never twice for the same epoch.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import pytorch_lightning as pl
import torch
from torchmetrics.regression import SpearmanCorrCoef

from mmlightning.datasets import Benchmark, load_benchmark
from mmlightning.evaluation.relatedness import MIN_PAIRS, _check_oov, gold_scores, pair_cosines


def spearman_torchmetrics(cosines: torch.Tensor, gold: torch.Tensor) -> float:
    """Spearman rho of (n,) cosines vs (n,) gold with torchmetrics; NaN when n < 3 or a side is constant."""
    if cosines.numel() < MIN_PAIRS or bool((cosines == cosines[0]).all()) or bool((gold == gold[0]).all()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all targets and predictions in the buffer"
        metric = SpearmanCorrCoef()
    metric.update(cosines.double(), gold.double())
    return float(metric.compute())


class RelatednessCallback(pl.Callback):
    """Logs `relatedness/<benchmark>` and `relatedness/<benchmark>_pairs_used` from `pl_module.word_vectors()`."""

    def __init__(self, benchmarks: Sequence[str] = ("ws353", "men", "simlex999"), oov: str = "skip",
                 prog_bar: bool = False):
        """
        Args:
            benchmarks: shipped benchmark names or files of 'word1 word2 score' lines.
            oov: "skip" pairs with a word the module does not know, or score them as cosine 0 ("zero").
            prog_bar: also show the rhos in the progress bar.
        """
        super().__init__()
        _check_oov(oov)
        self.benchmark_names = list(benchmarks)
        self.oov = oov
        self.prog_bar = prog_bar
        self._benchmarks: list[Benchmark] | None = None
        self._done_epoch: int | None = None
        self.last: dict[str, float] = {}   # the most recent logged values, for inspection

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._benchmarks is None:
            self._benchmarks = [load_benchmark(b) for b in self.benchmark_names]

    def compute(self, kv) -> dict[str, float]:
        """{'relatedness/<name>': rho, 'relatedness/<name>_pairs_used': n} for KeyedVectors `kv`."""
        if self._benchmarks is None:
            self._benchmarks = [load_benchmark(b) for b in self.benchmark_names]
        out = {}
        for bench in self._benchmarks:
            cos, used = pair_cosines(kv, bench.pairs, self.oov)                 # (P,), (P,) bool
            c = torch.from_numpy(cos[used])                                     # (n,)
            g = torch.from_numpy(gold_scores(bench)[used])                      # (n,)
            out[f"relatedness/{bench.name}"] = spearman_torchmetrics(c, g)
            out[f"relatedness/{bench.name}_pairs_used"] = float(used.sum())
        return out

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._done_epoch == trainer.current_epoch:
            return
        self._done_epoch = trainer.current_epoch
        if not hasattr(pl_module, "word_vectors"):
            raise AttributeError(f"{type(pl_module).__name__} has no word_vectors() method for RelatednessCallback")
        self.last = self.compute(pl_module.word_vectors())
        for key, value in self.last.items():
            pl_module.log(key, value, prog_bar=self.prog_bar and not key.endswith("_pairs_used"))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module)
