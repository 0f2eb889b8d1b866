"""Relatedness scoring: hand-made cases, bootstrap CIs, Relevant subsets, and agreement with scipy/gensim."""
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from mmlightning.datasets import Benchmark, load_benchmark
from mmlightning.errors import UserError
from mmlightning.evaluation.relatedness import (
    _bootstrap_indices, bootstrap_ci, pair_cosines, paired_difference, relevant_mask,
    resample_ranks, row_cosines, score, spearman, subset,
)
from mmlightning.vectors import KeyedVectors, load_vectors

GENSIM_DATA = Path(__import__("gensim").__file__).parent / "test" / "test_data"


def kv_of(d: dict) -> KeyedVectors:
    return KeyedVectors(list(d), np.array(list(d.values()), dtype=np.float32))


@pytest.fixture
def toy():
    kv = kv_of({"a": [1, 0], "b": [1, 1], "c": [0, 1], "d": [-1, 0], "zero": [0, 0]})
    bench = Benchmark("toy", (("a", "b", 9.0), ("a", "c", 5.0), ("a", "d", 1.0), ("b", "c", 7.0),
                              ("a", "nope", 3.0)))
    return kv, bench


def test_cosines_hand_computed(toy):
    kv, bench = toy
    cos, used = pair_cosines(kv, bench.pairs, "skip")
    np.testing.assert_allclose(cos[:4], [1 / np.sqrt(2), 0.0, -1.0, 1 / np.sqrt(2)], atol=1e-7)
    assert np.isnan(cos[4]) and used.tolist() == [True, True, True, True, False]
    cos0, used0 = pair_cosines(kv, bench.pairs, "zero")
    assert cos0[4] == 0.0 and used0.all()
    assert row_cosines(np.array([[0.0, 0.0]]), np.array([[1.0, 2.0]]))[0] == 0.0  # zero vector -> 0


def test_score_oov_policies(toy):
    kv, bench = toy
    s = score(kv, bench, oov="skip", n_boot=0)
    assert (s.pairs_used, s.pairs_total) == (4, 5)
    gold = [9, 5, 1, 7]
    cos = [1 / np.sqrt(2), 0, -1, 1 / np.sqrt(2)]
    assert s.rho == pytest.approx(spearmanr(gold, cos)[0], abs=1e-12)
    z = score(kv, bench, oov="zero", n_boot=0)
    assert (z.pairs_used, z.pairs_total) == (5, 5)
    assert z.rho == pytest.approx(spearmanr(gold + [3], cos + [0])[0], abs=1e-12)
    with pytest.raises(UserError, match="oov policy"):
        score(kv, bench, oov="ignore")


def test_lookup_as_given_then_lowercase_and_duplicates_kept():
    kv = kv_of({"Paris": [1, 0], "paris": [0, 1], "france": [1, 0.1], "cash": [1, 1], "money": [1, 0.9]})
    bench = Benchmark("b", (("Paris", "France", 1.0), ("PARIS", "france", 2.0), ("money", "cash", 3.0),
                            ("money", "cash", 3.0)))
    cos, used = pair_cosines(kv, bench.pairs)
    assert used.all()
    assert cos[0] > 0.99          # "Paris" as given
    assert cos[1] < 0.2           # "PARIS" -> "paris" (lower-cased)
    assert cos[2] == cos[3] and score(kv, bench, n_boot=0).pairs_total == 4


def test_undefined_rho_with_fewer_than_three_pairs(toy):
    kv, bench = toy
    two = Benchmark("two", bench.pairs[:2] + (("x", "y", 1.0),))
    s = score(kv, two, n_boot=100)
    assert s.rho is None and s.ci95 is None and s.pairs_used == 2
    assert s.cell() == "n/a 2/3"                    # score_cell: no CI, used/total
    assert spearman([1, 2, 3], [5, 5, 5]) is None   # constant side


def test_resample_ranks_equals_rankdata():
    rng = np.random.default_rng(1)
    for values in (rng.random(50), rng.integers(0, 6, 50).astype(float)):
        idx = _bootstrap_indices(50, 30, seed=3)
        np.testing.assert_array_equal(resample_ranks(values, idx), rankdata(values[idx], axis=1))


def test_bootstrap_ci_seeded_and_sensible():
    rng = np.random.default_rng(0)
    gold = rng.random(200)
    cos = gold + rng.normal(0, 0.3, 200)
    ci1 = bootstrap_ci(gold, cos, n_boot=500, seed=7)
    ci2 = bootstrap_ci(gold, cos, n_boot=500, seed=7)
    ci3 = bootstrap_ci(gold, cos, n_boot=500, seed=8)
    rho = spearman(gold, cos)
    assert ci1 == ci2 and ci1 != ci3
    assert ci1[0] < rho < ci1[1] and ci1[1] - ci1[0] < 0.3
    # a brute-force bootstrap with scipy on the same indices gives the same interval
    idx = _bootstrap_indices(200, 500, 7)
    rhos = [spearmanr(gold[i], cos[i])[0] for i in idx]
    np.testing.assert_allclose(ci1, np.quantile(rhos, [0.025, 0.975]), atol=1e-10)


def test_paired_difference():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    base = rng.normal(size=(60, 8))
    a = KeyedVectors(words, base)
    b = KeyedVectors(words, base + rng.normal(0, 0.8, size=base.shape))
    pairs = tuple((words[i], words[j], float(np.dot(base[i], base[j])))
                  for i, j in rng.integers(0, 60, size=(150, 2)) if i != j)
    bench = Benchmark("syn", pairs)
    sa, sb = score(a, bench, n_boot=0), score(b, bench, n_boot=0)
    same = paired_difference(sa, sa, n_boot=200)
    assert same.diff == 0 and same.ci95 == (0.0, 0.0)
    d = paired_difference(sa, sb, n_boot=300, seed=1)
    assert d.diff == pytest.approx(sa.rho - sb.rho) and d.pairs == len(pairs)
    assert d.ci95[0] > 0                    # a is the noise-free system: clearly better
    assert paired_difference(sa, sb, n_boot=300, seed=1) == d
    with pytest.raises(ValueError):
        paired_difference(sa, score(a, Benchmark("o", pairs[:10]), n_boot=0))


def test_relevant_subsets(toy):
    kv, bench = toy
    mask = relevant_mask(bench, {"a", "b", "c"})
    assert mask.tolist() == [True, True, False, True, False]
    assert relevant_mask(bench, {"a", "b", "c"}, {"a", "b"}).tolist() == [True, False, False, False, False]
    assert relevant_mask(Benchmark("x", (("Cat", "dog", 1.0),)), {"cat", "dog"}).tolist() == [True]
    sub = Benchmark(bench.name, (bench.pairs[0], bench.pairs[1], bench.pairs[3]))  # the covered pairs
    s = subset(score(kv, bench, n_boot=0), mask, n_boot=0)
    assert (s.pairs_used, s.pairs_total) == (3, 3)
    assert s.rho == pytest.approx(score(kv, sub, n_boot=0).rho)
    assert score(kv, bench, mask=mask, n_boot=0).rho == pytest.approx(s.rho)


REAL = ["lee_fasttext.vec", "euclidean_vectors.bin"]  # fastText on the Lee corpus; word2vec binary


@pytest.mark.parametrize("fname", REAL)
@pytest.mark.parametrize("bench_name", ["ws353", "men", "simlex999"])
def test_real_pretrained_vectors_agree_with_scipy(fname, bench_name):
    """Independent computation: gensim loads the file, numpy cosines, scipy.stats.spearmanr."""
    from gensim.models import KeyedVectors as GKV

    path = GENSIM_DATA / fname
    gkv = GKV.load_word2vec_format(str(path), binary=fname.endswith(".bin"))
    bench = load_benchmark(bench_name)
    golds, cosines = [], []
    for w1, w2, g in bench.pairs:
        k1 = w1 if w1 in gkv.key_to_index else w1.lower()
        k2 = w2 if w2 in gkv.key_to_index else w2.lower()
        if k1 in gkv.key_to_index and k2 in gkv.key_to_index:
            v1, v2 = gkv[k1].astype(np.float64), gkv[k2].astype(np.float64)
            cosines.append(v1 @ v2 / np.linalg.norm(v1) / np.linalg.norm(v2))
            golds.append(g)
    expected = spearmanr(golds, cosines)[0]
    ours = score(load_vectors(path), bench, oov="skip", n_boot=0)
    assert ours.pairs_used == len(golds) >= 20
    assert ours.rho == pytest.approx(expected, abs=1e-4)
    # restricted loading gives the same number
    restricted = load_vectors(path, restrict_to=bench.words())
    assert score(restricted, bench, n_boot=0).rho == pytest.approx(ours.rho, abs=1e-12)


@pytest.mark.parametrize("fname", REAL)
def test_real_vectors_agree_with_gensim_evaluate_word_pairs(fname, tmp_path):
    """gensim's evaluate_word_pairs (OOV pairs skipped) = our oov='skip'; MEN is lower-case, so exact lookup."""
    from gensim.models import KeyedVectors as GKV

    path = GENSIM_DATA / fname
    gkv = GKV.load_word2vec_format(str(path), binary=fname.endswith(".bin"))
    bench = load_benchmark("men")
    assert all(w == w.lower() for w in bench.words())
    tsv = tmp_path / "men.tsv"
    tsv.write_text("".join(f"{a}\t{b}\t{g}\n" for a, b, g in bench.pairs))
    _, (g_rho, _), oov_ratio = gkv.evaluate_word_pairs(str(tsv), case_insensitive=False, dummy4unknown=False)
    ours = score(load_vectors(path), bench, oov="skip", n_boot=0)
    assert ours.rho == pytest.approx(g_rho, abs=1e-4)
    assert 100 * (1 - ours.pairs_used / ours.pairs_total) == pytest.approx(oov_ratio, abs=1e-6)
