"""Skip-gram with negative sampling (word2vec's SGNS) as a LightningModule: past gensim on a CPU, and on a GPU.

    python -m mmlightning fit --config configs/skipgram.yaml                 # GCIDE, 100 dims, 5 epochs
    python -m mmlightning fit --config configs/skipgram.yaml --ckpt_path checkpoints/skipgram/ckpt/last.ckpt
    python -m mmlightning fit --config configs/skipgram.yaml --trainer.accelerator gpu   # pairs made on the GPU
    from mmlightning.text.train import SkipgramConfig, train_skipgram
    vectors_txt = train_skipgram(SkipgramConfig(epochs=5), "checkpoints/skipgram", corpus=["gcide"])  # in Python

The maths (sub-sampling, dynamic windows, unigram^0.75 negatives, the update, the linear learning rate
over the whole run) is in sgns.py; input vectors start uniform(-0.5/D, 0.5/D), output vectors at zero;
the input vectors are the word vectors. The data (data.py) gives batches of either a 16k-word chunk
that the compiled kernel (native.py, the CPU default) turns into pairs and trains one pair at a time,
or pairs made on the host (numpy, per chunk, trained in sub-batches of `batch_pairs`) or on the device
(torch, per stretch of ~1M words, trained in sub-batches of `device_batch_pairs`); each pair mode has one
training callable (training.py), chosen in `setup`. A step: that callable trains the batch (unless a
Hogwild worker did), then, with `visual_vectors`, MMSkip-gram's visual step (Lazaridou et al. 2015;
mmskipgram.py) pulls the chunk's pictured words toward their visual vectors (device pairs: the stretch is
trained in chunk-sized shares, each followed by its visual step), then the bookkeeping (count, sync, log).

On CPU with `data.num_workers = N > 0` the N DataLoader worker processes also train, Hogwild-style: the
tables live in shared memory and every worker updates them lock-free, as word2vec's threads do
(`hogwild_workers`); the training process then only counts, logs and checkpoints. Otherwise (GPU, DDP,
num_workers 0) the training process trains (`hogwild_threads > 1` adds Python threads there).

Under DDP every rank takes every world-th chunk (or stretch); counts are padded so all ranks run the same
number of steps; every `sync_every` steps (and at each epoch end) each rank's change to the tables since
the last sync is summed over ranks (all_reduce) and applied everywhere, as lock-free threads would.

Outputs (`output_dir`, default checkpoints/skipgram): `vocab.tsv` (word<TAB>count) and `vectors.txt`
(word2vec text) written atomically at the end of fit by `ExportVectors`; checkpoints by the trainer.
The configured `output_dir` is not a saved hyperparameter, so resuming from another run's checkpoint
writes into the folder configured now.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from mmlightning.errors import UserError
from mmlightning.text.mmskipgram import PAPER_MARGIN, PAPER_NEGATIVES, VisualObjective, check_settings, init_map
from mmlightning.text.data import PairChunks, SkipGramDataModule  # noqa: F401 (configs name them here too)
from mmlightning.text.native import MAX_NATIVE_DIM, NativeKernel, NativeTrainer
from mmlightning.text.sgns import (ChunkTrainer, alias_table, draw_negatives, keep_probabilities,  # noqa: F401
                                   linear_lr, make_pairs, negative_probabilities, sgns_loss, sgns_update)
from mmlightning.text.training import ChunkTraining, PairTraining
from mmlightning.vectors import KeyedVectors


class SkipGram(pl.LightningModule):
    """SGNS tables syn0 (input, the word vectors) and syn1 (output), trained by `sgns_update`.

    The tables are created in `setup` from the datamodule's vocabulary (V is known only then): the module
    uses two public methods of the datamodule, `vocabulary()` (the Trainer sets the datamodule up before
    the module) and `hogwild()` (the slot through which DataLoader workers train, or None); it neither
    sets the datamodule up nor touches its dataset. The checkpoint carries the vocabulary, so vectors can
    be exported without the corpus.
    """

    def __init__(self, dim: int = 100, lr: float = 0.025, min_lr: float = 0.0001, batch_pairs: int = 1024,
                 hogwild_threads: int = 1, intra_op_threads: int = 1, compile: bool = True, sync_every: int = 1,
                 hogwild_workers: bool = True, seed: int = 1, output_dir: str | None = "checkpoints/skipgram",
                 device_batch_pairs: int = 4096, cuda_graphs: bool = True, visual_vectors: str | None = None,
                 visual_variant: str = "B", visual_margin: float = PAPER_MARGIN,
                 visual_negatives: int = PAPER_NEGATIVES, visual_weight: float = 1.0, visual_map_l2: float = 0.0):
        """
        Args:
            dim: vector dimension.
            lr: initial learning rate (word2vec's alpha for skip-gram: 0.025).
            min_lr: final learning rate, reached at the end of the last epoch.
            batch_pairs: pairs per SGD update (sub-batch of a chunk).
            hogwild_threads: parallel threads updating the shared tables lock-free in whatever process trains
                a chunk (the training process, or each Hogwild worker; 1: none); host pairs: the chunk's
                sub-batches dealt out; native pairs: each chunk cut into this many parts, trained at once.
            intra_op_threads: torch intra-op threads (1 is fastest for these small ops).
            compile: fuse `sgns_update` into one kernel with torch.compile (falls back to eager if it fails).
            hogwild_workers: on CPU with one device and data.num_workers > 0, the DataLoader workers train
                (lock-free, on the tables in shared memory) as well as make pairs: word2vec's threads.
            sync_every: under DDP, combine the ranks' tables every this many steps (chunks) and at epoch end.
            seed: seed of the initial vectors.
            output_dir: where vocab.tsv and vectors.txt are written at the end of fit (None: not written).
            device_batch_pairs: pairs per SGD update for pairs made on the device (data.pairs: device).
            cuda_graphs: on a CUDA device, replay each sub-batch's update as one captured CUDA graph.
            visual_vectors: MMSkip-gram (mmskipgram.py): a visual vectors file (any format load_vectors reads);
                each occurrence of a word that has one adds the paper's max-margin term (None: text only).
            visual_variant: A (the word vector vs the visual vectors PCA-reduced to dim) or B (a linear map
                word -> visual space, learned jointly).
            visual_margin: the term's margin (the paper's 0.5).
            visual_negatives: visual negatives per occurrence (the paper's: A 20, B 5).
            visual_weight: the term's weight (its learning rate is lr x weight).
            visual_map_l2: B's L2 penalty lambda on the map, per visual occurrence (the paper's B: 1e-4; default 0).
        """
        super().__init__()
        for name, value in (("dim", dim), ("batch_pairs", batch_pairs), ("device_batch_pairs", device_batch_pairs),
                            ("hogwild_threads", hogwild_threads), ("intra_op_threads", intra_op_threads),
                            ("sync_every", sync_every)):
            if value < 1:
                raise UserError(f"must be >= 1, got {value}", argument=name, owner=self)
        if lr <= 0:
            raise UserError(f"must be > 0, got {lr}", argument="lr", owner=self)
        if not 0 <= min_lr <= lr:
            raise UserError(f"must be in [0, lr = {lr}], got {min_lr}", argument="min_lr", owner=self)
        if visual_vectors:
            check_settings(visual_variant, visual_margin, visual_negatives, visual_weight, owner=self,
                           map_l2=visual_map_l2)
        self.save_hyperparameters(ignore=["output_dir"])  # the configured output wins over a checkpoint's
        self.output_dir = output_dir
        self.automatic_optimization = False
        self.words: list[str] = []
        self.counts: np.ndarray = np.zeros(0, np.int64)
        self.vocab_hash = ""
        self.syn0: torch.nn.Parameter | None = None
        self.syn1: torch.nn.Parameter | None = None
        self.vis_map: torch.nn.Parameter | None = None  # (Dv, D): variant B's map, learned jointly
        self._visual: VisualObjective | None = None
        self._visual_loss = float("nan")
        self._keep: torch.Tensor | None = None  # (V,) keep probabilities: the native mode's visual weights
        self._train: ChunkTraining | None = None  # the pair mode's training callable (training.py)
        self._epochs = 1
        self._synced: list[torch.Tensor] | None = None
        self._t0 = None
        self._words_seen = 0

    # -- tables ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if not callable(getattr(dm, "vocabulary", None)):
            raise UserError("SkipGram trains on a SkipGramDataModule (mmlightning.text.data), which gives its "
                            "vocabulary; this data module has none")
        self.set_vocabulary(*dm.vocabulary())  # the Trainer has set the datamodule up before this hook
        self._threads_before = torch.get_num_threads()  # given back in teardown: later stages keep theirs
        torch.set_num_threads(self.hparams.intra_op_threads)
        self._epochs = self.trainer.max_epochs or 1
        mode = dm.pair_mode() if callable(getattr(dm, "pair_mode", None)) else "host"
        self._train = self._mode_training(mode, dm)
        self._visual = None
        if self.hparams.visual_vectors:
            self._setup_visual(dm, mode)
        workers = dm.hogwild() if callable(getattr(dm, "hogwild", None)) else None
        if self.hparams.hogwild_workers and workers is not None:  # workers fork after this, train the same memory
            self._train.before_fork(len(self.words), self.hparams.dim, workers.negative + 1)
            workers.attach(self.syn0.data, self.syn1.data, self._train)

    def _mode_training(self, mode: str, dm) -> ChunkTraining:
        """The training callable of pair mode `mode` ('host', 'native' or 'device'; training.py)."""
        h, root = self.hparams, self.trainer.strategy.root_device.type
        if mode == "native":  # (the datamodule's setup has built the kernel)
            if h.dim > MAX_NATIVE_DIM:
                raise UserError(f"the native kernel trains up to {MAX_NATIVE_DIM} dimensions, got {h.dim}; "
                                "use host pairs", argument="dim", owner=self)
            return NativeTrainer(NativeKernel.load(), dm.sampling(), h.lr, h.min_lr, self._epochs,
                                 threads=h.hogwild_threads)
        if mode == "device":  # compiled on CPU only; on CUDA one captured graph per sub-batch (launch-bound otherwise)
            return PairTraining(ChunkTrainer(h.device_batch_pairs, h.lr, h.min_lr, self._epochs,
                                             h.compile and root == "cpu", root, graphs=h.cuda_graphs))
        return PairTraining(ChunkTrainer(h.batch_pairs, h.lr, h.min_lr, self._epochs, h.compile, root),
                            threads=h.hogwild_threads)

    def _setup_visual(self, dm, mode: str) -> None:
        """The visual objective for this vocabulary, B's map (unless a checkpoint's comes), words in batches."""
        h = self.hparams
        self._visual = VisualObjective.from_file(h.visual_vectors, self.words, h.dim, h.visual_variant, seed=h.seed,
                                                 margin=h.visual_margin, negatives=h.visual_negatives,
                                                 weight=h.visual_weight, map_l2=h.get("visual_map_l2", 0.0))
        shape = (self._visual.visual_dim, h.dim)
        if h.visual_variant == "B" and (self.vis_map is None or tuple(self.vis_map.shape) != shape):
            self.vis_map = torch.nn.Parameter(init_map(*shape, seed=h.seed))  # (Dv, D)
        if not callable(getattr(dm, "carry_words", None)):
            raise UserError("the data module cannot carry its words (use SkipGramDataModule)",
                            argument="visual_vectors", owner=self)
        dm.carry_words()
        self._keep = torch.from_numpy(dm.sampling().keep).float() if mode == "native" else None  # (V,)

    def set_vocabulary(self, words: Sequence[str], counts: np.ndarray) -> None:
        """Create word2vec-initialised tables for `words` (no-op if they exist for the same words)."""
        if self.syn0 is not None and list(words) == self.words:
            return
        self.words = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.vocab_hash = _vocab_hash(self.words)
        V, D = len(self.words), self.hparams.dim
        gen = torch.Generator().manual_seed(self.hparams.seed)
        self.syn0 = torch.nn.Parameter((torch.rand(V, D, generator=gen) - 0.5) / D)  # (V, D)
        self.syn1 = torch.nn.Parameter(torch.zeros(V, D))  # (V, D)

    def word_vectors(self) -> KeyedVectors:
        """The input embeddings as KeyedVectors (a copy, float32)."""
        if self.syn0 is None:
            raise UserError("SkipGram has no vectors yet (fit it or load a checkpoint first)")
        return KeyedVectors(self.words, self.syn0.detach().float().cpu().numpy().copy())

    def configure_optimizers(self):
        # The update is sgns_update; this no-op optimizer (lr 0, and no .grad ever) is stepped once per
        # batch only so that Lightning counts global steps (checkpoints, logging, resume rely on them).
        return torch.optim.SGD([self.syn0], lr=0.0)

    def configure_callbacks(self):
        return [ExportVectors(self.output_dir)] if self.output_dir else []

    # -- training -------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 1:
            raise UserError("must be set (the learning rate decays over the whole run)", argument="max_epochs",
                            owner=self.trainer)
        self._t0, self._words_seen = time.perf_counter(), 0

    def lr_at(self, epoch_fraction: float) -> float:
        """Learning rate at `epoch_fraction` (0..1) of the current epoch (linear decay over all epochs)."""
        return linear_lr((self.current_epoch + epoch_fraction) / self._epochs, self.hparams.lr, self.hparams.min_lr)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Train the batch (unless a Hogwild worker has), the visual step, then count, sync and log.

        Device stretches with the visual objective come in `slices` shares, each trained then followed
        by its visual step; every other batch is one share.
        """
        if "epoch" in batch and int(batch["epoch"]) != self.current_epoch:
            raise RuntimeError(f"pairs of epoch {int(batch['epoch'])} in epoch {self.current_epoch}")
        parts, stats = int(batch.get("slices", 1)), batch  # (a worker's batch carries its stats)
        for part in range(parts):
            if not batch.get("trained", False):
                stats = self._train(self.syn0.data, self.syn1.data, batch, part, parts)
            self._visual_step(batch, part, parts)
        self._after_step(batch, batch_idx, stats.get("loss"))

    def _visual_step(self, batch: dict[str, Any], part: int, parts: int) -> None:
        """The visual term's step after share `part` of `parts` of a batch, on that share of its words.

        Host and device batches carry their sub-sampled words 'kept' (m,); native ones all their words
        'tokens' (n,), each counted with its keep probability (the kernel sub-samples inside C).
        """
        if self._visual is None:
            return
        chunk, n_chunks = int(batch["chunk"]), int(batch["n_chunks"])
        words = batch["kept"] if "kept" in batch else batch["tokens"].long()  # (m,)
        words = words[part * len(words) // parts:(part + 1) * len(words) // parts]  # this share's
        weights = None if "kept" in batch else self._keep[words].to(self.device)  # (m,) or None
        rows, counts = self._visual.to(self.device).counts(words.to(self.device), weights)
        neg = self._visual.draw_negatives(self.current_epoch, chunk, part)  # (K,)
        vmap = None if self.vis_map is None else self.vis_map.data
        lr = self.lr_at((chunk + (part + 1) / parts) / n_chunks)
        self._visual_loss = self._visual.step(self.syn0.data, vmap, rows, counts, neg, lr)

    def _tables(self) -> list[torch.nn.Parameter]:
        """What training changes: syn0, syn1 and (variant B) the visual map."""
        return [p for p in (self.syn0, self.syn1, self.vis_map) if p is not None]

    def _after_step(self, batch: dict[str, Any], batch_idx: int, loss: float | None) -> None:
        """Count the step, sync ranks, log words/s, lr and (every 50 steps) a loss sample (`loss`, or of the
        batch's first `batch_pairs` pairs)."""
        chunk, n_chunks, B = int(batch["chunk"]), int(batch["n_chunks"]), self.hparams.batch_pairs

        self.optimizers().step()  # counts the step; changes nothing (see configure_optimizers)
        self._words_seen += int(batch["words"])
        if self.trainer.world_size > 1 and self.global_step % self.hparams.sync_every == 0:
            self.average_across_ranks()  # every rank runs the same number of steps (padded chunks)
        elapsed = time.perf_counter() - self._t0
        self.log("words_per_s", self._words_seen * self.trainer.world_size / max(elapsed, 1e-9),
                 prog_bar=True, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
        self.log("lr", self.lr_at((chunk + 1) / n_chunks), on_step=True, on_epoch=False, batch_size=1,
                 rank_zero_only=True)
        if self._visual is not None:
            self.log("visual_loss", self._visual_loss, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
        if batch_idx % 50 == 0 and (loss is not None or len(batch.get("input", ()))):
            if loss is None:
                inp, out = batch["input"][:B].to(self.device), batch["output"][:B].to(self.device)  # (B,), (B, K+1)
                with torch.no_grad():
                    loss = sgns_loss(self.syn0.data, self.syn1.data, inp, out)
            elif loss != loss:  # nan: a padding chunk, nothing sampled
                return
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=1,
                     rank_zero_only=True)

    def on_train_epoch_end(self) -> None:
        if self.trainer.world_size > 1:
            self.average_across_ranks()

    def average_across_ranks(self) -> None:
        """Combine the ranks' work under DDP: tables = tables at the last sync + the SUM of every rank's change.

        Summing the changes (not averaging the tables) applies every rank's SGD steps in full, as Hogwild
        threads would, so N ranks learn from N chunks per step; averaging would halve each update.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        with torch.no_grad():
            if self._synced is None:  # tables as of the start (identical on every rank: same seed)
                self._synced = [p.data.clone() for p in self._tables()]
            for p, base in zip(self._tables(), self._synced):
                delta = p.data - base  # (V, D) this rank's change since the last sync
                dist.all_reduce(delta, op=dist.ReduceOp.SUM)
                p.data.copy_(base.add_(delta))  # base becomes the new common tables

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:
            self._synced = [p.data.clone() for p in self._tables()]  # after DDP's broadcast

    def teardown(self, stage: str) -> None:
        if self._train is not None:
            self._train.close()
        if getattr(self, "_threads_before", None):  # later stages in this process keep their threads
            torch.set_num_threads(self._threads_before)

    # -- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipgram"] = {"words": self.words, "counts": self.counts.tolist(), "vocab_hash": self.vocab_hash}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("skipgram")
        if info is None:
            raise UserError("checkpoint: not a SkipGram checkpoint (no 'skipgram' entry)")
        if self.syn0 is None:  # loaded outside fit: take the checkpoint's vocabulary
            self.set_vocabulary(info["words"], np.asarray(info["counts"]))
        elif info["vocab_hash"] != self.vocab_hash:
            raise UserError(f"checkpoint: its vocabulary ({len(info['words'])} words, {info['vocab_hash']}) is not "
                            f"this corpus's ({len(self.words)} words, {self.vocab_hash}); same corpus and "
                            "min_count are needed to resume")
        vmap = checkpoint.get("state_dict", {}).get("vis_map")
        if vmap is not None and self.vis_map is None:  # (variant B) a place for the checkpoint's map
            self.vis_map = torch.nn.Parameter(torch.zeros_like(vmap))


def _vocab_hash(words: Sequence[str]) -> str:
    import hashlib
    return hashlib.sha1("\n".join(words).encode()).hexdigest()[:16]


class ExportVectors(pl.Callback):
    """At the end of fit, writes `<dirpath>/vocab.tsv` and `<dirpath>/vectors.txt` (word2vec text), atomically."""

    def __init__(self, dirpath: str = "checkpoints/skipgram"):
        """
        Args:
            dirpath: folder for vocab.tsv and vectors.txt.
        """
        super().__init__()
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: pl.Trainer, pl_module: SkipGram) -> None:
        if trainer.global_rank != 0:
            return
        write_outputs(self.dirpath, pl_module.word_vectors(), pl_module.counts)


def write_outputs(dirpath: str | os.PathLike, kv: KeyedVectors, counts: np.ndarray) -> Path:
    """Write vocab.tsv and vectors.txt under `dirpath` atomically; returns the vectors path."""
    from mmlightning.atomic import write_text
    dirpath = Path(dirpath)
    write_text(dirpath / "vocab.tsv", "".join(f"{w}\t{int(c)}\n" for w, c in zip(kv.index_to_key, counts)))
    kv.save_word2vec(dirpath / "vectors.txt")
    return dirpath / "vectors.txt"
