"""Imagined visual vectors: a map from text vectors to visual vectors, learned on the words that have
images, predicts a visual vector for every other word.

    kv = imagine(text_kv, visual_kv, words=bench_words, k=5, seed=0)          # every word: a predicted vector
    kv = imagine(text_kv, visual_kv, words=bench_words, own="real")           # pictured words keep theirs
    vis = visual_with_imagined(text_kv, visual_kv, words=bench_words)         # Eq. 1's visual part, filled in
    kv, info = imagine_with_info(text_kv, visual_kv, words=bench_words)       # + chosen strengths, held-out fit

Basis: Lazaridou, Bruni & Baroni (ACL 2014) learn cross-modal maps between a text and a visual space on
the concepts that have both (linear least squares in closed form, and a one-hidden-layer network whose
best activation was tanh); MMSkip-gram B (Lazaridou, Pham & Baroni, NAACL 2015) learns a linear
text-to-visual map and applies it to words that never had images (zero-shot retrieval); Collell, Zhang &
Moens (AAAI 2017) build multi-modal vectors from the "imagined" visual predictions of such a learned
text-to-visual map, for every word. Here (written from those descriptions, no code of theirs):
- "ridge" (default): Y = mean_Y + (X - mean_X) W, W = (Xc'Xc + lam I)^-1 Xc'Yc, solved in closed form
  through the SVD of Xc. lam = c * (mean eigenvalue of Xc'Xc), c from a log grid, chosen by inner
  k-fold cross-validation (held-out squared error) on the training words only: never on a benchmark.
  With a few hundred pictured words, 100-dim text vectors and 1280-dim visual targets a linear map is
  what the data can fit; it is deterministic and takes milliseconds.
- "mlp" (option): one tanh hidden layer, linear output, squared error plus an L2 penalty whose strength
  is chosen by the same inner cross-validation; full-batch L-BFGS (50 iterations, one thread) from a
  seeded initialisation. Seconds per fit where ridge takes milliseconds, and (k + 1) * (inner_k * grid
  + 1) fits per call. Compare the two by `info["heldout_cosine"]` (cross-fitted predictions against the
  real vectors of the training words), never by benchmark scores. On the embedded default it is no
  better than ridge (held-out cosine 0.18 vs 0.19 Tux Paint, 0.13 vs 0.12 OpenClipart, 0.13 vs 0.14 both:
  benchmarks/explore_grounding.py --mlp), so ridge stays the default.
- Cross-fitting: the training words are split into k folds by a seeded permutation of their order (never
  by their vectors); each fold's predictions come from a map fitted (inner CV included) on the other
  folds, so no word's own images enter its own predicted vector. Words without images are predicted by
  the map fitted on all training words.
Words are looked up as given, then lower-cased (`KeyedVectors.lookup`); words without a text vector are
left out of the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mmlightning.errors import UserError

METHODS = ("ridge", "mlp")
OWN = ("crossfit", "real")
RIDGE_GRID = tuple(float(10.0 ** e) for e in np.arange(-4.0, 3.01, 0.5))  # c: lam = c * mean eigenvalue
MLP_GRID = (1e-3, 1e-2, 1e-1)                                            # L2 penalty per weight
MLP_HIDDEN = 128
MLP_ITERS = 50


@dataclass(frozen=True)
class Fitted:
    """A fitted text-to-visual map: predict((n, Dt)) -> (n, Dv)."""

    method: str
    strength: float              # the chosen c (ridge) or L2 penalty (mlp)
    x_mean: np.ndarray           # (Dt,)
    y_mean: np.ndarray           # (Dv,)
    weight: np.ndarray           # ridge: (Dt, Dv); mlp: unused (empty)
    net: tuple = ()              # mlp: (x_scale, w1 (Dt, H), b1 (H,), w2 (H, Dv), b2 (Dv,))

    def predict(self, x: np.ndarray) -> np.ndarray:
        xc = np.asarray(x, dtype=np.float64) - self.x_mean                       # (n, Dt)
        if self.method == "ridge":
            return self.y_mean + xc @ self.weight                                # (n, Dv)
        scale, w1, b1, w2, b2 = self.net
        return self.y_mean + np.tanh(xc / scale @ w1 + b1) @ w2 + b2


# ----------------------------------------------------------------- ridge

def _svd(xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(xc, full_matrices=False)                           # (m, r), (r,), (r, Dt)
    return u, s, vt


def _mean_eig(s: np.ndarray, dt: int) -> float:
    """Mean eigenvalue of Xc'Xc (trace / Dt); 1 for an all-zero Xc."""
    m = float((s ** 2).sum()) / max(dt, 1)
    return m if m > 0 else 1.0


def _ridge_errors(x_tr, y_tr, x_ho, y_ho, grid: Sequence[float]) -> np.ndarray:
    """Held-out sum of squared errors of the ridge map for each c of the grid: (G,)."""
    xm, ym = x_tr.mean(0), y_tr.mean(0)
    u, s, vt = _svd(x_tr - xm)
    uty = u.T @ (y_tr - ym)                                                      # (r, Dv)
    a = (x_ho - xm) @ vt.T                                                       # (h, r)
    lam0 = _mean_eig(s, x_tr.shape[1])
    out = np.empty(len(grid))
    for g, c in enumerate(grid):
        f = s / (s ** 2 + c * lam0)                                              # (r,)
        out[g] = float((((a * f) @ uty + ym - y_ho) ** 2).sum())
    return out


def _fit_ridge(x: np.ndarray, y: np.ndarray, c: float) -> Fitted:
    xm, ym = x.mean(0), y.mean(0)
    u, s, vt = _svd(x - xm)
    f = s / (s ** 2 + c * _mean_eig(s, x.shape[1]))
    weight = vt.T @ (f[:, None] * (u.T @ (y - ym)))                              # (Dt, Dv)
    return Fitted("ridge", float(c), xm, ym, weight)


# ----------------------------------------------------------------- small MLP

def _fit_mlp(x: np.ndarray, y: np.ndarray, decay: float, seed: int = 0, hidden: int = MLP_HIDDEN,
             iters: int = MLP_ITERS) -> Fitted:
    """One tanh hidden layer, squared error + decay * |weights|^2, full-batch L-BFGS, seeded init."""
    import torch

    xm, ym = x.mean(0), y.mean(0)
    scale = float(np.sqrt(((x - xm) ** 2).sum(1).mean())) or 1.0                 # rows to unit RMS norm
    xt = torch.from_numpy((x - xm) / scale)                                      # (m, Dt) float64
    yt = torch.from_numpy(y - ym)                                                # (m, Dv)
    g = torch.Generator().manual_seed(int(seed))
    dt, dv = x.shape[1], y.shape[1]
    w1 = (torch.randn(dt, hidden, generator=g, dtype=torch.float64) / np.sqrt(dt)).requires_grad_()
    w2 = (torch.randn(hidden, dv, generator=g, dtype=torch.float64) / np.sqrt(hidden)).requires_grad_()
    b1 = torch.zeros(hidden, dtype=torch.float64, requires_grad=True)
    b2 = torch.zeros(dv, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w1, b1, w2, b2], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        pred = torch.tanh(xt @ w1 + b1) @ w2 + b2                                # (m, Dv)
        loss = ((pred - yt) ** 2).sum(1).mean() + decay * ((w1 ** 2).sum() + (w2 ** 2).sum())
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # small matrices: more threads only contend (60x slower on a busy 2-core box)
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    net = tuple(t.detach().numpy().copy() for t in (w1, b1, w2, b2))
    return Fitted("mlp", float(decay), xm, ym, np.empty((0, 0)), (scale, *net))


def _mlp_errors(x_tr, y_tr, x_ho, y_ho, grid: Sequence[float], seed: int) -> np.ndarray:
    return np.array([float(((_fit_mlp(x_tr, y_tr, d, seed).predict(x_ho) - y_ho) ** 2).sum()) for d in grid])


# ----------------------------------------------------------------- fitting with inner CV, cross-fitting

def fold_ids(n: int, k: int, seed: int) -> np.ndarray:
    """(n,) fold of each row: a seeded permutation of 0..n-1 dealt round-robin into k folds."""
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return folds


def fit_map(x: np.ndarray, y: np.ndarray, method: str = "ridge", inner_k: int = 5, seed: int = 0,
            grid: Sequence[float] | None = None) -> Fitted:
    """The map fitted on all rows of x (m, Dt) -> y (m, Dv), its strength chosen by inner k-fold CV on them."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    grid = list(grid or (RIDGE_GRID if method == "ridge" else MLP_GRID))
    kk = min(inner_k, x.shape[0])
    errors = np.zeros(len(grid))
    if len(grid) > 1 and kk >= 2:
        folds = fold_ids(x.shape[0], kk, seed + 1)
        for f in range(kk):
            tr, ho = folds != f, folds == f
            errors += (_ridge_errors(x[tr], y[tr], x[ho], y[ho], grid) if method == "ridge"
                       else _mlp_errors(x[tr], y[tr], x[ho], y[ho], grid, seed))
    best = grid[int(np.argmin(errors))]                                          # ties: the first (strongest)
    return _fit_ridge(x, y, best) if method == "ridge" else _fit_mlp(x, y, best, seed)


def crossfit(x: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0, method: str = "ridge",
             inner_k: int = 5, grid: Sequence[float] | None = None) -> tuple[np.ndarray, list[float]]:
    """Cross-fitted predictions (m, Dv): row i comes from a map fitted without i's fold; + chosen strengths."""
    folds = fold_ids(x.shape[0], k, seed)
    pred = np.empty((x.shape[0], y.shape[1]), dtype=np.float64)
    chosen = []
    for f in range(k):
        ho = folds == f
        fitted = fit_map(x[~ho], y[~ho], method, inner_k, seed, grid)
        pred[ho] = fitted.predict(x[ho])
        chosen.append(fitted.strength)
    return pred, chosen


def _training_rows(text_kv, visual_kv) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Visual words that have a text vector (visual order): their keys, text rows, visual rows."""
    keys, ti, vi = [], [], []
    for j, w in enumerate(visual_kv.index_to_key):
        i = text_kv.lookup(w)
        if i is not None and visual_kv.lookup(w) == j:
            keys.append(w)
            ti.append(i)
            vi.append(j)
    x = np.asarray(text_kv.vectors, dtype=np.float64)[ti].reshape(len(ti), text_kv.vector_size)
    y = np.asarray(visual_kv.vectors, dtype=np.float64)[vi].reshape(len(vi), visual_kv.vector_size)
    return keys, x, y


def _check(text_kv, visual_kv, n: int, k: int, inner_k: int, own: str, method: str) -> None:
    if method not in METHODS:
        raise UserError(f"imagine: method must be one of {', '.join(METHODS)}, got {method!r}")
    if own not in OWN:
        raise UserError(f"imagine: own must be one of {', '.join(OWN)}, got {own!r}")
    if k < 2 or inner_k < 2:
        raise UserError(f"imagine: k and inner_k must be at least 2 (got k={k}, inner_k={inner_k})")
    if text_kv.vector_size < 1 or visual_kv.vector_size < 1:
        raise UserError(f"imagine: text vectors have {text_kv.vector_size} dimensions and visual vectors "
                        f"{visual_kv.vector_size}; both need at least 1")
    if n == 0:
        raise UserError(f"imagine: no word has both a text vector ({len(text_kv)} words) and a visual "
                        f"vector ({len(visual_kv)} words)")
    if n < 2 * k:
        raise UserError(f"imagine: {n} words have both a text and a visual vector; {k} folds need at least {2 * k}")


def imagine_with_info(text_kv, visual_kv, words: Iterable[str] | None = None, k: int = 5, seed: int = 0,
                      own: str = "crossfit", method: str = "ridge", inner_k: int = 5,
                      grid: Sequence[float] | None = None):
    """`imagine`, and a dict: training words, chosen strengths, held-out fit, which words were imagined."""
    from mmlightning.vectors import KeyedVectors

    keys, x, y = _training_rows(text_kv, visual_kv)
    _check(text_kv, visual_kv, len(keys), k, inner_k, own, method)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise UserError("imagine: the text or visual vectors of the training words hold NaN or inf")
    pred, chosen = crossfit(x, y, k, seed, method, inner_k, grid)                # (m, Dv)
    full = fit_map(x, y, method, inner_k, seed, grid)
    out_keys, text_rows, train_rows = _output_rows(text_kv, visual_kv, keys, words)   # (V,), (V,) -1: imageless
    vectors = np.empty((len(out_keys), y.shape[1]), dtype=np.float32)         # (V, Dv)
    plain = train_rows < 0                                                     # (V,) no images: the full map
    plain_idx, tv = np.flatnonzero(plain), np.asarray(text_kv.vectors)
    for start in range(0, len(plain_idx), 4096):
        idx = plain_idx[start:start + 4096]
        vectors[idx] = full.predict(tv[text_rows[idx]])
    vectors[~plain] = (pred if own == "crossfit" else y)[train_rows[~plain]]
    imagined = [w for w, p in zip(out_keys, plain) if p or own == "crossfit"]
    info = {"method": method, "k": k, "inner_k": inner_k, "seed": seed, "own": own,
            "training_words": len(keys), "fold_strengths": chosen, "full_strength": full.strength,
            "heldout_cosine": heldout_cosine(pred, y), "imagined": imagined}
    return KeyedVectors(out_keys, vectors), info


def _output_rows(text_kv, visual_kv, keys: list[str], words: Iterable[str] | None):
    """The words that have a text vector, their text rows, and their training rows (-1: not pictured)."""
    row = {w: i for i, w in enumerate(keys)}
    out_keys, ti, ri = [], [], []
    for w in (text_kv.index_to_key if words is None else words):
        i = text_kv.lookup(w)
        if i is None:
            continue
        j = visual_kv.lookup(w)
        out_keys.append(w)
        ti.append(i)
        ri.append(-1 if j is None else row.get(visual_kv.index_to_key[j], -1))
    return out_keys, np.array(ti, dtype=np.int64), np.array(ri, dtype=np.int64)


def imagine(text_kv, visual_kv, words: Iterable[str] | None = None, k: int = 5, seed: int = 0,
            own: str = "crossfit", method: str = "ridge", inner_k: int = 5,
            grid: Sequence[float] | None = None):
    """Visual vectors for `words` (default: every text word) predicted from their text vectors.

    A word without images gets the map fitted on every pictured word; a pictured word gets its
    cross-fitted prediction (own="crossfit": its own images never enter it) or its real vector
    (own="real"). -> KeyedVectors (Dv = the visual dimension), words without a text vector left out.
    """
    return imagine_with_info(text_kv, visual_kv, words, k, seed, own, method, inner_k, grid)[0]


def visual_with_imagined(text_kv, visual_kv, words: Iterable[str] | None = None, k: int = 5, seed: int = 0,
                         method: str = "ridge", inner_k: int = 5):
    """Eq. 1's visual part with the imageless words filled in: real vectors for words with images, the
    imagined vector for every other word of `words` that has a text vector."""
    return imagine(text_kv, visual_kv, words, k, seed, "real", method, inner_k)


def heldout_cosine(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean cosine between cross-fitted predictions and the real vectors, both centred on the real mean."""
    mu = real.mean(0)
    a, b = pred - mu, real - mu
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.divide((a * b).sum(1), den, out=np.zeros(len(a)), where=den > 0)
    return float(cos.mean()) if len(cos) else float("nan")
