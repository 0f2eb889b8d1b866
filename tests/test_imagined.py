"""Imagined visual vectors: the ridge map recovers a known linear map, cross-fitting keeps a word's own
visual vector out of its prediction, shapes, and one-line errors for bad input."""
import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.evaluation import imagined as im
from mmlightning.vectors import KeyedVectors

W = np.array([[1.0, 0.0, -2.0, 0.5, 0.0, 1.0],
              [0.0, 3.0, 0.0, 0.0, -1.0, 0.0],
              [2.0, 0.0, 1.0, 0.0, 0.0, -0.5],
              [0.0, -1.0, 0.0, 2.0, 1.0, 0.0]])          # (Dt=4, Dv=6)
B = np.array([10.0, -5.0, 0.0, 1.0, 2.0, 3.0])           # intercept


def _world(n_pictured=200, n_plain=5, noise=0.01, seed=0):
    """Text vectors for n_pictured + n_plain words; visual = text @ W + B + noise for the pictured ones."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n_pictured + n_plain)]
    x = rng.normal(size=(len(words), 4))
    y = x[:n_pictured] @ W + B + noise * rng.normal(size=(n_pictured, 6))
    return KeyedVectors(words, x), KeyedVectors(words[:n_pictured], y), x


def test_ridge_recovers_a_known_map():
    text, visual, x = _world()
    f = im.fit_map(text.vectors[:200], visual.vectors)
    # noise 0.01 over 200 words: W to within 0.01, the intercept too; the inner CV picks the weakest ridge
    assert np.abs(f.weight - W).max() < 0.01
    assert np.abs(f.predict(np.zeros((1, 4)))[0] - B).max() < 0.01
    assert f.strength == min(im.RIDGE_GRID)
    kv = im.imagine(text, visual, words=["w200", "w201"])
    np.testing.assert_allclose(kv.vectors, x[200:202] @ W + B, atol=0.02)


def test_inner_cv_regularises_a_map_with_nothing_to_learn():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 6))      # y independent of x
    f = im.fit_map(x, y)
    assert f.strength == max(im.RIDGE_GRID)
    assert np.abs(f.weight).max() < 0.01                            # predictions ~ the training mean


def test_crossfit_excludes_a_words_own_visual_vector():
    text, visual, _ = _world(n_pictured=40, noise=0.5)
    before = im.imagine(text, visual, words=visual.index_to_key, k=5, seed=3)
    y = visual.vectors.copy()
    y[7] += 100.0                                                   # w7's own images change wildly
    after = im.imagine(text, KeyedVectors(visual.index_to_key, y), words=visual.index_to_key, k=5, seed=3)
    np.testing.assert_allclose(after["w7"], before["w7"], rtol=0, atol=1e-4)
    changed = np.abs(after.vectors - before.vectors).max(axis=1) > 1e-3
    assert changed.sum() >= 30 and not changed[7]                   # the other folds' words did move


def test_crossfit_excludes_own_vector_with_the_mlp():
    text, visual, _ = _world(n_pictured=20, noise=0.5)
    folds = im.fold_ids(20, 4, 0)                                   # training rows are w0..w19 in order
    other = f"w{int(np.flatnonzero(folds != folds[3])[0])}"
    kw = dict(words=["w3", other], k=4, seed=0, method="mlp", inner_k=2, grid=[1e-2])
    before = im.imagine(text, visual, **kw)
    y = visual.vectors.copy()
    y[3] += 50.0
    after = im.imagine(text, KeyedVectors(visual.index_to_key, y), **kw)
    np.testing.assert_allclose(after["w3"], before["w3"], atol=1e-4)
    assert np.abs(after[other] - before[other]).max() > 1e-3


def test_mlp_fits_a_linear_map_roughly():
    text, visual, x = _world(n_pictured=120, noise=0.01)
    f = im.fit_map(text.vectors[:120], visual.vectors, method="mlp", inner_k=2, grid=[1e-4])
    pred = f.predict(x[120:125])
    truth = x[120:125] @ W + B
    assert np.abs(pred - truth).mean() < 0.5 * np.abs(truth - truth.mean(0)).mean()   # far better than the mean


def test_shapes_and_own_modes():
    text, visual, x = _world(n_pictured=30, n_plain=4)
    words = ["w0", "w1", "w31", "W32", "nope"]
    kv, info = im.imagine_with_info(text, visual, words=words, k=3)
    assert kv.index_to_key == ["w0", "w1", "w31", "W32"] and kv.vectors.shape == (4, 6)
    assert kv.vectors.dtype == np.float32
    assert info["training_words"] == 30 and len(info["fold_strengths"]) == 3
    assert info["imagined"] == ["w0", "w1", "w31", "W32"] and 0.9 < info["heldout_cosine"] <= 1.0
    real, info_real = im.imagine_with_info(text, visual, words=words, k=3, own="real")
    assert info_real["imagined"] == ["w31", "W32"]                  # only the imageless words
    np.testing.assert_array_equal(real["w0"], visual["w0"])        # a pictured word keeps its vector
    np.testing.assert_array_equal(real["w31"], kv["w31"])          # an imageless word: the full map
    assert not np.array_equal(kv["w0"], visual["w0"])              # cross-fitted: predicted
    vis = im.visual_with_imagined(text, visual, words=words, k=3)
    np.testing.assert_array_equal(vis.vectors, real.vectors)
    everything = im.imagine(text, visual, k=3)                      # default: every text word
    assert everything.index_to_key == text.index_to_key and everything.vectors.shape == (34, 6)


def test_folds_are_seeded_and_balanced():
    f = im.fold_ids(23, 5, 0)
    assert sorted(np.bincount(f).tolist()) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(f, im.fold_ids(23, 5, 0))
    assert not np.array_equal(f, im.fold_ids(23, 5, 1))


def test_bad_input_is_one_line():
    text, visual, _ = _world(n_pictured=9, n_plain=1)
    other = KeyedVectors(["x", "y"], np.ones((2, 6)))
    cases = [
        (dict(visual_kv=other), r"no word has both a text vector \(10 words\) and a visual vector \(2 words\)"),
        (dict(k=5), "9 words have both a text and a visual vector; 5 folds need at least 10"),
        (dict(k=1), "k and inner_k must be at least 2"),
        (dict(method="svm"), "method must be one of ridge, mlp"),
        (dict(own="mine"), "own must be one of crossfit, real"),
        (dict(visual_kv=KeyedVectors(visual.index_to_key, np.zeros((9, 0)))), "visual vectors 0; both need"),
    ]
    for kw, msg in cases:
        args = dict(text_kv=text, visual_kv=visual, k=3) | kw
        with pytest.raises(UserError, match=msg) as e:
            im.imagine(**args)
        assert "\n" not in str(e.value)
    y = visual.vectors.copy()
    y[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        im.imagine(text, KeyedVectors(visual.index_to_key, y), k=3)
