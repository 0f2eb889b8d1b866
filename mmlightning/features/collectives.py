"""The writer's collectives across DDP ranks: per-word aggregates reduced exactly, small objects gathered.

    new = reduce_aggregate(agg, device)      # every rank: the sum / max over all ranks (identity without DDP)
    states = gather_objects({"images": 3})   # every rank: [rank 0's, rank 1's, ...]

Without an initialised process group of more than one rank both are the identity.
"""
from __future__ import annotations

from typing import Any

import torch

from mmlightning.features.aggregates import Aggregate


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def reduce_aggregate(agg: Aggregate, device: torch.device) -> Aggregate:
    """Sum counts/sums and max the maxima of every rank's aggregate (identity without DDP)."""
    dist = _dist()
    if dist is None:
        return agg
    vocab: list = [None] * dist.get_world_size()
    dist.all_gather_object(vocab, agg.words)
    union = sorted(set().union(*vocab))
    u, d = len(union), agg.feature_dim
    pos = {w: i for i, w in enumerate(union)}
    rows = torch.tensor([pos[w] for w in agg.words], dtype=torch.int64)  # (V,) this rank's rows in the union
    count = torch.zeros(u, dtype=torch.int64)                         # (U,)
    total = torch.zeros(u, d, dtype=torch.float64)                    # (U, D)
    sumn = torch.zeros(u, d, dtype=torch.float64)                     # (U, D)
    mx = torch.full((u, d), float("-inf"), dtype=torch.float32)       # (U, D)
    if len(agg):
        count[rows], total[rows], sumn[rows], mx[rows] = agg.count, agg.sum, agg.sum_normalized, agg.max
    out = []
    for t, op in ((count, dist.ReduceOp.SUM), (total, dist.ReduceOp.SUM), (sumn, dist.ReduceOp.SUM),
                  (mx, dist.ReduceOp.MAX)):
        t = t.to(device)
        dist.all_reduce(t, op=op)
        out.append(t.cpu())
    return Aggregate.from_dict({"words": union, "count": out[0], "sum": out[1], "sum_normalized": out[2],
                                "max": out[3]})


def gather_objects(obj: Any) -> list:
    """Every rank's `obj` (a one-element list without DDP)."""
    dist = _dist()
    if dist is None:
        return [obj]
    objs: list = [None] * dist.get_world_size()
    dist.all_gather_object(objs, obj)
    return objs
