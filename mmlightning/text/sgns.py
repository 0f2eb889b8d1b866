"""The SGNS kernels as pure functions: sub-sampling, alias-table negatives, window pairs, the update rule.

What is word2vec's and kept here: dynamic window (each centre draws its window b in 1..window),
sub-sampling (keep a word of count c with probability (sqrt(c / (sample T)) + 1) sample T / c, T the
corpus size), K negatives from unigram^0.75, learning rate decaying linearly from `lr` to `min_lr`
over the whole run (all epochs). A pair (centre c, context x) trains syn0[x] to predict c against K
negatives, as in word2vec.c.

No autograd: `sgns_update` is the SGNS gradient written out (gathers, one batched dot, sigmoid, two
index_add_ scatters); `ChunkTrainer` applies it to one chunk's pairs in sub-batches, optionally fused
into one C++ kernel by torch.compile (cpp_wrapper on CPU). The host pair generator here is numpy
(`make_pairs`, `draw_negatives`); device_pairs.py is the same generator in torch, for accelerators.
"""
from __future__ import annotations

import numpy as np
import torch


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
               rng: np.random.Generator, return_kept: bool = False):
    """Skip-gram pairs of a stretch of corpus: sub-sample, then dynamic windows within sentences.

    ids: (n,) word ids; sent: (n,) sentence index of each word. Returns (centre, context), int64 (P,) each,
    grouped by offset (all distance-1 pairs first). A kept centre i with window b_i ~ U{1..window} pairs
    with every kept j of its sentence with 0 < |i - j| <= b_i, counted after removing discarded words.
    With `return_kept`, also the kept (sub-sampled) word ids, int64 (m,) (the same draws either way).
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
    pairs = (np.concatenate(centres), np.concatenate(contexts)) if centres else \
        (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return (*pairs, ids) if return_kept else pairs


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


class GraphedUpdate:
    """`sgns_update` on fixed (V, D) CUDA tables for one sub-batch shape (B, K+1), captured as one CUDA graph.

    A sub-batch then costs two copies into static buffers and one graph launch instead of ~12 kernel
    launches from Python: the difference between launch-bound and GPU-bound at a few thousand pairs.
    """

    def __init__(self, syn0: torch.Tensor, syn1: torch.Tensor, batch_pairs: int, k1: int):
        dev = syn0.device
        self.tables = (syn0, syn1)
        self.inp = torch.zeros(batch_pairs, dtype=torch.int64, device=dev)  # (B,) static input
        self.out = torch.zeros(batch_pairs, k1, dtype=torch.int64, device=dev)  # (B, K+1) static input
        self.lr = torch.zeros((), dtype=syn0.dtype, device=dev)  # lr 0: the warm-up runs change nothing
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm up (cuBLAS handles, allocator) off the capture
            for _ in range(2):
                sgns_update(syn0, syn1, self.inp, self.out, self.lr)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            sgns_update(syn0, syn1, self.inp, self.out, self.lr)

    def __call__(self, inp: torch.Tensor, out: torch.Tensor, lr: float) -> None:
        """One SGD step on inp (B,), out (B, K+1) at learning rate `lr` (replays the graph)."""
        self.inp.copy_(inp)
        self.out.copy_(out)
        self.lr.fill_(lr)
        self.graph.replay()


class ChunkTrainer:
    """Applies `sgns_update` to one chunk's pairs in sub-batches, with the learning rate of each sub-batch.

    Used by the training process, or (Hogwild) by each DataLoader worker on tables in shared memory.
    The compiled kernel is made lazily, per process, for the one full sub-batch shape; with `graphs`
    on a CUDA device, full sub-batches replay a `GraphedUpdate` instead (eager if capture fails).
    """

    def __init__(self, batch_pairs: int, lr: float, min_lr: float, max_epochs: int, compile: bool, device_type: str,
                 graphs: bool = False):
        self.batch_pairs, self.lr, self.min_lr, self.max_epochs = batch_pairs, lr, min_lr, max_epochs
        self.compile, self.device_type = compile, device_type
        self.graphs = graphs and device_type == "cuda"
        self._compiled = None
        self._graphed: GraphedUpdate | None = None

    def graphed(self, syn0: torch.Tensor, syn1: torch.Tensor, k1: int) -> GraphedUpdate | None:
        """The CUDA-graph update for these tables (made once), or None where graphs are off or failed."""
        if not self.graphs or syn0.device.type != "cuda":
            return None
        g = self._graphed
        if g is None or g.tables[0] is not syn0 or g.tables[1] is not syn1 or g.out.shape[1] != k1:
            try:
                self._graphed = GraphedUpdate(syn0, syn1, self.batch_pairs, k1)
            except Exception as e:  # an unsupported op or driver: stay correct, be slower
                import warnings
                warnings.warn(f"CUDA graph capture of sgns_update failed ({type(e).__name__}: {e}); using eager")
                self.graphs = False
                return None
        return self._graphed

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
        graphed = self.graphed(syn0, syn1, out.shape[1]) if n > 1 else None
        for j in (range(n) if parts is None else parts):
            rate = self.lr_at(epoch, (chunk + j / n) / n_chunks)
            i, o = inp[j * B:(j + 1) * B], out[j * B:(j + 1) * B]  # (b,), (b, K+1)
            if graphed is not None and len(i) == B:
                graphed(i, o, rate)
            elif len(i):
                self.update_fn(len(i))(syn0, syn1, i, o, torch.tensor(rate, dtype=torch.float64))
