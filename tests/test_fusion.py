"""Eq. 1 on hand-computed cases, and the pair-cosine shortcut against explicit fused vectors."""
import math

import numpy as np
import pytest
import torch

from mmlightning.evaluation.fusion import (
    alpha_grid, best_alpha, centre, first_best, fuse, fuse_keyed, fused_pair_cosines, l2_normalise, sweep_cosines,
    unit_pair_dots,
)
from mmlightning.vectors import KeyedVectors

# 4 words; text already has zero mean; only words 0 and 1 have images (rows 2, 3 of visual are junk).
TEXT = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
VISUAL = torch.tensor([[1.0, 1.0], [3.0, 1.0], [100.0, -7.0], [5.0, 5.0]])
HAS = torch.tensor([True, True, False, False])


def test_centre_and_normalise():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(centre(x), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert torch.equal(centre(VISUAL, HAS), torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(centre(x, torch.tensor([False, False])), torch.zeros(2, 2))
    n = l2_normalise(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(n, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_fuse_hand_computed():
    # centred + normalised: text rows e1, e2, -e1, -e2; visual rows -e1, e1, 0, 0
    expected = torch.tensor([[0.5, 0.0, -0.5, 0.0],
                             [0.0, 0.5, 0.5, 0.0],
                             [-0.5, 0.0, 0.0, 0.0],
                             [0.0, -0.5, 0.0, 0.0]])
    assert torch.allclose(fuse(TEXT, VISUAL, HAS, alpha=0.5), expected)
    f = fuse(TEXT, VISUAL, HAS, alpha=0.25)                       # (4, 4)
    assert torch.allclose(f[0], torch.tensor([0.25, 0.0, -0.75, 0.0]))
    assert torch.allclose(f[2], torch.tensor([-0.25, 0.0, 0.0, 0.0]))
    # without centring the visual rows are only normalised: [1,1]/sqrt2
    g = fuse(TEXT, VISUAL, HAS, alpha=0.5, centring=False)
    assert torch.allclose(g[0, 2:], torch.full((2,), 0.5 / math.sqrt(2)))
    assert torch.equal(g[3, 2:], torch.zeros(2))                   # no images: zero visual part
    with pytest.raises(ValueError):
        fuse(TEXT, VISUAL, HAS, alpha=1.5)


def test_fused_pair_cosines_hand_computed():
    i1, i2 = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3])
    cos = fused_pair_cosines(TEXT, VISUAL, HAS, i1, i2, alpha=0.5)
    # (0,1): text cos 0, visual cos -1 -> (0.25*0 + 0.25*-1) / 0.5 = -0.5
    # (0,2): dot -0.25, norms sqrt(.5) and .5 -> -1/sqrt(2); (2,3): text cos 0, no visual -> 0
    assert torch.allclose(cos, torch.tensor([-0.5, -1 / math.sqrt(2), 0.0], dtype=torch.float64))
    text_mode = fused_pair_cosines(TEXT, VISUAL, HAS, i1, i2, alpha=0.5, missing_visual="text")
    assert torch.allclose(text_mode, torch.tensor([-0.5, -1.0, 0.0], dtype=torch.float64))
    sweep = fused_pair_cosines(TEXT, VISUAL, HAS, i1, i2, alpha=[0.0, 1.0])   # (2, 3)
    assert torch.allclose(sweep[1], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))  # text only
    assert torch.allclose(sweep[0], torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))  # visual only
    with pytest.raises(ValueError):
        fused_pair_cosines(TEXT, VISUAL, HAS, i1, i2, missing_visual="drop")


def test_shortcut_equals_cosine_of_fused_rows():
    g = torch.Generator().manual_seed(0)
    text, vis = torch.randn(30, 5, generator=g).double(), torch.rand(30, 7, generator=g).double()
    has = torch.rand(30, generator=g) < 0.6
    i1, i2 = torch.randint(0, 30, (50,), generator=g), torch.randint(0, 30, (50,), generator=g)
    alphas = [0.0, 0.3, 0.5, 0.95, 1.0]
    sweep = fused_pair_cosines(text, vis, has, i1, i2, alphas)                # (5, 50)
    for a, row in zip(alphas, sweep):
        f = fuse(text, vis, has, a)
        x, y = f[i1], f[i2]
        den = x.norm(dim=1) * y.norm(dim=1)
        ref = torch.where(den > 0, (x * y).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))
        assert torch.allclose(row, ref, atol=1e-12)


def test_fuse_keyed():
    ling = KeyedVectors(["a", "b", "c", "d"], TEXT.numpy())
    vis = KeyedVectors(["B", "a"], np.array([[3.0, 1.0], [1.0, 1.0]]))   # "b" found via lower-case? no: as given
    kv = fuse_keyed(ling, vis, ["a", "b", "c", "d", "unknown"], alpha=0.5)
    assert kv.index_to_key == ["a", "b", "c", "d"] and kv.vector_size == 4
    # "b" is not in vis ("B" is; lookup lower-cases the query, not the stored key): only "a" has images,
    # its centred visual vector is zero -> zero visual part everywhere
    assert np.allclose(kv.vectors[:, 2:], 0.0)
    vis2 = KeyedVectors(["b", "a"], np.array([[3.0, 1.0], [1.0, 1.0]]))
    kv2 = fuse_keyed(ling, vis2, alpha=0.5)
    assert np.allclose(kv2.vectors, fuse(TEXT, VISUAL, HAS, 0.5).numpy())


def test_one_alpha_sweep_hand_computed():
    """The shared sweep (Table 1 / Figure 4, the protocol, grounding): cosines per alpha, the dev choice."""
    assert alpha_grid(0.5) == [0.0, 0.5, 1.0] and len(alpha_grid()) == 21 and alpha_grid()[7] == 0.35
    # unit rows; w3 has no images (zero visual row)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    has = torch.tensor([True, True, True, False])
    dots = unit_pair_dots(t, v, has, torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]))
    # pairs (w0,w1): text 0, visual 1; (w0,w2): text 1, visual 0; (w0,w3): text -1, no visual part
    # alpha 0 (visual only): 1, 0, and 0 (zero denominator); alpha 0.5: .25/.5, .25/.5, -.25/sqrt(.5*.25)
    want = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, -1 / math.sqrt(2)], [0.0, 1.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(sweep_cosines(dots, [0.0, 0.5, 1.0]), want, atol=1e-15)
    text_rule = want.clone()
    text_rule[:, 2] = -1.0                                   # the imageless pair keeps its text cosine
    assert torch.allclose(sweep_cosines(dots, [0.0, 0.5, 1.0], "text"), text_rule, atol=1e-15)
    with pytest.raises(ValueError):
        sweep_cosines(dots, [1.5])

    # gold 3 > 2 > 1; a 4th pair without a text vector (NaN) is skipped. rho: alpha 0 -> 1.5 / sqrt(3),
    # alpha 0.5 -> 1.5 / sqrt(3) as well (a tie: the first row wins), alpha 1 -> 0.5
    gold = np.array([3.0, 2.0, 1.0, 9.0])
    cos = np.concatenate([want.numpy(), np.full((3, 1), np.nan)], axis=1)   # (A=3, P=4)
    dev = np.ones(4, dtype=bool)
    k, r = best_alpha(gold, dev, cos)
    assert k == 0 and r == pytest.approx(1.5 / math.sqrt(3))
    assert best_alpha(gold, dev, cos[[2, 1, 0]])[0] == 1          # ties keep the first row, not the lowest alpha
    assert best_alpha(gold, np.array([True, True, False, True]), cos) == (0, None)   # < 3 dev pairs: no rho
    assert first_best([None, 0.5, 0.5 + 1e-13, 0.4]) == (1, 0.5)   # within 1e-12: a tie
    assert first_best([0.5, 0.5 + 2e-12]) == (1, 0.5 + 2e-12) and first_best([None, None]) == (0, None)
