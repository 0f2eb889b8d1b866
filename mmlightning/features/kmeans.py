"""Mini-batch k-means (Sculley 2010) with k-means++ seeding, and nearest-centroid histograms.

    centroids = minibatch_kmeans(descriptors, k=100, seed=0)   # (N, D) -> (k, D) float32
    hist = bovw_histogram(descriptors, centroids)               # (K,) L1-normalised

Pure torch on the CPU, deterministic for a seed; small matrices run single-threaded.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from mmlightning.errors import UserError


@contextmanager
def torch_single_threaded() -> Iterator[None]:
    """Run torch ops single-threaded inside the block: the small matrices here lose more to waking a
    thread team on a busy CPU than they gain (parallelism, where wanted, is over images instead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean) of each row: (N, D), (K, D) -> (N,) int64."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
    d = centroids.pow(2).sum(1)[None, :] - 2.0 * (x @ centroids.T)  # (N, K)
    return d.argmin(1)


def bovw_histogram(descriptors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L1-normalised histogram of nearest centroids: (N, D), (K, D) -> (K,) (all zeros when N = 0)."""
    k = centroids.shape[0]
    if descriptors.shape[0] == 0:
        return torch.zeros(k, dtype=centroids.dtype)
    counts = torch.bincount(nearest_centroid(descriptors, centroids), minlength=k).to(centroids.dtype)
    return counts / counts.sum()  # (K,)


def kmeans_pp_init(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): (N, D) -> (k, D) distinct rows of x."""
    n = x.shape[0]
    first = int(rng.integers(n))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1).double()  # (N,) distance to the nearest chosen centre
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:
            raise UserError(f"bovw codebook: the descriptor sample has fewer than k={k} distinct descriptors; "
                            "lower k or sample more images")
        i = int(rng.choice(n, p=(d2 / total).numpy()))
        centres.append(x[i])
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1).double())
    return torch.stack(centres)  # (k, D)


def minibatch_kmeans(x: np.ndarray | torch.Tensor, k: int = 100, batch_size: int = 1024,
                     iterations: int = 300, seed: int = 0, init_size: int = 20000) -> torch.Tensor:
    """Mini-batch k-means (Sculley 2010) on rows of x (N, D) -> centroids (k, D) float32; deterministic.

    Each iteration draws `batch_size` rows, assigns them to their nearest centroid, and moves every
    centroid to the running mean of all rows ever assigned to it (per-centre learning rate 1 / count;
    the per-sample updates of one batch, done at once, give the same running mean).
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))  # (N, D)
    n = x.shape[0]
    if n < k:
        raise UserError(f"bovw codebook: {n} descriptors sampled, fewer than k={k}; sample more images or lower k")
    rng = np.random.default_rng(seed)
    with torch_single_threaded():
        init_rows = rng.choice(n, size=min(n, init_size), replace=False)
        centroids = kmeans_pp_init(x[torch.from_numpy(init_rows)], k, rng).clone()  # (k, D)
        counts = torch.zeros(k, dtype=torch.float64)  # (k,) rows assigned so far
        for _ in range(iterations):
            batch = x[torch.from_numpy(rng.integers(0, n, size=min(batch_size, n)))]  # (b, D)
            nearest = nearest_centroid(batch, centroids)  # (b,)
            sums = torch.zeros_like(centroids, dtype=torch.float64).index_add_(0, nearest, batch.double())  # (k, D)
            n_new = torch.bincount(nearest, minlength=k).double()  # (k,)
            hit = n_new > 0
            total = counts[hit] + n_new[hit]
            centroids[hit] = ((centroids[hit].double() * counts[hit, None] + sums[hit]) / total[:, None]).float()
            counts[hit] = total
    return centroids


def inertia(x: torch.Tensor, centroids: torch.Tensor) -> float:
    """Mean squared distance of the rows of x (N, D) to their nearest centroid."""
    nearest = nearest_centroid(x, centroids)
    return float((x - centroids[nearest]).pow(2).sum(1).mean())
