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
  - exact: the term, its margin and cosine, k negatives per occurrence drawn at random (uniformly) among
    the words that have a visual vector (the word itself excluded), its exact gradient (tested against
    finite differences), one learning rate (skip-gram's, decaying linearly) times `weight`, one SGD step
    for each of a word's first two occurrences in a chunk;
  - approximated: the term is applied per chunk of corpus (host pairs and the native kernel: a chunk of
    `chunk_words` words; device pairs: each stretch cut into slices of about that size), after the chunk's
    skip-gram pairs, with the tables as they are then; a word seen c times in the chunk steps in rounds
    over 1, 1, 2, 4, ... of its occurrences (one step on a round's summed term; about log2 c + 1 steps
    instead of c: one step on all c overshot, a word's norm reaching 100+); B's map stays fixed through a
    chunk's rounds, then takes one step on their summed gradient; the chunk's k negatives are drawn once
    and shared by its visual words (each word's are still a uniform sample; one equal to the word is
    dropped). Occurrences are the sub-sampled ones where pairs are made in Python (host, device); with
    the native kernel, which sub-samples inside C, each occurrence counts with its keep probability;
  - different from the paper (Section 4, checked against its text): it keeps the first 300 dimensions of
    4096-d FC7 vectors for both variants (so B's map is 300 x 300); here A's visual vectors are PCA-reduced
    (a CNN's pooled features have no ordered dimensions) and B maps into the full visual space; the
    paper's B uses k = 5 and an L2 penalty lambda = 1e-4 on the map (`map_l2`; per visual occurrence
    here), A k = 20; its text side is hierarchical softmax, ours negative sampling; it adds the two terms
    (weight 1). `reproduce` uses settings chosen on MEN dev (scripts/tune_mmskipgram.py).
Batched: per chunk, B's (n, Dv) x (Dv, D) products (n distinct visual words) happen once, for the visual
vectors brought into the word space and for the map's gradient; the rounds work in the word space (z = M u
is never formed: |z|^2 = u^T (M^T M) u), and nothing is done per occurrence.

Scale: a cosine's gradient is 1 / |z| long and word2vec starts from tiny vectors (|u| ~ 0.03 at D = 100), so
the first visual steps are long and pictured words end longer than the rest. `weight` sets the balance with
the text; on a toy corpus where every sentence holds a pictured word, weight 1 pushed the imageless words that
share their contexts into an anti-visual arrangement (one step per occurrence too) and weight 0.3 did not
(tests/test_mmskipgram.py): choose it on a dev set.
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
PAPER_MARGIN = 0.5  # the paper's margin gamma (both variants)
PAPER_NEGATIVES = 20  # the paper's number k of visual negative samples for variant A
PAPER = {"A": {"negatives": 20, "margin": 0.5, "map_l2": 0.0},  # Lazaridou et al. 2015, Section 4
         "B": {"negatives": 5, "margin": 0.5, "map_l2": 1e-4}}  # B: k = 5 and an L2 penalty lambda on the map
EXACT_SVD_MAX = 4_000_000  # entries of the visual matrix up to which PCA uses an exact SVD


def word_space_hinge(u: torch.Tensor, P: torch.Tensor, N: torch.Tensor, G: torch.Tensor | None, counts: torch.Tensor,
                     margin: float, mask: torch.Tensor | None = None):
    """The max-margin term of z = M u (B) or z = u (A) and its gradient in u, without forming z, no autograd.

    u: (n, D) word vectors; P: (n, D) each word's own unit visual vector v brought back, M^T v (A: v itself);
    N: (K, D) the negatives' M^T v' (A: v'); G: (D, D) M^T M (A: None, the identity); counts: (n,) weight of
    each word (its occurrences); mask: (n, K) bool, False where a negative is dropped (default: all kept).
    With |z| = sqrt(u^T G u), cos(z, v) = u^T P / |z| and d cos(z, v) / dz = (v - cos(z, v) z / |z|) / |z|:
        loss = sum_i counts_i sum_k mask_ik max(0, margin - cos(z_i, v_i) + cos(z_i, v'_k))
        dloss/dz_i = sum_{k active} counts_i [(v'_k - c_ik z^_i) - (v_i - p_i z^_i)] / |z_i|,  dloss/du_i = M^T that.
    Returns (loss, grad_u (n, D), (an (n, K), pn (n,), coef (n,))): dloss/dz_i = an_i V' - pn_i v_i + coef_i z_i,
    what the map's gradient sum_i dloss/dz_i u_i^T is made of.
    """
    Gu = u if G is None else u @ G  # (n, D)
    norm = (u * Gu).sum(1).clamp_min(1e-24).sqrt()  # (n,) |z|
    p = torch.linalg.vecdot(u, P) / norm  # (n,) cos(z_i, own)
    c = (u @ N.T) / norm[:, None]  # (n, K) cos(z_i, negative k)
    h = margin - p[:, None] + c  # (n, K) hinge arguments
    act = h > 0
    if mask is not None:
        act &= mask
    a = act.to(u.dtype) * counts.to(u.dtype)[:, None]  # (n, K) weight of each active term
    loss = (a * h).sum()
    n_act = a.sum(1)  # (n,)
    an, pn = a / norm[:, None], n_act / norm  # (n, K), (n,)
    coef = (n_act * p - (a * c).sum(1)) / norm ** 2  # (n,)
    grad = (an @ N).addcmul_(P, -pn[:, None]).addcmul_(Gu, coef[:, None])  # (n, D)
    return loss, grad, (an, pn, coef)


def round_sizes(counts: torch.Tensor):
    """Occurrences per step of each word seen `counts` (n,) times: 1, 1, 2, 4, ... (the last what is left).

    Yields (positions (m,) of the words still stepping, their occurrences this step (m,)).
    """
    left, sel, r = counts.clone(), torch.arange(len(counts), device=counts.device), 0
    while len(sel):
        size = 1.0 if r < 2 else 2.0 ** (r - 1)
        c = left[sel].clamp(max=size)
        yield sel, c
        left[sel] -= c
        sel, r = sel[left[sel] > 1e-6], r + 1


def pca_reduce(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Rows of x (n, Dv) as their first `dim` principal-component scores, float32 (n, dim).

    Centred on the rows' mean; an exact SVD (float64) up to EXACT_SVD_MAX entries, else torch's
    randomised SVD seeded by `seed`. Each component's sign makes its largest-magnitude loading positive;
    components beyond min(n - 1, Dv) are zeros. Torch's linear algebra, on torch's threads (numpy's BLAS
    threads keep spinning after a call and took CPU from the training that follows).
    """
    xc = torch.from_numpy(np.asarray(x, dtype=np.float64))
    xc = xc - xc.mean(0, keepdim=True)  # (n, Dv)
    r = max(min(dim, xc.shape[0] - 1, xc.shape[1]), 0)
    if xc.numel() <= EXACT_SVD_MAX:
        comps = torch.linalg.svd(xc, full_matrices=False)[2][:r]  # (r, Dv)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(xc, q=min(r + 10, min(xc.shape)), niter=4)
        comps = v[:, :r].T  # (r, Dv)
    big = comps.abs().argmax(1)
    comps = comps * torch.sign(comps[torch.arange(r), big])[:, None]
    out = np.zeros((xc.shape[0], dim), np.float32)
    out[:, :r] = (xc @ comps.T).numpy()
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
                 margin: float = PAPER_MARGIN, negatives: int = PAPER_NEGATIVES, weight: float = 1.0, seed: int = 1,
                 map_l2: float = 0.0):
        check_settings(variant, margin, negatives, weight, map_l2=map_l2)
        if len(vocab_ids) < 2:
            raise UserError(f"visual vectors: {len(vocab_ids)} word(s) of the vocabulary have one; need at least 2")
        self.targets = targets / targets.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_vis, E)
        self.vocab_ids = vocab_ids.long()  # (n_vis,)
        self.index = torch.full((vocab_size,), -1, dtype=torch.int64)  # (V,)
        self.index[self.vocab_ids] = torch.arange(len(vocab_ids))
        self.variant, self.margin, self.negatives, self.weight, self.seed = variant, margin, negatives, weight, seed
        self.map_l2 = map_l2  # B: lambda of the penalty lambda |M|^2, once per visual occurrence (as per SGD step)

    @classmethod
    def from_file(cls, path: str | Path, words: list[str], dim: int, variant: str = "B", seed: int = 1,
                  **settings) -> "VisualObjective":
        """Read any vectors file `load_vectors` reads; keep the vocabulary's words; reduce (A) or not (B)."""
        from mmlightning.vectors import load_vectors

        check_settings(variant, settings.get("margin", PAPER_MARGIN), settings.get("negatives", PAPER_NEGATIVES),
                       settings.get("weight", 1.0), map_l2=settings.get("map_l2", 0.0))
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
        """The chunk's visual steps (rate lr x weight) for words `rows` (n,) seen `counts` (n,) times.

        A word's occurrences are stepped in rounds of 1, 1, 2, 4, ... (`round_sizes`): each round one SGD
        step on those occurrences' summed term, the word's vector as the earlier rounds left it. B's map
        (Dv, D) stays as it is through the rounds and then takes one step on the gradient summed over all
        of them; (n, Dv) x (Dv, D) products happen once per chunk, the rounds work in the word space.
        Updates syn0 (V, D) rows in place (and vmap); returns the term's value summed over the rounds.
        """
        if not len(rows):
            return 0.0
        self.to(syn0.device)
        ids = self.vocab_ids[rows]  # (n,) vocabulary ids, distinct
        neg_rows = neg_rows.to(syn0.device)
        mask = neg_rows[None, :] != rows[:, None]  # (n, K) a word is not its own negative
        pos, neg = self.targets.index_select(0, rows), self.targets.index_select(0, neg_rows)  # (n, E), (K, E)
        if self.variant == "A":
            P, N, G = pos, neg, None
        else:  # the visual vectors brought into the word space once: (n, Dv) x (Dv, D), (K, Dv) x (Dv, D)
            P, N, G = pos @ vmap, neg @ vmap, vmap.T @ vmap  # (n, D), (K, D), (D, D)
            SN, SP, SZ = torch.zeros_like(N), torch.zeros_like(P), torch.zeros_like(G)  # the map's gradient parts
        step, total = -lr * self.weight, 0.0
        for sel, c in round_sizes(counts.to(syn0.dtype)):
            u = syn0.index_select(0, ids[sel])  # (m, D)
            loss, gu, (an, pn, coef) = word_space_hinge(u, P[sel], N, G, c, self.margin, mask[sel])
            syn0.index_add_(0, ids[sel], gu, alpha=step)
            total += float(loss)
            if G is not None:  # dloss/dM = sum_i (an_i V' - pn_i v_i + coef_i M u_i) u_i^T, gathered by part
                SN.addmm_(an.T, u)  # (K, D)
                SP.index_add_(0, sel, u * pn[:, None])  # (n, D)
                SZ.addmm_(u.T, u * coef[:, None])  # (D, D)
        if G is not None:  # one step of the map: (Dv, K)(K, D) - (Dv, n)(n, D) + (Dv, D)(D, D)
            grad_map = (neg.T @ SN).sub_(pos.T @ SP).add_(vmap @ SZ)
            if self.map_l2 > 0:  # + d(lambda |M|^2)/dM for each of the chunk's visual occurrences
                grad_map.add_(vmap, alpha=2.0 * self.map_l2 * float(counts.sum()))
                total += self.map_l2 * float(counts.sum()) * float((vmap * vmap).sum())
            vmap.add_(grad_map, alpha=step)
        return total


def check_settings(variant: str, margin: float, negatives: int, weight: float, owner: object = None,
                   prefix: str = "", map_l2: float = 0.0) -> None:
    """One-line UserErrors for bad visual settings, naming the argument `<prefix>visual_...` of `owner`."""
    if variant not in VARIANTS:
        raise UserError(f"must be A or B, got {variant!r}", argument=f"{prefix}visual_variant", owner=owner)
    if not margin > 0:
        raise UserError(f"must be > 0, got {margin}", argument=f"{prefix}visual_margin", owner=owner)
    if negatives < 1:
        raise UserError(f"must be >= 1, got {negatives}", argument=f"{prefix}visual_negatives", owner=owner)
    if not weight > 0:
        raise UserError(f"must be > 0, got {weight}", argument=f"{prefix}visual_weight", owner=owner)
    if not map_l2 >= 0:
        raise UserError(f"must be >= 0, got {map_l2}", argument=f"{prefix}visual_map_l2", owner=owner)
