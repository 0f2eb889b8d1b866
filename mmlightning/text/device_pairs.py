"""Skip-gram pairs made where the tables live (a GPU, or the CPU): the numpy generator of sgns.py in torch.

    pairs = DevicePairs(enc.tokens, enc.sentences, enc.counts, window=5, negative=5, sample=1e-3,
                        stretch_words=1 << 20, seed=1).to("cuda")
    inp, out = pairs.pairs(stretch=3, epoch=0)     # (P,) contexts, (P, K+1) centre + K negatives, on cuda

The whole encoded corpus (word ids int32 (N,), sentence ids int32 (N,)) is copied to the device once.
A step takes one contiguous stretch of `stretch_words` corpus positions and, all on the device:
sub-samples it (word2vec's keep probability), draws each kept centre's window b ~ U{1..window}, makes
every (centre, context) pair within the window and the sentence for all offsets at once (one masked
select over the stacked offsets), shuffles the pairs, and draws K negatives per pair from unigram^0.75
with an alias table (collisions with the centre redrawn, as `draw_negatives` does). Randomness comes
from a generator seeded by (seed, epoch, stretch), so a resumed run makes the same pairs. The only host
work per step is seeding that generator and reading the pair count (one synchronisation).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mmlightning.text.corpus import sentence_ids
from mmlightning.text.sgns import alias_table, keep_probabilities


def stretch_seed(seed: int, epoch: int, stretch: int) -> int:
    """A 63-bit generator seed for (seed, epoch, stretch), independent of ranks and devices."""
    return int(np.random.SeedSequence([seed, epoch, stretch]).generate_state(1, np.uint64)[0]) >> 1


def window_pairs(ids: torch.Tensor, sent: torch.Tensor, b: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, context) int64 (P,) of kept words ids (m,) with sentence ids (m,) and windows b (m,).

    The pairs of `sgns.make_pairs`, grouped by offset: centre i with context i + d (right) and i + d
    with i (left), 1 <= d <= window, both in one sentence and d <= the centre's window.
    """
    m = len(ids)
    lo_ids, hi_ids, masks = [], [], []
    for d in range(1, min(window, m - 1) + 1):
        same = sent[:-d] == sent[d:]  # (m - d,)
        masks += [same & (b[:-d] >= d), same & (b[d:] >= d)]  # right: centre i; left: centre i + d
        lo_ids.append(ids[:-d])
        hi_ids.append(ids[d:])
    if not masks:
        empty = ids.new_zeros(0, dtype=torch.int64)
        return empty, empty
    mask = torch.cat(masks)  # (sum 2 (m - d),)
    # right pairs: centre = low, context = high; left pairs: the reverse
    centre = torch.cat([t for lo, hi in zip(lo_ids, hi_ids) for t in (lo, hi)])[mask]
    context = torch.cat([t for lo, hi in zip(lo_ids, hi_ids) for t in (hi, lo)])[mask]
    return centre.long(), context.long()


def alias_draw(accept: torch.Tensor, alias: torch.Tensor, shape, gen: torch.Generator) -> torch.Tensor:
    """int64 draws of `shape` from an alias table (accept float (V,), alias int64 (V,)) on their device."""
    col = torch.randint(0, len(accept), shape, generator=gen, device=accept.device)
    keep = torch.rand(shape, generator=gen, device=accept.device) < accept[col]
    return torch.where(keep, col, alias[col])


def draw_negatives_t(accept: torch.Tensor, alias: torch.Tensor, positives: torch.Tensor, k: int,
                     gen: torch.Generator, rounds: int = 8) -> torch.Tensor:
    """int64 (P, k) negatives, redrawn (up to `rounds` times) where one equals its row's positive (P,)."""
    neg = alias_draw(accept, alias, (len(positives), k), gen)  # (P, k)
    for _ in range(rounds):
        hit = (neg == positives[:, None]).nonzero(as_tuple=True)  # rows, cols of collisions
        if not len(hit[0]):
            break
        neg[hit] = alias_draw(accept, alias, (len(hit[0]),), gen)
    return neg


class DevicePairs:
    """The pair stream of one corpus, generated on the device of its tensors, one stretch per step."""

    def __init__(self, tokens: np.ndarray, sentences: np.ndarray, counts: np.ndarray, window: int, negative: int,
                 sample: float, stretch_words: int, seed: int, rank: int = 0, world_size: int = 1):
        self.window, self.negative, self.stretch_words, self.seed = window, negative, stretch_words, seed
        self.rank, self.world_size = rank, world_size
        n = len(tokens)
        self.tokens = torch.from_numpy(np.asarray(tokens).astype(np.int32))  # (N,)
        self.sent = torch.from_numpy(sentence_ids(sentences, n))  # (N,)
        self.keep = torch.from_numpy(keep_probabilities(counts, sample).astype(np.float32))  # (V,)
        accept, alias = alias_table(counts)
        self.accept = torch.from_numpy(accept.astype(np.float32))  # (V,)
        self.alias = torch.from_numpy(alias)  # (V,) int64

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    def to(self, device: torch.device | str) -> "DevicePairs":
        """Move the corpus and tables to `device` (once; a no-op when already there)."""
        for name in ("tokens", "sent", "keep", "accept", "alias"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def n_stretches(self) -> int:
        """Stretches per epoch, padded to a multiple of the world size (every rank runs as many steps)."""
        n = math.ceil(self.n_tokens / self.stretch_words)
        return math.ceil(n / self.world_size) * self.world_size

    def stretches(self) -> range:
        """The stretch indices this rank trains on, in order."""
        return range(self.rank, self.n_stretches(), self.world_size)

    def words(self, stretch: int) -> int:
        """Corpus words in `stretch` (0 for padding)."""
        lo = stretch * self.stretch_words
        return max(min(lo + self.stretch_words, self.n_tokens) - lo, 0)

    def kept(self, stretch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Sub-sampled word ids int32 (m,) and sentence ids int32 (m,) of `stretch` (draws from `gen`)."""
        lo = stretch * self.stretch_words
        ids = self.tokens[lo:lo + self.stretch_words]  # (n,)
        sent = self.sent[lo:lo + self.stretch_words]  # (n,)
        keep = torch.rand(len(ids), generator=gen, device=self.device) < self.keep[ids.long()]  # (n,)
        return ids[keep], sent[keep]

    def generator(self, stretch: int, epoch: int) -> torch.Generator:
        """The random generator of (seed, epoch, stretch) on the device."""
        return torch.Generator(device=self.device).manual_seed(stretch_seed(self.seed, epoch, stretch))

    def pairs(self, stretch: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (P,), output (P, K+1)) int64 on the device: contexts, and centre + K negatives per pair."""
        gen = self.generator(stretch, epoch)
        ids, sent = self.kept(stretch, gen)  # (m,), (m,)
        b = torch.randint(1, self.window + 1, (len(ids),), generator=gen, device=self.device)  # (m,)
        centre, context = window_pairs(ids, sent, b, self.window)  # (P,), (P,)
        order = torch.randperm(len(centre), generator=gen, device=self.device)  # mix offsets and positions
        centre, context = centre[order], context[order]
        neg = draw_negatives_t(self.accept, self.alias, centre, self.negative, gen)  # (P, K)
        return context, torch.cat([centre[:, None], neg], dim=1)
