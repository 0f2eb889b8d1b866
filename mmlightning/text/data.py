"""The skip-gram data: the corpus (cached as word ids) and its stream of chunks or pairs, for the kernel, host or device.

    data:
      class_path: mmlightning.text.data.SkipGramDataModule
      init_args: {corpus: [gcide], min_count: 5, window: 5, negative: 5, sample: 0.001, pairs: auto}

`pairs: native` (the default on CPU, where a C compiler is found): a chunk of `chunk_words` corpus words
is one Lightning batch {'tokens': (n,) int32, 'sent': (n,) int32, 'seed', ...}; the compiled kernel
(native.py) makes its pairs and trains them at once, word2vec.c's way. `pairs: host`: numpy makes the
pairs of each chunk in the DataLoader workers or the training process (and torch trains them).
`pairs: device` (the default when the trainer's root device is an accelerator): the corpus is copied to
the device once, the DataLoader only names a stretch of `stretch_words` corpus positions per step, and
`on_after_batch_transfer` turns it into that stretch's pairs and negatives on the device (device_pairs.py). Either way a batch is
{'input': (P,), 'output': (P, K+1), 'chunk', 'n_chunks', 'words', 'epoch'} (or the native chunk), and
the pairs depend only on (seed, epoch, chunk): not on the number of workers or ranks.

What the model needs from here goes through three public methods: `vocabulary()` (words and counts,
after `setup`), `sampling()` (what the native kernel samples with) and `hogwild()` (the `WorkerTraining`
slot through which DataLoader workers train, when they can: CPU, one process, num_workers > 0, host or
native pairs). The loader has a length (this rank's batches per epoch, as its workers divide the chunks),
so Lightning's progress bar shows a total and an ETA.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmlightning.errors import UserError
from mmlightning.text.corpus import EncodedCorpus, load_encoded, prepare_corpus
from mmlightning.text.device_pairs import DevicePairs, stretch_seed
from mmlightning.text.native import Sampling, resolve_pairs
from mmlightning.text.sgns import alias_table, draw_negatives, keep_probabilities, make_pairs
from mmlightning.text.training import ChunkTraining


class WorkerTraining:
    """The Hogwild slot: tables in shared memory and the pair mode's training callable (training.py).

    The model fills it (`attach`) before the DataLoader workers fork; each worker then trains every chunk
    it makes, lock-free on the same memory (word2vec's threads), and sends back only a loss sample.
    """

    def __init__(self, negative: int):
        self.negative = negative  # K: a pair's output row holds K + 1 words (for compiling before the fork)
        self.tables: tuple[torch.Tensor, torch.Tensor] | None = None
        self.train: ChunkTraining | None = None

    def attach(self, syn0: torch.Tensor, syn1: torch.Tensor, train: ChunkTraining) -> None:
        """Share (V, D) tables (moved to shared memory) and `train(syn0, syn1, batch) -> dict` (stats to send back)."""
        syn0.share_memory_()
        syn1.share_memory_()
        self.tables, self.train = (syn0, syn1), train

    @property
    def active(self) -> bool:
        return self.tables is not None and self.train is not None


class PairChunks(IterableDataset):
    """Host pairs: one dict per corpus chunk {'input': (P,), 'output': (P, K+1), 'chunk', 'n_chunks', 'words', 'epoch'}.

    With `native`, a chunk is its words instead: {'tokens': (n,) int32, 'sent': (n,) int32 sentence ids,
    'seed': the chunk's 63-bit seed, ...}, for the compiled kernel to make and train its pairs.

    Chunks (of `chunk_words` corpus words) go round-robin to (rank, worker) slots; the chunk list is
    padded with empty chunks so every slot yields the same number. Randomness is seeded by
    (seed, epoch, chunk). Each iteration is one epoch: the first is `first_epoch`, then one more each time.
    `len()` is this rank's chunks per epoch when read by a DataLoader of `loader_workers` workers.
    """

    def __init__(self, corpus_dir: str, window: int, negative: int, sample: float, chunk_words: int,
                 seed: int, rank: int = 0, world_size: int = 1, workers: WorkerTraining | None = None,
                 native: bool = False, loader_workers: int = 0):
        self.corpus_dir, self.native = corpus_dir, native
        self.window, self.negative, self.sample = window, negative, sample
        self.chunk_words, self.seed = chunk_words, seed
        self.rank, self.world_size, self.loader_workers = rank, world_size, loader_workers
        self.start_at(0)
        self._enc: EncodedCorpus | None = None
        self._n_tokens: int | None = None
        self.workers = workers
        self.carry_words = False  # batches also carry their words (for the visual objective, mmskipgram.py)

    def start_at(self, epoch: int) -> None:
        """The next iteration makes epoch `epoch`, each later one the next (persistent workers count their own)."""
        self.first_epoch, self._epochs_done = epoch, 0

    def _corpus(self) -> EncodedCorpus:
        if self._enc is None:  # opened lazily in each worker: the memmap is never pickled
            self._enc = load_encoded(self.corpus_dir)
            if not self.native:  # (native chunks are sampled by the kernel, with the model's Sampling)
                self._keep = keep_probabilities(self._enc.counts, self.sample)  # (V,)
                self._table = alias_table(self._enc.counts)  # (V,), (V,)
        return self._enc

    def n_chunks(self, workers: int = 1) -> int:
        """Chunks per epoch including padding, for `workers` dataloader workers per rank."""
        if self._n_tokens is None:  # (a length, not the memmap: the parent process keeps no open corpus)
            self._n_tokens = (self._enc or load_encoded(self.corpus_dir)).n_tokens
        n = math.ceil(self._n_tokens / self.chunk_words)
        slots = self.world_size * max(workers, 1)
        return math.ceil(n / slots) * slots

    def __len__(self) -> int:
        """This rank's chunks per epoch: its `loader_workers` slots (one without workers) take as many each."""
        return self.n_chunks(self.loader_workers) // self.world_size

    def chunk(self, c: int, epoch: int) -> dict[str, Any]:
        """The pairs of chunk `c` in epoch `epoch` (seeded by both)."""
        enc = self._corpus()
        lo, hi = c * self.chunk_words, min((c + 1) * self.chunk_words, enc.n_tokens)
        if self.native:
            ids = np.asarray(enc.tokens[lo:hi], dtype=np.int32)  # (n,), empty for a padding chunk
            sent = np.searchsorted(enc.sentences, np.arange(lo, max(hi, lo)), side="right").astype(np.int32)  # (n,)
            return {"native": True, "tokens": torch.from_numpy(ids), "sent": torch.from_numpy(sent),
                    "seed": stretch_seed(self.seed, epoch, c), "chunk": c, "words": max(hi - lo, 0), "epoch": epoch}
        rng = np.random.default_rng([self.seed, epoch, c])
        if lo >= hi:  # padding chunk
            centre = context = kept = np.zeros(0, np.int64)
        else:
            ids = np.asarray(enc.tokens[lo:hi])  # (n,)
            sent = np.searchsorted(enc.sentences, np.arange(lo, hi), side="right")  # (n,)
            # (P,), (P,) pairs and the (m,) sub-sampled words they come from
            centre, context, kept = make_pairs(ids, sent, self._keep, self.window, rng, return_kept=True)
        neg = draw_negatives(self._table, centre, self.negative, rng)  # (P, K)
        out = np.concatenate([centre[:, None], neg], axis=1)  # (P, K+1)
        item = {"input": torch.from_numpy(context), "output": torch.from_numpy(out),
                "chunk": c, "words": max(hi - lo, 0), "epoch": epoch}
        if self.carry_words:  # the sub-sampled words, (m,) int64
            item["kept"] = torch.from_numpy(kept)
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        n = self.n_chunks(nw)
        slot, slots = self.rank * nw + wid, self.world_size * nw
        hogwild = info is not None and self.workers is not None and self.workers.active
        epoch = self.first_epoch + self._epochs_done
        self._epochs_done += 1
        for c in range(slot, n, slots):
            item = self.chunk(c, epoch)
            item["n_chunks"] = n
            if hogwild:  # train here, lock-free on the shared tables; send back only what the step logs
                item.update(self.workers.train(*self.workers.tables, item))  # as training_step would
                if self.native:
                    del item["sent"]
                    if not self.carry_words:
                        del item["tokens"]
                else:
                    item["input"], item["output"] = item["input"][:256].clone(), item["output"][:256].clone()
                item["trained"] = True
            yield item


class Stretches(IterableDataset):
    """Device pairs: names one stretch per step {'chunk', 'n_chunks', 'words', 'epoch'}; pairs come later, on the device."""

    def __init__(self, pairs: DevicePairs):
        self.source = pairs
        self.start_at(0)

    def start_at(self, epoch: int) -> None:
        """The next iteration makes epoch `epoch`, each later one the next epoch."""
        self.first_epoch, self._epochs_done = epoch, 0

    def __len__(self) -> int:
        """This rank's stretches per epoch."""
        return len(self.source.stretches())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.first_epoch + self._epochs_done
        self._epochs_done += 1
        n = self.source.n_stretches()
        for s in self.source.stretches():
            yield {"chunk": s, "n_chunks": n, "words": self.source.words(s), "epoch": epoch}


class SkipGramDataModule(pl.LightningDataModule):
    """The corpus (cached as word ids) and its stream of skip-gram pairs with negatives."""

    def __init__(self, corpus: list[str] | str = "gcide", cache_dir: str = "checkpoints/corpus_cache",
                 min_count: int = 5, max_vocab: int | None = None, window: int = 5, negative: int = 5,
                 sample: float = 1e-3, chunk_words: int = 16384, num_workers: int = 2, seed: int = 1,
                 download: bool = False, pairs: Literal["auto", "host", "device", "native"] = "auto",
                 stretch_words: int = 1 << 20):
        """
        Args:
            corpus: sources read in order: 'gcide', 'text8', files (.txt, .txt.gz, BNC .xml) or folders.
            cache_dir: where the vocabulary and encoded corpus are cached (keyed by files + settings).
            min_count: drop words seen fewer times (word2vec's min_count).
            max_vocab: keep at most this many most frequent words (None: no limit).
            window: maximum window; each centre draws its window in 1..window.
            negative: negatives per pair, drawn from unigram^0.75.
            sample: sub-sampling threshold (word2vec's -sample; 0 disables).
            chunk_words: corpus words per Lightning batch with host pairs (pairs are made per chunk).
            num_workers: DataLoader worker processes making host pairs, and training on CPU (0: all in the training process).
            seed: seed of sub-sampling, windows and negatives.
            download: allow downloading text8 if it is named and missing.
            pairs: where pairs are made: 'native' (the compiled kernel, which also trains them; CPU only),
                'host' (numpy, per chunk), 'device' (torch, on the trainer's device, per stretch), 'auto'
                (device on an accelerator; on CPU native, or host where no C compiler builds the kernel).
            stretch_words: corpus words per Lightning batch with device pairs.
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value, low in (("window", window, 1), ("negative", negative, 1), ("chunk_words", chunk_words, 1),
                                 ("min_count", min_count, 1), ("num_workers", num_workers, 0),
                                 ("stretch_words", stretch_words, 1)):
            if value < low:
                raise UserError(f"must be >= {low}, got {value}", argument=name, owner=self)
        if sample < 0:
            raise UserError(f"must be >= 0, got {sample}", argument="sample", owner=self)
        if pairs not in ("auto", "host", "device", "native"):
            raise UserError(f"must be auto, host, device or native, got {pairs!r}", argument="pairs", owner=self)
        self.corpus = corpus
        self.encoded: EncodedCorpus | None = None
        self.dataset: PairChunks | Stretches | None = None
        self.device_pairs: DevicePairs | None = None
        self._workers = WorkerTraining(negative)
        self._carry = False

    def prepare_data(self) -> None:
        prepare_corpus(self.corpus, self.hparams.cache_dir, self.hparams.min_count, self.hparams.max_vocab,
                       download=self.hparams.download, progress=True)

    def pair_mode(self) -> str:
        """'native', 'host' or 'device': `pairs`, with 'auto' resolved by the trainer's root device."""
        root = self.trainer.strategy.root_device.type if self.trainer is not None else "cpu"
        mode = self.hparams.pairs
        if mode == "native" and root != "cpu":
            raise UserError(f"native trains on the CPU; the trainer's device is {root} (use device or auto)",
                            argument="pairs", owner=self)
        return resolve_pairs(mode, root, owner=self)

    def setup(self, stage: str | None = None) -> None:
        if self.encoded is not None:
            return
        h = self.hparams
        self.encoded = prepare_corpus(self.corpus, h.cache_dir, h.min_count, h.max_vocab, download=h.download)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if self.pair_mode() == "device":
            enc = self.encoded
            self.device_pairs = DevicePairs(enc.tokens, enc.sentences, enc.counts, h.window, h.negative, h.sample,
                                            h.stretch_words, h.seed, rank, world)
            self.dataset = Stretches(self.device_pairs)
        else:
            self.dataset = PairChunks(str(self.encoded.path), h.window, h.negative, h.sample, h.chunk_words,
                                      h.seed, rank, world, workers=self._workers, native=self.pair_mode() == "native",
                                      loader_workers=h.num_workers)

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """(words, counts int64 (V,)) of the encoded corpus, most frequent first (after `setup`)."""
        if self.encoded is None:
            raise RuntimeError("SkipGramDataModule.vocabulary() before setup()")
        return self.encoded.words, self.encoded.counts

    def sampling(self) -> Sampling:
        """What the native kernel samples with: keep probabilities, the alias table, window, negatives (after `setup`)."""
        if self.encoded is None:
            raise RuntimeError("SkipGramDataModule.sampling() before setup()")
        h, counts = self.hparams, self.encoded.counts
        return Sampling(keep_probabilities(counts, h.sample), alias_table(counts), h.window, h.negative)

    def carry_words(self) -> None:
        """From now on batches also carry their words (after `setup`; the visual objective counts them):
        host chunks their sub-sampled words 'kept' (m,); native chunks keep 'tokens' (n,) even when a
        Hogwild worker trained them; device stretches their sub-sampled words 'kept' (m,) and 'slices',
        the number of `chunk_words`-sized parts the stretch makes."""
        self._carry = True
        if isinstance(self.dataset, PairChunks):
            self.dataset.carry_words = True

    def hogwild(self) -> WorkerTraining | None:
        """The slot through which DataLoader workers train (Hogwild), or None where they cannot."""
        one_cpu = self.trainer is None or (self.trainer.world_size == 1
                                           and self.trainer.strategy.root_device.type == "cpu")
        if self.hparams.num_workers > 0 and one_cpu and isinstance(self.dataset, PairChunks):
            return self._workers
        return None

    def train_dataloader(self) -> DataLoader:
        # the first epoch to make: on resume from an end-of-epoch checkpoint, the count of processed epochs
        # (what Lightning gives samplers' set_epoch); each later iteration of the dataset is the next epoch
        self.dataset.start_at(self.trainer.fit_loop.epoch_progress.current.processed if self.trainer else 0)
        # Lightning warns about any IterableDataset with a length; each (rank, worker) slot here takes its
        # own chunks, and `__len__` counts them as they are divided (said here: a filter set at import
        # does not outlive a test's collection)
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        if isinstance(self.dataset, Stretches):
            return DataLoader(self.dataset, batch_size=None, num_workers=0)
        nw = self.hparams.num_workers
        return DataLoader(self.dataset, batch_size=None, num_workers=nw, prefetch_factor=4 if nw else None,
                          persistent_workers=nw > 0, worker_init_fn=_one_thread)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Device pairs: turn a named stretch into its pairs, on the trainer's device."""
        if "input" in batch or self.device_pairs is None:
            return batch
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.device_pairs.device != device:
            self.device_pairs.to(device)  # once: the whole corpus lives on the device from here on
        s, e = int(batch["chunk"]), int(batch["epoch"])
        inp, out = self.device_pairs.pairs(s, e)
        if self._carry:  # the stretch's sub-sampled words: the very draws `pairs` made (same generator state)
            kept, _ = self.device_pairs.kept(s, self.device_pairs.generator(s, e))
            slices = max(1, math.ceil(self.device_pairs.words(s) / self.hparams.chunk_words))
            batch = {**batch, "kept": kept.long(), "slices": slices}
        return {**batch, "input": inp, "output": out, "device_pairs": True}


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)
