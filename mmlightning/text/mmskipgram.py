"""MMSkip-gram's visual objective (Lazaridou, Pham & Baroni, NAACL 2015), added to skip-gram's training.

    from mmlightning.text.skipgram import SkipGram
    model = SkipGram(dim=100, visual_vectors="checkpoints/extract-tuxpaint/mean.txt", visual_variant="B")

The paper's objective: for every (sub-sampled) occurrence of a word w_t that has a visual vector v(w_t),
skip-gram's loss gets a max-margin term pulling the word's vector toward its own visual vector and away
from k visual vectors of other words:

    L_vis(w) = sum_{j = 1..k} max(0, margin - cos(z(w), v(w)) + cos(z(w), v(w_j)))

variant A: z(w) = u(w), the word vector itself, against visual vectors reduced to the word dimension D
(PCA fitted on the visual vectors of the vocabulary's visual words: centred, an exact SVD, or a seeded
randomised one for large matrices; each component's sign fixed so its largest loading is positive;
fewer than D components are zero-padded);
variant B: z(w) = M u(w), M a (Dv, D) linear map into the visual space, learned jointly (the visual
vectors as given, not centred, L2-normalised). Only the word (input) vectors u and M receive this
gradient; the visual vectors are fixed. Words without a visual vector get no term: they move only
through the contexts they share with the words that have one.

What is the paper's and what is approximated here:
  - exact: the term, its margin and cosine, its k negatives per occurrence drawn at random (uniformly)
    among the words that have a visual vector (the word itself excluded), its exact gradient (tested
    against finite differences), one learning rate (skip-gram's, decaying linearly) times `weight`;
  - approximated: the term is applied once per chunk of corpus (host pairs and the native kernel: one
    chunk of `chunk_words` words; device pairs: each stretch cut into slices of about that size), after
    the chunk's skip-gram pairs, as one gradient step on the sum over the chunk's occurrences: a word
    seen c times in the chunk contributes c times its term (its count), evaluated with the tables as they
    are at that point; the chunk's k negatives are drawn once and shared by all its visual words (each
    word's k negatives are still a uniform sample; a negative equal to the word is dropped). Occurrences
    are the sub-sampled ones where the pairs are made in Python (host, device); with the native kernel,
    which sub-samples inside C, each occurrence counts with its keep probability (the expected count).
Batched, the step per chunk is a handful of (n, D) x (D, Dv) matrix products over the chunk's n distinct
visual words, not one outer product per occurrence.
"""
from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch

from mmlightning.errors import UserError

log = logging.getLogger(__name__)
VARIANTS = ("A", "B")
PAPER_MARGIN = 0.5  # the paper's margin gamma
PAPER_NEGATIVES = 20  # the paper's number k of visual negative samples
EXACT_SVD_MAX = 4_000_000  # entries of the visual matrix up to which PCA uses an exact SVD


def cosine_hinge(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, counts: torch.Tensor, margin: float,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The max-margin term and its gradient with respect to z, no autograd.

    z: (n, E) word side (u for A, M u for B); pos: (n, E) each word's own visual vector, unit norm;
    neg: (K, E) negative visual vectors, unit norm; counts: (n,) occurrences of each word; mask: (n, K)
    bool, False where a negative is dropped (default all kept).
    loss = sum_i counts_i sum_k mask_ik max(0, margin - cos(z_i, pos_i) + cos(z_i, neg_k)).
    With d cos(z, v) / dz = (v - cos(z, v) z^) / |z| for unit v:
    grad_i = counts_i sum_{k active} [(neg_k - c_ik z^_i) - (pos_i - p_i z^_i)] / |z_i|. Returns (loss, (n, E)).
    """
    norm = torch.linalg.vector_norm(z, dim=1).clamp_min(1e-12)  # (n,)
    p = torch.linalg.vecdot(z, pos) / norm  # (n,) cos(z_i, own)
    c = (z @ neg.T) / norm[:, None]  # (n, K) cos(z_i, neg_k)
    h = margin - p[:, None] + c  # (n, K) hinge arguments
    act = h > 0
    if mask is not None:
        act &= mask
    a = act.to(z.dtype) * counts.to(z.dtype)[:, None]  # (n, K) weight of each active term
    loss = (a * h).sum()
    n_act = a.sum(1)  # (n,)
    # the same sum, written without (n, E) temporaries but the result: z^ = z / |z| folded into coefficients
    coef_z = (n_act * p - (a * c).sum(1)) / norm ** 2  # (n,)
    grad = (a / norm[:, None]) @ neg  # (n, E)
    grad.addcmul_(pos, (-n_act / norm)[:, None]).addcmul_(z, coef_z[:, None])
    return loss, grad


def pca_reduce(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Rows of x (n, Dv) as their first `dim` principal-component scores, float32 (n, dim).

    Centred on the rows' mean; an exact SVD (float64) up to EXACT_SVD_MAX entries, else torch's
    randomised SVD seeded by `seed`. Each component's sign makes its largest-magnitude loading positive;
    components beyond min(n - 1, Dv) are zeros.
    """
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0, keepdims=True)  # (n, Dv)
    r = max(min(dim, x.shape[0] - 1, x.shape[1]), 0)
    if xc.size <= EXACT_SVD_MAX:
        _, _, vt = np.linalg.svd(xc, full_matrices=False)  # (min(n, Dv), Dv)
        comps = vt[:r]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(torch.from_numpy(xc), q=min(r + 10, min(xc.shape)), niter=4)
        comps = v[:, :r].T.numpy()  # (r, Dv)
    big = np.abs(comps).argmax(1)
    comps = comps * np.sign(comps[np.arange(r), big])[:, None]
    out = np.zeros((x.shape[0], dim), np.float32)
    out[:, :r] = xc @ comps.T
    return out


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the visual vectors enter cache keys by content, not by path)."""
    h = hashlib.sha256()
    if not Path(path).is_file():
        raise UserError(f"visual vectors: {path} not found")
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def match_vocabulary(visual_words: list[str], words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the visual file, vocabulary ids) of the visual words in the vocabulary, by vocabulary id.

    A visual word matches the vocabulary word spelled the same, else its lower-cased form; where several
    match one vocabulary word, the exact spelling wins, then the first in the file.
    """
    vocab = {w: i for i, w in enumerate(words)}
    chosen: dict[int, int] = {}
    for exact in (True, False):
        for row, w in enumerate(visual_words):
            i = vocab.get(w if exact else w.lower())
            if i is not None and i not in chosen:
                chosen[i] = row
    ids = np.array(sorted(chosen), dtype=np.int64)
    return np.array([chosen[i] for i in ids], dtype=np.int64), ids


def init_map(visual_dim: int, dim: int, seed: int) -> torch.Tensor:
    """Variant B's map M (Dv, D), entries N(0, 1/D), seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(visual_dim, dim, generator=gen) / math.sqrt(dim)


class VisualObjective:
    """The visual term for one vocabulary: which words have a visual vector, their targets, the step.

    targets: (n_vis, E) unit rows (E = D for A, Dv for B); vocab_ids: (n_vis,) their vocabulary ids;
    index: (V,) vocabulary id -> row of targets, or -1.
    """

    def __init__(self, targets: torch.Tensor, vocab_ids: torch.Tensor, vocab_size: int, variant: str = "B",
                 margin: float = PAPER_MARGIN, negatives: int = PAPER_NEGATIVES, weight: float = 1.0, seed: int = 1):
        check_settings(variant, margin, negatives, weight)
        if len(vocab_ids) < 2:
            raise UserError(f"visual vectors: {len(vocab_ids)} word(s) of the vocabulary have one; need at least 2")
        self.targets = targets / targets.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_vis, E)
        self.vocab_ids = vocab_ids.long()  # (n_vis,)
        self.index = torch.full((vocab_size,), -1, dtype=torch.int64)  # (V,)
        self.index[self.vocab_ids] = torch.arange(len(vocab_ids))
        self.variant, self.margin, self.negatives, self.weight, self.seed = variant, margin, negatives, weight, seed

    @classmethod
    def from_file(cls, path: str | Path, words: list[str], dim: int, variant: str = "B", seed: int = 1,
                  **settings) -> "VisualObjective":
        """Read any vectors file `load_vectors` reads; keep the vocabulary's words; reduce (A) or not (B)."""
        from mmlightning.vectors import load_vectors

        check_settings(variant, settings.get("margin", PAPER_MARGIN), settings.get("negatives", PAPER_NEGATIVES),
                       settings.get("weight", 1.0))
        if not Path(path).is_file():
            raise UserError(f"visual vectors: {path} not found")
        kv = load_vectors(path)
        rows, ids = match_vocabulary(list(kv.index_to_key), list(words))
        x = kv.vectors[rows]  # (n_vis, Dv)
        nonzero = np.linalg.norm(x, axis=1) > 0  # an all-zero visual vector has no direction
        rows, ids, x = rows[nonzero], ids[nonzero], x[nonzero]
        log.info("visual objective: %d of %d visual words in the vocabulary (%s, variant %s)",
                 len(ids), len(kv), path, variant)
        targets = pca_reduce(x, dim, seed) if variant == "A" else x.astype(np.float32)
        if variant == "A":  # a word whose PCA scores are all zero (a lone mean row) has no target either
            keep = np.linalg.norm(targets, axis=1) > 0
            targets, ids = targets[keep], ids[keep]
        return cls(torch.from_numpy(np.ascontiguousarray(targets)), torch.from_numpy(ids), len(words), variant,
                   seed=seed, **settings)

    @property
    def visual_dim(self) -> int:
        return int(self.targets.shape[1])

    def to(self, device: torch.device) -> "VisualObjective":
        """Move the targets and the index to `device` (a no-op when there)."""
        if self.targets.device != device:
            self.targets, self.vocab_ids, self.index = (t.to(device) for t in (self.targets, self.vocab_ids, self.index))
        return self

    def counts(self, ids: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows (n,), counts (n,) float) of the visual words among the occurrences `ids` (m,), each of weight 1 or `weights` (m,)."""
        rows = self.index[ids.long()]  # (m,)
        seen = rows >= 0
        w = torch.ones(int(seen.sum()), device=rows.device) if weights is None else weights[seen].float()
        total = torch.zeros(len(self.vocab_ids), device=rows.device).index_add_(0, rows[seen], w)  # (n_vis,)
        present = total.nonzero().squeeze(1)  # (n,)
        return present, total[present]

    def draw_negatives(self, epoch: int, chunk: int, part: int = 0) -> torch.Tensor:
        """The chunk's k negative rows (K,) int64, uniform over the visual words, seeded by (seed, epoch, chunk, part)."""
        from mmlightning.text.device_pairs import stretch_seed

        gen = torch.Generator().manual_seed(stretch_seed(self.seed, epoch, chunk * 4099 + part))
        return torch.randint(0, len(self.vocab_ids), (self.negatives,), generator=gen)

    def step(self, syn0: torch.Tensor, vmap: torch.Tensor | None, rows: torch.Tensor, counts: torch.Tensor,
             neg_rows: torch.Tensor, lr: float) -> float:
        """One SGD step (rate lr x weight) of the summed term over words `rows` (n,) seen `counts` (n,) times.

        Updates syn0 (V, D) rows in place and, for B, vmap (Dv, D); returns the term's value before the step.
        """
        if not len(rows):
            return 0.0
        self.to(syn0.device)
        ids = self.vocab_ids[rows]  # (n,) vocabulary ids, distinct
        u = syn0.index_select(0, ids)  # (n, D)
        neg_rows = neg_rows.to(syn0.device)
        mask = neg_rows[None, :] != rows[:, None]  # (n, K) a word is not its own negative
        z = u if self.variant == "A" else u @ vmap.T  # (n, E): (n, D) x (D, Dv) for B
        pos, neg = self.targets.index_select(0, rows), self.targets.index_select(0, neg_rows)  # (n, E), (K, E)
        loss, gz = cosine_hinge(z, pos, neg, counts, self.margin, mask)
        step = -lr * self.weight
        if self.variant == "A":
            syn0.index_add_(0, ids, gz, alpha=step)
        else:
            gu = gz @ vmap  # (n, Dv) x (Dv, D) -> (n, D), with M before its own update
            vmap.add_(gz.T @ u, alpha=step)  # (Dv, n) x (n, D): the map's gradient, once per chunk
            syn0.index_add_(0, ids, gu, alpha=step)
        return float(loss)


def check_settings(variant: str, margin: float, negatives: int, weight: float) -> None:
    """One-line UserErrors for bad visual settings."""
    if variant not in VARIANTS:
        raise UserError(f"visual_variant: must be A or B, got {variant!r}")
    if not margin > 0:
        raise UserError(f"visual_margin: must be > 0, got {margin}")
    if negatives < 1:
        raise UserError(f"visual_negatives: must be >= 1, got {negatives}")
    if not weight > 0:
        raise UserError(f"visual_weight: must be > 0, got {weight}")
