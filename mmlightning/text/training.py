"""One training callable per pair mode, behind one protocol: `ChunkTraining` trains one batch of skip-gram.

    train = PairTraining(ChunkTrainer(batch_pairs=1024, lr=0.025, min_lr=1e-4, max_epochs=5, compile=True,
                                      device_type="cpu"), threads=1)      # or NativeTrainer(...) (native.py)
    stats = train(syn0, syn1, batch)            # (V, D) tables changed in place; {'loss': ...} or {}
    for part in range(S):                       # the same updates in S consecutive shares, with work between
        train(syn0, syn1, batch, part, S)

A batch is one chunk of corpus (a stretch, for device pairs) with 'epoch', 'chunk' and 'n_chunks': chunk c
of n in epoch e trains at the learning rates of progress (e + c / n) / epochs .. (e + (c + 1) / n) / epochs
of the linear decay over the whole run. The pair modes (data.py makes their batches) and their training:

    host    PairTraining(ChunkTrainer(batch_pairs, ...), threads=hogwild_threads): numpy pairs
            {'input': (P,), 'output': (P, K+1)} in sub-batches of `batch_pairs`, optionally split over
            lock-free threads (each thread every T-th sub-batch)
    native  NativeTrainer (native.py): {'tokens': (n,), 'sent': (n,), 'seed'}; the compiled kernel makes the
            chunk's pairs and trains them one at a time (`hogwild_threads`: contiguous parts at once)
    device  PairTraining(ChunkTrainer(device_batch_pairs, ..., graphs=cuda_graphs)): a stretch's pairs made on
            the device, in sub-batches of `device_batch_pairs` (one CUDA-graph replay each on a GPU)

The training process (`SkipGram.training_step`) and the Hogwild DataLoader workers (`data.WorkerTraining`,
on the tables in shared memory) call the same object the same way: `train(syn0, syn1, batch)`.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from mmlightning.text.sgns import ChunkTrainer


@runtime_checkable
class ChunkTraining(Protocol):
    """Trains a batch's chunk on (V, D) tables in place: the one thing each pair mode does its own way."""

    def __call__(self, syn0: torch.Tensor, syn1: torch.Tensor, batch: dict[str, Any], part: int = 0,
                 parts: int = 1) -> dict:
        """Train share `part` of `parts` of the chunk's updates (in order; all of it by default).

        Returns what the step may log ({'loss': mean sampled loss} or {}). parts > 1 only for device
        stretches cut for the visual objective; a mode that trains a chunk as one unit (native) takes 1.
        """

    def before_fork(self, V: int, D: int, K1: int) -> None:
        """Make now whatever DataLoader workers should inherit when they fork (tables (V, D), K+1 outputs)."""

    def close(self) -> None:
        """Release threads (if any were started)."""


class PairTraining:
    """Host or device pairs {'input': (P,), 'output': (P, K+1)} through `ChunkTrainer`'s sub-batches.

    With `threads` > 1, each call's sub-batches are split over that many lock-free Python threads (thread t
    takes every T-th), except on the very first call that has several: torch.compile runs once, unthreaded.
    """

    def __init__(self, updates: ChunkTrainer, threads: int = 1):
        self.updates, self.threads = updates, threads
        self._pool = None
        self._warm = False

    def __call__(self, syn0: torch.Tensor, syn1: torch.Tensor, batch: dict[str, Any], part: int = 0,
                 parts: int = 1) -> dict:
        inp, out = batch["input"].to(syn0.device), batch["output"].to(syn0.device)  # (P,), (P, K+1)
        n = max(-(-len(inp) // self.updates.batch_pairs), 1)  # sub-batches of the whole chunk
        share = range(part * n // parts, (part + 1) * n // parts)  # this call's sub-batches
        epoch, chunk, n_chunks = int(batch["epoch"]), int(batch["chunk"]), int(batch["n_chunks"])

        def train(sub: range | None) -> None:
            self.updates(syn0, syn1, inp, out, epoch, chunk, n_chunks, parts=sub)
        T = self.threads
        if T > 1 and len(share) > 1 and self._warm:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(T - 1)
            futures = [self._pool.submit(train, share[t::T]) for t in range(1, T)]
            train(share[0::T])
            for f in futures:
                f.result()
        else:
            train(None if parts == 1 else share)
            self._warm = len(share) > 1
        return {}

    def before_fork(self, V: int, D: int, K1: int) -> None:
        self.updates.warm_up(V, D, K1)  # compiled once here: forked workers inherit the kernel

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
