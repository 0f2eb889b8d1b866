"""Skip-gram's one training callable per pair mode (text/training.py), the loader's length (the progress
bar's total), and errors that name the argument (the CLI maps it to --data./--model./--trainer. keys)."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mmlightning import cli
from mmlightning.errors import UserError
from mmlightning.text.corpus import prepare_corpus
from mmlightning.text.data import PairChunks, SkipGramDataModule, Stretches
from mmlightning.text.device_pairs import DevicePairs
from mmlightning.text.native import NativeKernel, NativeTrainer, Sampling
from mmlightning.text.sgns import ChunkTrainer, alias_table
from mmlightning.text.skipgram import SkipGram
from mmlightning.text.train import SkipgramConfig
from mmlightning.text.training import ChunkTraining, PairTraining
from test_skipgram import two_topic_corpus


class Count(pl.Callback):
    """The loader's length as Lightning sees it (the bar's total) and the batches each epoch really yields."""

    def __init__(self):
        self.totals, self.seen, self.training = [], [], None

    def on_train_epoch_start(self, trainer, pl_module):
        self.totals.append(trainer.num_training_batches)
        self.seen.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen[-1] += 1
        self.training = pl_module._train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sgt")
    return str(two_topic_corpus(tmp / "c.txt", 700)), tmp / "cache"  # 7,000 words: 7 chunks of 1,000


@pytest.mark.parametrize("pairs,workers", [("host", 0), ("host", 2), ("native", 0), ("native", 2), ("device", 0)])
def test_the_loader_length_is_the_batches_of_an_epoch_and_each_mode_has_one_training(corpus, tmp_path, pairs,
                                                                                      workers):
    text, cache = corpus
    dm = SkipGramDataModule(corpus=text, cache_dir=str(cache), min_count=1, chunk_words=1000, num_workers=workers,
                            pairs=pairs, stretch_words=3000)
    count = Count()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[count])
    trainer.fit(SkipGram(dim=8, compile=False, output_dir=None), datamodule=dm)
    want = {0: 7, 2: 8}[workers] if pairs != "device" else 3  # 2 workers: padded to a multiple of 2
    assert count.totals == [want, want] and count.seen == [want, want]  # a total for the bar, and exact
    assert len(trainer.train_dataloader) == want
    assert isinstance(count.training, ChunkTraining)
    assert type(count.training) is (NativeTrainer if pairs == "native" else PairTraining)
    if pairs != "native":
        assert count.training.updates.batch_pairs == (4096 if pairs == "device" else 1024)


def test_the_length_per_rank_and_worker_matches_what_they_yield(corpus):
    text, cache = corpus
    enc = prepare_corpus(text, cache, min_count=1)
    for world in (1, 2):
        for workers in (0, 2, 3):
            for rank in range(world):
                ds = PairChunks(str(enc.path), 5, 3, 1e-3, 1000, seed=1, rank=rank, world_size=world,
                                loader_workers=workers)
                loader = DataLoader(ds, batch_size=None, num_workers=workers)
                assert len(loader) == sum(1 for _ in loader), (world, workers, rank)
        for rank in range(world):
            pairs = DevicePairs(enc.tokens, enc.sentences, enc.counts, 5, 3, 1e-3, 2500, 1, rank, world)
            loader = DataLoader(Stretches(pairs), batch_size=None)
            assert len(loader) == sum(1 for _ in loader) == -(-3 // world)  # 7,000 words: 3 stretches


def _pairs_batch(P=1000, V=30, K1=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input": torch.randint(0, V, (P,), generator=g), "output": torch.randint(0, V, (P, K1), generator=g),
            "epoch": 1, "chunk": 2, "n_chunks": 5}


def _tables(V=30, D=8):
    g = torch.Generator().manual_seed(1)
    return torch.rand(V, D, generator=g) - 0.5, torch.rand(V, D, generator=g) - 0.5


def test_a_chunk_trained_in_shares_is_the_chunk_trained_whole():
    """What lets the visual step come between shares of a device stretch: the same updates, in order."""
    batch = _pairs_batch()
    whole = _tables()
    PairTraining(ChunkTrainer(64, 0.05, 0.001, 3, False, "cpu"))(*whole, batch)
    shares = _tables()
    train = PairTraining(ChunkTrainer(64, 0.05, 0.001, 3, False, "cpu"))
    for part in range(3):
        assert train(*shares, batch, part, 3) == {}
    assert torch.equal(whole[0], shares[0]) and torch.equal(whole[1], shares[1])
    direct = _tables()  # and the same as ChunkTrainer's own sub-batches
    ChunkTrainer(64, 0.05, 0.001, 3, False, "cpu")(*direct, batch["input"], batch["output"], 1, 2, 5)
    assert torch.equal(whole[0], direct[0])


def test_native_chunks_are_trained_whole():
    fake = type("K", (), {"train": lambda self, *a, **k: (0, float("nan"))})()
    native = NativeTrainer(fake, Sampling(np.ones(1), alias_table(np.ones(1)), 2, 1), 0.03, 0.01, max_epochs=1)
    assert isinstance(native, ChunkTraining)
    ids = np.zeros(10, np.int32)
    batch = {"tokens": ids, "sent": ids, "seed": 1, "epoch": 0, "chunk": 0, "n_chunks": 1}
    assert native(None, None, batch)["pairs"] == 0
    with pytest.raises(ValueError, match="trained whole"):
        native(None, None, batch, 0, 2)


def test_errors_name_the_argument_and_the_cli_maps_it_to_its_key(corpus, monkeypatch):
    with pytest.raises(UserError) as e:
        SkipGramDataModule(sample=-1)
    assert str(e.value) == "sample: must be >= 0, got -1"
    assert cli.user_error_message(e.value, "fit") == "--data.sample: must be >= 0, got -1"
    for kwargs, message in (({"dim": 0}, "--model.dim: must be >= 1, got 0"),
                            ({"lr": 0.0}, "--model.lr: must be > 0, got 0.0"),
                            ({"min_lr": 0.5}, "--model.min_lr: must be in [0, lr = 0.025], got 0.5"),
                            ({"visual_vectors": "v.txt", "visual_negatives": 0},
                             "--model.visual_negatives: must be >= 1, got 0")):
        with pytest.raises(UserError) as e:
            SkipGram(**kwargs)
        assert cli.user_error_message(e.value, "fit") == message
    with pytest.raises(UserError) as e:
        SkipgramConfig(epochs=0)
    assert str(e.value) == "skipgram.epochs: 0 must be >= 1"
    assert cli.user_error_message(e.value, "reproduce") == "--skipgram.epochs: 0 must be >= 1"
    monkeypatch.setattr(NativeKernel, "load", classmethod(lambda cls: None))
    with pytest.raises(UserError) as e:
        SkipGramDataModule(pairs="native").pair_mode()
    assert cli.user_error_message(e.value, "fit").startswith("--data.pairs: native needs the compiled kernel")
    text, cache = corpus
    dm = SkipGramDataModule(corpus=text, cache_dir=str(cache), min_count=1, num_workers=0, pairs="host")
    trainer = pl.Trainer(max_epochs=-1, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(UserError) as e:
        trainer.fit(SkipGram(dim=8, compile=False, output_dir=None), datamodule=dm)
    assert cli.user_error_message(e.value, "fit").startswith("--trainer.max_epochs: must be set")
