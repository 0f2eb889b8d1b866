"""Skip-gram with negative sampling (word2vec's SGNS) as a LightningModule, at gensim's speed on a CPU.

    python -m mmlightning fit --config configs/skipgram.yaml                 # GCIDE, 100 dims, 5 epochs
    python -m mmlightning fit --config configs/skipgram.yaml --ckpt_path checkpoints/skipgram/ckpt/last.ckpt
    from mmlightning.text.skipgram import train_skipgram
    vectors_txt = train_skipgram("checkpoints/skipgram", corpus=["gcide"], epochs=5)   # same fit, in Python

What is word2vec's and kept here: dynamic window (each centre draws its window b in 1..window),
sub-sampling (keep a word of count c with probability (sqrt(c / (sample T)) + 1) sample T / c, T the
corpus size), K negatives from unigram^0.75, learning rate decaying linearly from `lr` to `min_lr`
over the whole run (all epochs), input vectors initialised uniform(-0.5/D, 0.5/D) and output vectors
at zero; the input vectors are the word vectors. A pair (centre c, context x) trains syn0[x] to
predict c against K negatives, as in word2vec.c.

How it is fast: no autograd. `sgns_update` is the SGNS gradient written out (gathers, one batched
dot, sigmoid, two index_add_ scatters) on batches of ~1k pairs, one intra-op thread, fused into one
C++ kernel by torch.compile (`compile`; cpp_wrapper on CPU). Pairs are made with numpy (vectorised per
offset, alias-table negatives), chunk by chunk (16k corpus words): a chunk is one Lightning batch, split
into sub-batches, so Lightning's per-step overhead is paid once per ~60k pairs. On CPU with
`data.num_workers = N > 0` the N DataLoader worker processes also train, Hogwild-style: the tables live
in shared memory and every worker updates them lock-free, as word2vec's threads do (`hogwild_workers`);
the training process then only counts, logs and checkpoints. Otherwise (GPU, DDP, num_workers 0) the
training process trains (`hogwild_threads > 1` adds Python threads there).

Under DDP every rank takes every world-th chunk; chunk counts are padded so all ranks run the same
number of steps; every `sync_every` steps (and at each epoch end) each rank's change to the tables since
the last sync is summed over ranks (all_reduce) and applied everywhere, as lock-free threads would.

Outputs (`output_dir`, default checkpoints/skipgram): `vocab.tsv` (word<TAB>count) and `vectors.txt`
(word2vec text) written atomically at the end of fit by `ExportVectors`; checkpoints by the trainer.
"""
from __future__ import annotations

import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmlightning.text.corpus import EncodedCorpus, load_encoded, prepare_corpus
from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors


# ------------------------------------------------------------------------------------- pure functions
def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's sub-sampling: P(keep) per word, float64 (V,); sample <= 0 keeps everything."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum((np.sqrt(counts / threshold) + 1.0) * threshold / counts, 1.0)


def alias_table(counts: np.ndarray, power: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table of the unigram^power distribution: (accept float64 (V,), alias int64 (V,)).

    Word i is drawn with probability counts[i]^power / sum: pick a column j uniformly, keep j with
    probability accept[j], else take alias[j]. O(1) per draw, exact (unlike word2vec's 1e8-cell table).
    """
    w = np.asarray(counts, dtype=np.float64) ** power
    V = len(w)
    scaled = w * (V / w.sum())  # (V,) mean 1
    accept = np.ones(V)
    alias = np.arange(V, dtype=np.int64)
    small = [i for i in range(V) if scaled[i] < 1.0]
    large = [i for i in range(V) if scaled[i] >= 1.0]
    while small and large:
        s, l = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], l
        scaled[l] -= 1.0 - scaled[s]
        (small if scaled[l] < 1.0 else large).append(l)
    return accept, alias


def negative_probabilities(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution unigram^power, float64 (V,) summing to 1 (for tests)."""
    w = np.asarray(counts, dtype=np.float64) ** power
    return w / w.sum()


def _draw(table: tuple[np.ndarray, np.ndarray], shape, rng: np.random.Generator) -> np.ndarray:
    accept, alias = table
    col = rng.integers(0, len(accept), size=shape)  # int64
    return np.where(rng.random(shape) < accept[col], col, alias[col])


def draw_negatives(table: tuple[np.ndarray, np.ndarray], positives: np.ndarray, k: int,
                   rng: np.random.Generator) -> np.ndarray:
    """int64 (P, k) negatives from an `alias_table`, redrawn where one equals its row's positive word."""
    neg = _draw(table, (len(positives), k), rng)  # (P, k)
    for _ in range(8):  # collisions are rare (a few % for the most frequent word); redraw them
        hit = neg == positives[:, None]
        n_hit = int(hit.sum())
        if not n_hit:
            break
        neg[hit] = _draw(table, n_hit, rng)
    return neg


def make_pairs(ids: np.ndarray, sent: np.ndarray, keep_prob: np.ndarray, window: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Skip-gram pairs of a stretch of corpus: sub-sample, then dynamic windows within sentences.

    ids: (n,) word ids; sent: (n,) sentence index of each word. Returns (centre, context), int64 (P,) each,
    grouped by offset (all distance-1 pairs first). A kept centre i with window b_i ~ U{1..window} pairs
    with every kept j of its sentence with 0 < |i - j| <= b_i, counted after removing discarded words.
    """
    keep = rng.random(len(ids)) < keep_prob[ids]  # (n,)
    ids, sent = ids[keep].astype(np.int64), sent[keep]  # (m,)
    b = rng.integers(1, window + 1, size=len(ids))  # (m,) effective window of each centre
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = sent[:-d] == sent[d:]  # (m - d,) i and i + d in one sentence
        right = same & (b[:-d] >= d)  # centre i, context i + d
        left = same & (b[d:] >= d)  # centre i + d, context i
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


def linear_lr(progress: float, lr: float, min_lr: float) -> float:
    """Learning rate at `progress` in [0, 1] of the whole run: linear from lr to min_lr (gensim/word2vec)."""
    return lr + (min_lr - lr) * min(max(progress, 0.0), 1.0)


def sgns_update(syn0: torch.Tensor, syn1: torch.Tensor, inp: torch.Tensor, out: torch.Tensor, lr) -> None:
    """One SGD step of SGNS on B pairs, in place, no autograd.

    syn0, syn1: (V, D) input / output tables; inp: (B,) input (context) ids; out: (B, K + 1) output ids,
    column 0 the positive (centre) word, the rest negatives; lr: float or 0-d float64 tensor (a tensor
    keeps one compiled kernel for every rate). Maximises log s(u0.v) + sum_k log s(-uk.v).
    """
    B, K1 = out.shape
    v = syn0.index_select(0, inp)  # (B, D)
    u = syn1.index_select(0, out.reshape(-1)).view(B, K1, -1)  # (B, K+1, D)
    score = (u * v.unsqueeze(1)).sum(2)  # (B, K+1)
    g = torch.sigmoid(score).neg_()  # (B, K+1): label - sigmoid, label 0 for negatives ...
    g[:, 0] += 1.0  # ... and 1 for the positive
    g.mul_(lr)
    grad_v = torch.bmm(g.unsqueeze(1), u).squeeze(1)  # (B, D) computed before syn1 changes, as word2vec
    syn1.index_add_(0, out.reshape(-1), (g.unsqueeze(2) * v.unsqueeze(1)).view(B * K1, -1))
    syn0.index_add_(0, inp, grad_v)


def sgns_loss(syn0: torch.Tensor, syn1: torch.Tensor, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Mean SGNS loss of B pairs (for logging): -log s(u0.v) - sum_k log s(-uk.v)."""
    v = syn0[inp]  # (B, D)
    u = syn1[out]  # (B, K+1, D)
    score = (u * v.unsqueeze(1)).sum(2)  # (B, K+1)
    sign = torch.ones_like(score)
    sign[:, 1:] = -1
    return -torch.nn.functional.logsigmoid(sign * score).sum(1).mean()


class ChunkTrainer:
    """Applies `sgns_update` to one chunk's pairs in sub-batches, with the learning rate of each sub-batch.

    Used by the training process, or (Hogwild) by each DataLoader worker on tables in shared memory.
    The compiled kernel is made lazily, per process, for the one full sub-batch shape.
    """

    def __init__(self, batch_pairs: int, lr: float, min_lr: float, max_epochs: int, compile: bool, device_type: str):
        self.batch_pairs, self.lr, self.min_lr, self.max_epochs = batch_pairs, lr, min_lr, max_epochs
        self.compile, self.device_type = compile, device_type
        self._compiled = None

    def lr_at(self, epoch: int, epoch_fraction: float) -> float:
        """Learning rate at `epoch_fraction` (0..1) of epoch `epoch` (linear decay over all epochs)."""
        return linear_lr((epoch + epoch_fraction) / self.max_epochs, self.lr, self.min_lr)

    def update_fn(self, b: int):
        """The compiled update for full sub-batches (one fixed shape, no recompiles), eager otherwise."""
        if not self.compile or b != self.batch_pairs:
            return sgns_update
        if self._compiled is None:
            import torch._inductor.config as inductor_config
            inductor_config.compile_threads = 1  # no pool of compile processes (memory, shared CPUs)
            # cpp_wrapper: the kernel is called from C++ without Python in between (less overhead per step)
            options = {"cpp_wrapper": True} if self.device_type == "cpu" else {}
            compiled = torch.compile(sgns_update, dynamic=False, options=options)

            def guarded(*args):
                try:
                    return compiled(*args)
                except Exception as e:  # no C++ compiler, unsupported backend...: stay correct, be slower
                    import warnings
                    warnings.warn(f"torch.compile of sgns_update failed ({type(e).__name__}: {e}); using eager")
                    self._compiled = sgns_update
                    return sgns_update(*args)
            self._compiled = guarded
        return self._compiled

    def warm_up(self, V: int, D: int, K1: int) -> None:
        """Compile now, on scratch tables of the real shapes: forked workers inherit the compiled kernel."""
        if self.compile:
            syn0, syn1 = torch.zeros(V, D), torch.zeros(V, D)  # (V, D) scratch
            inp = torch.zeros(self.batch_pairs, dtype=torch.int64)  # (B,)
            out = torch.zeros(self.batch_pairs, K1, dtype=torch.int64)  # (B, K+1)
            self.update_fn(self.batch_pairs)(syn0, syn1, inp, out, torch.tensor(0.0, dtype=torch.float64))

    def __call__(self, syn0, syn1, inp, out, epoch: int, chunk: int, n_chunks: int, parts=None) -> None:
        """Train on (P,) inputs and (P, K+1) outputs of chunk `chunk`; `parts` selects sub-batches (threads)."""
        B = self.batch_pairs
        n = max(-(-len(inp) // B), 1)
        for j in (range(n) if parts is None else parts):
            lr = torch.tensor(self.lr_at(epoch, (chunk + j / n) / n_chunks), dtype=torch.float64)
            i, o = inp[j * B:(j + 1) * B], out[j * B:(j + 1) * B]  # (b,), (b, K+1)
            if len(i):
                self.update_fn(len(i))(syn0, syn1, i, o, lr)


# ------------------------------------------------------------------------------------------- data
class PairChunks(IterableDataset):
    """Yields one dict per corpus chunk: {'input': (P,), 'output': (P, K+1), 'chunk', 'n_chunks', 'words'}.

    Chunks (of `chunk_words` corpus words) go round-robin to (rank, worker) slots; the chunk list is
    padded with empty chunks so every slot yields the same number. Randomness is seeded by
    (seed, epoch, chunk): the pairs do not depend on the number of workers or ranks.
    """

    def __init__(self, corpus_dir: str, window: int, negative: int, sample: float, chunk_words: int,
                 seed: int, rank: int = 0, world_size: int = 1):
        self.corpus_dir = corpus_dir
        self.window, self.negative, self.sample = window, negative, sample
        self.chunk_words, self.seed = chunk_words, seed
        self.rank, self.world_size = rank, world_size
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()  # seen by persistent workers
        self._enc: EncodedCorpus | None = None
        # Hogwild: set by SkipGram when DataLoader workers train on tables in shared memory
        self.tables: tuple[torch.Tensor, torch.Tensor] | None = None
        self.trainer_fn: ChunkTrainer | None = None

    @property
    def epoch(self) -> int:
        """The epoch whose pairs the next iteration makes (shared with the worker processes)."""
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = int(value)

    def _corpus(self) -> EncodedCorpus:
        if self._enc is None:  # opened lazily in each worker: the memmap is never pickled
            self._enc = load_encoded(self.corpus_dir)
            self._keep = keep_probabilities(self._enc.counts, self.sample)  # (V,)
            self._table = alias_table(self._enc.counts)  # (V,), (V,)
        return self._enc

    def n_chunks(self, workers: int = 1) -> int:
        """Chunks per epoch including padding, for `workers` dataloader workers per rank."""
        n = math.ceil(self._corpus().n_tokens / self.chunk_words)
        slots = self.world_size * max(workers, 1)
        return math.ceil(n / slots) * slots

    def chunk(self, c: int, epoch: int) -> dict[str, Any]:
        enc = self._corpus()
        lo, hi = c * self.chunk_words, min((c + 1) * self.chunk_words, enc.n_tokens)
        rng = np.random.default_rng([self.seed, epoch, c])
        if lo >= hi:  # padding chunk
            centre = context = np.zeros(0, np.int64)
        else:
            ids = np.asarray(enc.tokens[lo:hi])  # (n,)
            sent = np.searchsorted(enc.sentences, np.arange(lo, hi), side="right")  # (n,)
            centre, context = make_pairs(ids, sent, self._keep, self.window, rng)  # (P,), (P,)
        neg = draw_negatives(self._table, centre, self.negative, rng)  # (P, K)
        out = np.concatenate([centre[:, None], neg], axis=1)  # (P, K+1)
        return {"input": torch.from_numpy(context), "output": torch.from_numpy(out),
                "chunk": c, "words": max(hi - lo, 0)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        n = self.n_chunks(nw)
        slot, slots = self.rank * nw + wid, self.world_size * nw
        hogwild = info is not None and self.tables is not None and self.trainer_fn is not None
        epoch = self.epoch  # read when the iteration starts (persistent workers: once per epoch)
        for c in range(slot, n, slots):
            item = self.chunk(c, epoch)
            item["n_chunks"] = n
            if hogwild:  # train here, lock-free on the shared tables; send back a sample for the loss
                self.trainer_fn(*self.tables, item["input"], item["output"], epoch, c, n)
                # send back a loss sample, not the whole chunk
                item["input"], item["output"] = item["input"][:256].clone(), item["output"][:256].clone()
                item["trained"] = True
            yield item


class SkipGramDataModule(pl.LightningDataModule):
    """The corpus (cached as word ids) and its stream of skip-gram pairs with negatives."""

    def __init__(self, corpus: list[str] | str = "gcide", cache_dir: str = "checkpoints/corpus_cache",
                 min_count: int = 5, max_vocab: int | None = None, window: int = 5, negative: int = 5,
                 sample: float = 1e-3, chunk_words: int = 16384, num_workers: int = 2, seed: int = 1,
                 download: bool = False):
        """
        Args:
            corpus: sources read in order: 'gcide', 'text8', files (.txt, .txt.gz, BNC .xml) or folders.
            cache_dir: where the vocabulary and encoded corpus are cached (keyed by files + settings).
            min_count: drop words seen fewer times (word2vec's min_count).
            max_vocab: keep at most this many most frequent words (None: no limit).
            window: maximum window; each centre draws its window in 1..window.
            negative: negatives per pair, drawn from unigram^0.75.
            sample: sub-sampling threshold (word2vec's -sample; 0 disables).
            chunk_words: corpus words per Lightning batch (pairs are made per chunk).
            num_workers: DataLoader worker processes making pairs, and training on CPU (0: all in the training process).
            seed: seed of sub-sampling, windows and negatives.
            download: allow downloading text8 if it is named and missing.
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value, low in (("window", window, 1), ("negative", negative, 1), ("chunk_words", chunk_words, 1),
                                 ("min_count", min_count, 1), ("num_workers", num_workers, 0)):
            if value < low:
                raise UserError(f"data.{name}: must be >= {low}, got {value}")
        self.corpus = corpus
        self.encoded: EncodedCorpus | None = None
        self.dataset: PairChunks | None = None

    def prepare_data(self) -> None:
        prepare_corpus(self.corpus, self.hparams.cache_dir, self.hparams.min_count, self.hparams.max_vocab,
                       download=self.hparams.download, progress=True)

    def setup(self, stage: str | None = None) -> None:
        if self.encoded is not None:
            return
        self.encoded = prepare_corpus(self.corpus, self.hparams.cache_dir, self.hparams.min_count,
                                      self.hparams.max_vocab, download=self.hparams.download)
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        h = self.hparams
        self.dataset = PairChunks(str(self.encoded.path), h.window, h.negative, h.sample, h.chunk_words,
                                  h.seed, rank, world)

    def train_dataloader(self) -> DataLoader:
        # Lightning makes the first iterator before `on_train_epoch_start` (where SkipGram sets the epoch
        # of the later ones), so the first epoch is set here; workers persist (no re-import, re-compile).
        # (on resume from an end-of-epoch checkpoint, current_epoch still names the finished epoch: the next
        # one is the count of processed epochs, which Lightning also gives samplers' set_epoch)
        self.dataset.epoch = self.trainer.fit_loop.epoch_progress.current.processed if self.trainer else 0
        nw = self.hparams.num_workers
        return DataLoader(self.dataset, batch_size=None, num_workers=nw, prefetch_factor=4 if nw else None,
                          persistent_workers=nw > 0, worker_init_fn=_one_thread)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- model
class SkipGram(pl.LightningModule):
    """SGNS tables syn0 (input, the word vectors) and syn1 (output), trained by `sgns_update`.

    The tables are created in `setup` from the datamodule's vocabulary (V is known only then); the
    checkpoint carries the vocabulary, so vectors can be exported without the corpus.
    """

    def __init__(self, dim: int = 100, lr: float = 0.025, min_lr: float = 0.0001, batch_pairs: int = 1024,
                 hogwild_threads: int = 1, intra_op_threads: int = 1, compile: bool = True, sync_every: int = 1,
                 hogwild_workers: bool = True, seed: int = 1, output_dir: str | None = "checkpoints/skipgram"):
        """
        Args:
            dim: vector dimension.
            lr: initial learning rate (word2vec's alpha for skip-gram: 0.025).
            min_lr: final learning rate, reached at the end of the last epoch.
            batch_pairs: pairs per SGD update (sub-batch of a chunk).
            hogwild_threads: parallel threads updating the shared tables lock-free (1: none).
            intra_op_threads: torch intra-op threads (1 is fastest for these small ops).
            compile: fuse `sgns_update` into one kernel with torch.compile (falls back to eager if it fails).
            hogwild_workers: on CPU with one device and data.num_workers > 0, the DataLoader workers train
                (lock-free, on the tables in shared memory) as well as make pairs: word2vec's threads.
            sync_every: under DDP, combine the ranks' tables every this many steps (chunks) and at epoch end.
            seed: seed of the initial vectors.
            output_dir: where vocab.tsv and vectors.txt are written at the end of fit (None: not written).
        """
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if dim < 1 or batch_pairs < 1 or hogwild_threads < 1 or lr <= 0:
            raise UserError(f"model: dim, batch_pairs, hogwild_threads must be >= 1 and lr > 0 "
                            f"(got {dim}, {batch_pairs}, {hogwild_threads}, {lr})")
        self.words: list[str] = []
        self.counts: np.ndarray = np.zeros(0, np.int64)
        self.vocab_hash = ""
        self.syn0: torch.nn.Parameter | None = None
        self.syn1: torch.nn.Parameter | None = None
        self._pool = None
        self._chunk_trainer: ChunkTrainer | None = None
        self._warm = False
        self._synced: list[torch.Tensor] | None = None
        self._t0 = None
        self._words_seen = 0

    # -- tables ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, SkipGramDataModule):
            raise UserError("model SkipGram needs data: class_path: mmlightning.text.skipgram.SkipGramDataModule")
        dm.setup(stage)
        self.set_vocabulary(dm.encoded.words, dm.encoded.counts)
        self._threads_before = torch.get_num_threads()  # given back in teardown: later stages keep theirs
        torch.set_num_threads(self.hparams.intra_op_threads)
        h = self.hparams
        self._chunk_trainer = ChunkTrainer(h.batch_pairs, h.lr, h.min_lr, self.trainer.max_epochs or 1, h.compile,
                                           self.trainer.strategy.root_device.type)
        hogwild = (h.hogwild_workers and dm.hparams.num_workers > 0 and self.trainer.world_size == 1
                   and self.trainer.strategy.root_device.type == "cpu")
        if hogwild:  # workers fork after this and update the very same memory
            self.syn0.data.share_memory_()
            self.syn1.data.share_memory_()
            self._chunk_trainer.warm_up(len(self.words), h.dim, dm.hparams.negative + 1)  # compile once, here
            dm.dataset.tables, dm.dataset.trainer_fn = (self.syn0.data, self.syn1.data), self._chunk_trainer

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
        return [ExportVectors(self.hparams.output_dir)] if self.hparams.output_dir else []

    # -- training -------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 1:
            raise UserError("trainer.max_epochs: must be set (the learning rate decays over the whole run)")
        self._t0, self._words_seen = time.perf_counter(), 0
        ds = getattr(self.trainer.datamodule, "dataset", None)
        if ds is not None:
            ds.epoch = self.current_epoch  # read when the epoch's iteration starts, after this hook

    def lr_at(self, epoch_fraction: float) -> float:
        """Learning rate at `epoch_fraction` (0..1) of the current epoch."""
        return self._chunk_trainer.lr_at(self.current_epoch, epoch_fraction)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        inp, out = batch["input"].to(self.device), batch["output"].to(self.device)  # (P,), (P, K+1)
        chunk, n_chunks = int(batch["chunk"]), int(batch["n_chunks"])
        syn0, syn1 = self.syn0.data, self.syn1.data
        if not batch.get("trained", False):  # else a Hogwild worker has trained on it already
            train = partial(self._chunk_trainer, syn0, syn1, inp, out, self.current_epoch, chunk, n_chunks)
            T, n = self.hparams.hogwild_threads, -(-len(inp) // self.hparams.batch_pairs)
            if T > 1 and n > 1 and self._warm:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor
                    self._pool = ThreadPoolExecutor(T - 1)
                futs = [self._pool.submit(train, range(t, n, T)) for t in range(1, T)]
                train(range(0, n, T))
                for f in futs:
                    f.result()
            else:  # one thread; also the very first batch, so that torch.compile runs once, unthreaded
                train()
                self._warm = n > 1
        B = self.hparams.batch_pairs

        self.optimizers().step()  # counts the step; changes nothing (see configure_optimizers)
        self._words_seen += int(batch["words"])
        if self.trainer.world_size > 1 and self.global_step % self.hparams.sync_every == 0:
            self.average_across_ranks()  # every rank runs the same number of steps (padded chunks)
        elapsed = time.perf_counter() - self._t0
        self.log("words_per_s", self._words_seen * self.trainer.world_size / max(elapsed, 1e-9),
                 prog_bar=True, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
        self.log("lr", self.lr_at((chunk + 1) / n_chunks), on_step=True, on_epoch=False, batch_size=1,
                 rank_zero_only=True)
        if batch_idx % 50 == 0 and len(inp):
            with torch.no_grad():
                loss = sgns_loss(syn0, syn1, inp[:B], out[:B])
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
                self._synced = [p.data.clone() for p in (self.syn0, self.syn1)]
            for p, base in zip((self.syn0, self.syn1), self._synced):
                delta = p.data - base  # (V, D) this rank's change since the last sync
                dist.all_reduce(delta, op=dist.ReduceOp.SUM)
                p.data.copy_(base.add_(delta))  # base becomes the new common tables

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:
            self._synced = [p.data.clone() for p in (self.syn0, self.syn1)]  # after DDP's broadcast

    def teardown(self, stage: str) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
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


# ------------------------------------------------------------------------------- Python entry point
def train_skipgram(output_dir: str | os.PathLike = "checkpoints/skipgram", corpus: list[str] | str = "gcide",
                   epochs: int = 5, dim: int = 100, window: int = 5, negative: int = 5, sample: float = 1e-3,
                   min_count: int = 5, lr: float = 0.025, min_lr: float = 0.0001, seed: int = 1,
                   cache_dir: str | os.PathLike = "checkpoints/corpus_cache", num_workers: int = 2,
                   chunk_words: int = 16384, accelerator: str = "cpu", devices: int | str = 1,
                   strategy: str = "auto", callbacks: list | None = None, progress_bar: bool = True,
                   **model_kwargs) -> Path:
    """Train (or resume, or reuse) skip-gram vectors; returns the path of `<output_dir>/vectors.txt`.

    The same fit as configs/skipgram.yaml (extra SkipGram arguments, e.g. compile=False or
    hogwild_threads=2, go through `model_kwargs`). A finished run with the same settings is reused; an
    interrupted one resumes from `<output_dir>/ckpt/last.ckpt`; a folder holding a run with other
    settings is refused (UserError) rather than mixed.
    """
    import json
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger
    from mmlightning.atomic import write_json

    output_dir = Path(output_dir)
    settings = json.loads(json.dumps(
        {"corpus": corpus, "epochs": epochs, "dim": dim, "window": window, "negative": negative,
         "sample": sample, "min_count": min_count, "lr": lr, "min_lr": min_lr, "seed": seed,
         "chunk_words": chunk_words, "model_kwargs": model_kwargs}, default=str))
    vectors, done = output_dir / "vectors.txt", output_dir / "settings.json"
    ckpt_dir = output_dir / "ckpt"
    started, last = output_dir / "settings.started.json", ckpt_dir / "last.ckpt"
    if vectors.is_file() and done.is_file() and json.loads(done.read_text()) == settings:
        return vectors
    if last.is_file() and started.is_file() and json.loads(started.read_text()) != settings:
        raise UserError(f"{last}: a run with other settings is in {output_dir}; use another output_dir or delete it")
    write_json(started, settings)
    dm = SkipGramDataModule(corpus=corpus, cache_dir=str(cache_dir), min_count=min_count, window=window,
                            negative=negative, sample=sample, chunk_words=chunk_words, num_workers=num_workers,
                            seed=seed)
    model = SkipGram(dim=dim, lr=lr, min_lr=min_lr, seed=seed, output_dir=str(output_dir), **model_kwargs)
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy,
                         default_root_dir=str(output_dir), logger=CSVLogger(str(output_dir), name="logs"),
                         callbacks=[ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=1),
                                    *(callbacks or [])],
                         enable_model_summary=False, enable_progress_bar=progress_bar, log_every_n_steps=1)
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_rank == 0 and trainer.current_epoch >= epochs:
        write_json(done, settings)
    return vectors
