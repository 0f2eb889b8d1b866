"""RelatednessCallback logs the same rho as the pure function, once per epoch, in a real Trainer loop."""
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mmlightning.datasets import load_benchmark
from mmlightning.evaluation.callback import RelatednessCallback, spearman_torchmetrics
from mmlightning.evaluation.relatedness import score
from mmlightning.vectors import KeyedVectors


class TinyEmbedding(pl.LightningModule):
    """An embedding table over the WS353 vocabulary (minus a few words), trained on a dummy loss."""

    def __init__(self, with_val: bool = False):
        super().__init__()
        words = sorted(load_benchmark("ws353").words())
        self.words = [w.lower() for w in words[5:]]          # a few words stay out of vocabulary
        self.emb = torch.nn.Embedding(len(self.words), 8)
        self.with_val = with_val
        self.calls = 0

    def word_vectors(self) -> KeyedVectors:
        self.calls += 1
        return KeyedVectors(self.words, self.emb.weight.detach().cpu().numpy())

    def training_step(self, batch, _):
        (idx,) = batch
        return self.emb(idx).pow(2).mean()

    def validation_step(self, batch, _):
        (idx,) = batch
        self.log("val_loss", self.emb(idx).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.arange(len(self.words))), batch_size=64)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.arange(10)), batch_size=10)


def _trainer(tmp_path, cb, epochs=2, val=False):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=1 if val else 0, num_sanity_val_steps=1 if val else 0,
                      default_root_dir=tmp_path)


@pytest.mark.parametrize("val", [False, True])
def test_callback_logs_pure_function_numbers(tmp_path, val):
    torch.manual_seed(0)
    model = TinyEmbedding()
    cb = RelatednessCallback(benchmarks=["ws353", "simlex999"], oov="skip")
    trainer = _trainer(tmp_path, cb, epochs=2, val=val)
    trainer.fit(model)
    assert model.calls == 2                                   # once per epoch, not during sanity check
    kv = model.word_vectors()
    for name in ("ws353", "simlex999"):
        ref = score(kv, load_benchmark(name), oov="skip", n_boot=0)
        logged = trainer.callback_metrics[f"relatedness/{name}"].item()
        assert logged == pytest.approx(ref.rho, abs=1e-5)
        assert trainer.callback_metrics[f"relatedness/{name}_pairs_used"].item() == ref.pairs_used
        assert ref.pairs_used < ref.pairs_total


def test_torchmetrics_spearman_equals_pure_function_with_ties():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 300).astype(float)              # many ties, as in MEN
    cos = rng.normal(size=300)
    from mmlightning.evaluation.relatedness import spearman

    assert spearman_torchmetrics(torch.from_numpy(cos), torch.from_numpy(gold)) == pytest.approx(
        spearman(gold, cos), abs=1e-6)
    assert math.isnan(spearman_torchmetrics(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0])))


def test_callback_compute_oov_zero():
    cb = RelatednessCallback(benchmarks=["ws353"], oov="zero")
    kv = KeyedVectors(["tiger", "cat", "love", "sex"], np.random.default_rng(0).normal(size=(4, 3)))
    out = cb.compute(kv)
    assert out["relatedness/ws353_pairs_used"] == 353
    assert out["relatedness/ws353"] == pytest.approx(score(kv, load_benchmark("ws353"), oov="zero", n_boot=0).rho,
                                                     abs=1e-6)
