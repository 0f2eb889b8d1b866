"""Per-word visual aggregates: count, sum, element-wise max and sum of L2-normalised features.

    agg = Aggregate(feature_dim=1280)
    agg.update(feats, [["cat"], ["cat", "kitten"]])   # feats: (B, D); one word list per image
    agg.merge(other)                                  # exact: counts and sums add, maxima take max
    save_aggregates("out/aggregates.pt", agg, meta={...}); agg, meta = load_aggregates("out/aggregates.pt")
    export_word2vec(agg, "out/")                      # out/mean.txt (CNN-Mean), out/max.txt (CNN-Max)
    dispersion(agg)                                   # (V,) image dispersion per word

File format (docs/FORMATS.md): a dict saved with `torch.save`: `words` [str] (V), `count` int64 (V),
`sum` float64 (V, D), `max` float32 (V, D), `sum_normalized` float64 (V, D), `meta` dict.
Only these statistics are kept, never per-image features, so memory is O(V * D) whatever the image count.
Pure tensor code: no Lightning, no I/O besides `save_aggregates` / `load_aggregates` / `export_word2vec`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Sequence

import torch

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError
from mmlightning.vectors import save_word2vec


class Aggregate:
    """Running per-word statistics over image features of dimension `feature_dim`."""

    def __init__(self, feature_dim: int):
        self.feature_dim = int(feature_dim)
        self.words: list[str] = []
        self.index: dict[str, int] = {}
        d = self.feature_dim
        self._count = torch.zeros(0, dtype=torch.int64)          # (cap,)
        self._sum = torch.zeros(0, d, dtype=torch.float64)         # (cap, D)
        self._max = torch.zeros(0, d, dtype=torch.float32)         # (cap, D), -inf until seen
        self._sumn = torch.zeros(0, d, dtype=torch.float64)        # (cap, D)

    # ------------------------------------------------------------------------- views (V rows)
    def __len__(self) -> int:
        return len(self.words)

    @property
    def count(self) -> torch.Tensor:  # (V,)
        return self._count[: len(self)]

    @property
    def sum(self) -> torch.Tensor:  # (V, D)
        return self._sum[: len(self)]

    @property
    def max(self) -> torch.Tensor:  # (V, D)
        return self._max[: len(self)]

    @property
    def sum_normalized(self) -> torch.Tensor:  # (V, D)
        return self._sumn[: len(self)]

    def mean(self) -> torch.Tensor:
        """(V, D) float64 mean feature per word."""
        return self.sum / self.count.clamp(min=1).unsqueeze(1).to(torch.float64)

    # ------------------------------------------------------------------------------ updating
    def _ids(self, words: Sequence[str]) -> list[int]:
        """Row index of each word, adding unseen words (capacity doubles, so growth is amortised)."""
        new = [w for w in dict.fromkeys(words) if w not in self.index]
        if new:
            n = len(self.words) + len(new)
            if n > self._count.shape[0]:
                cap = max(n, 2 * self._count.shape[0], 16)
                grow = cap - self._count.shape[0]
                d = self.feature_dim
                self._count = torch.cat([self._count, torch.zeros(grow, dtype=torch.int64)])
                self._sum = torch.cat([self._sum, torch.zeros(grow, d, dtype=torch.float64)])
                self._max = torch.cat([self._max, torch.full((grow, d), float("-inf"))])
                self._sumn = torch.cat([self._sumn, torch.zeros(grow, d, dtype=torch.float64)])
            for w in new:
                self.index[w] = len(self.words)
                self.words.append(w)
        return [self.index[w] for w in words]

    def update(self, features: torch.Tensor, words: Sequence[Sequence[str]]) -> None:
        """Add a batch: `features` (B, D); `words[i]` are the words image i counts for (each once)."""
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features {tuple(features.shape)} do not match feature_dim {self.feature_dim}")
        if features.shape[0] != len(words):
            raise ValueError(f"{features.shape[0]} feature rows for {len(words)} word lists")
        pairs = [(i, w) for i, ws in enumerate(words) for w in dict.fromkeys(ws)]
        if not pairs:
            return
        img = torch.tensor([i for i, _ in pairs])                 # (P,) image of each (image, word) pair
        row = torch.tensor(self._ids([w for _, w in pairs]))      # (P,) word row of each pair
        f = features.detach().to("cpu", torch.float64)[img]       # (P, D)
        f32 = f.float()                                           # (P, D) the features as computed
        # normalised in float32, summed in float64: sums of float32 values are exact in float64 (for the
        # sizes here), so a resumed run that adds shards in another order gives the same bits
        fn = (f32 / f32.norm(dim=1, keepdim=True).clamp(min=1e-12)).double()  # (P, D) L2-normalised
        self._count.index_add_(0, row, torch.ones_like(row))
        self._sum.index_add_(0, row, f)
        self._sumn.index_add_(0, row, fn)
        _amax_rows_(self._max, row, f.float())

    def merge(self, other: "Aggregate") -> "Aggregate":
        """Add `other`'s statistics into this one (in place; returns self)."""
        if other.feature_dim != self.feature_dim:
            raise ValueError(f"cannot merge feature_dim {other.feature_dim} into {self.feature_dim}")
        if len(other) == 0:
            return self
        row = torch.tensor(self._ids(other.words))                # (V_other,)
        self._count.index_add_(0, row, other.count)
        self._sum.index_add_(0, row, other.sum)
        self._sumn.index_add_(0, row, other.sum_normalized)
        _amax_rows_(self._max, row, other.max)
        return self

    # --------------------------------------------------------------------------- conversion
    def to_dict(self, meta: dict | None = None) -> dict:
        """The docs/FORMATS.md dict (words sorted for a deterministic file)."""
        order = sorted(range(len(self)), key=self.words.__getitem__)
        o = torch.tensor(order, dtype=torch.int64)
        return {"words": [self.words[i] for i in order], "count": self.count[o].clone(),
                "sum": self.sum[o].clone(), "max": self.max[o].clone(),
                "sum_normalized": self.sum_normalized[o].clone(), "meta": dict(meta or {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Aggregate":
        agg = cls(d["sum"].shape[1])
        agg._ids(list(d["words"]))
        agg._count[: len(agg)] = d["count"]
        agg._sum[: len(agg)] = d["sum"]
        agg._max[: len(agg)] = d["max"]
        agg._sumn[: len(agg)] = d["sum_normalized"]
        return agg


def _amax_rows_(target: torch.Tensor, row: torch.Tensor, src: torch.Tensor) -> None:
    """target[row[p]] = max(target[row[p]], src[p]) for every p, in place (repeated rows allowed)."""
    target.scatter_reduce_(0, row.unsqueeze(1).expand(-1, target.shape[1]), src, "amax", include_self=True)


def save_torch(obj, path: str | os.PathLike) -> None:
    """Atomically `torch.save` `obj` so that equal objects give equal bytes.

    Saved to a path, torch names the zip's root folder after the file (here the random temporary name of
    the atomic write); saved to an open file it is always "archive".
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_aggregates(path: str | os.PathLike, agg: Aggregate, meta: dict | None = None) -> None:
    """Atomically `torch.save` the docs/FORMATS.md dict (byte-identical for equal input); meta gains `feature_dim`."""
    save_torch(agg.to_dict({**(meta or {}), "feature_dim": agg.feature_dim}), path)


def load_aggregates(path: str | os.PathLike) -> tuple[Aggregate, dict]:
    """(Aggregate, meta) from a file written by `save_aggregates`; bad files are a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: aggregates file not found")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return Aggregate.from_dict(d), dict(d.get("meta", {}))
    except (KeyError, TypeError, AttributeError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise UserError(f"{path}: not an mmlightning aggregates file ({type(e).__name__}: {e})") from None


def dispersion(agg: Aggregate) -> torch.Tensor:
    """(V,) image dispersion (mean pairwise cosine distance), exact: 1 - (|S|^2 - n) / (n (n - 1)).

    S is the sum of the n L2-normalised features; NaN where a word has fewer than two images.
    """
    n = agg.count.to(torch.float64)
    s2 = (agg.sum_normalized ** 2).sum(dim=1)
    out = 1.0 - (s2 - n) / (n * (n - 1))
    return torch.where(n >= 2, out, torch.full_like(out, float("nan")))


def word2vec_key(word: str) -> str:
    """A word as a word2vec key: inner whitespace becomes '_' (multi-word labels like 'ice cream')."""
    return "_".join(word.split())


def export_word2vec(agg: Aggregate, output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `mean.txt` (CNN-Mean) and `max.txt` (CNN-Max) word2vec text files atomically."""
    output_dir = Path(output_dir)
    d = agg.to_dict()
    keys = [word2vec_key(w) for w in d["words"]]
    mean = (d["sum"] / d["count"].clamp(min=1).unsqueeze(1).to(torch.float64)).float().numpy()
    paths = output_dir / "mean.txt", output_dir / "max.txt"
    for path, m in zip(paths, (mean, d["max"].numpy())):
        with atomic_path(path) as tmp:
            save_word2vec(tmp, keys, m)
    return paths
