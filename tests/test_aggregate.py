"""Per-word aggregates: update/merge exactness, dispersion, file round trip, word2vec export."""
import numpy as np
import pytest
import torch

from mmlightning.features.aggregates import Aggregate, dispersion, export_word2vec, load_aggregates, save_aggregates
from mmlightning.errors import UserError


def batch(seed, n=6, d=5):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, generator=g)
    words = [["a"], ["b", "a"], ["c"], ["a", "a"], [], ["b"]][:n]
    return feats, words


def test_update_statistics_are_exact():
    f, w = batch(0)
    agg = Aggregate(5)
    agg.update(f, w)
    assert agg.words == ["a", "b", "c"]
    assert agg.count.tolist() == [3, 2, 1]  # a repeated word counts an image once
    rows_a = f[[0, 1, 3]].double()
    assert torch.allclose(agg.sum[0], rows_a.sum(0))
    assert torch.equal(agg.max[0], rows_a.max(0).values.float())
    assert torch.allclose(agg.mean()[1], f[[1, 5]].double().mean(0))
    norm = rows_a / rows_a.norm(dim=1, keepdim=True)
    assert torch.allclose(agg.sum_normalized[0], norm.sum(0))


def test_merge_equals_one_pass_and_growth():
    f1, w1 = batch(1)
    f2, w2 = batch(2)
    one = Aggregate(5)
    one.update(torch.cat([f1, f2]), w1 + w2)
    a, b = Aggregate(5), Aggregate(5)
    a.update(f1, w1)
    b.update(f2, w2)
    m = Aggregate(5).merge(a).merge(b)
    assert m.words == one.words and torch.equal(m.count, one.count)
    assert torch.allclose(m.sum, one.sum) and torch.equal(m.max, one.max)
    big = Aggregate(2)  # many words: capacity grows
    big.update(torch.ones(100, 2), [[f"w{i}"] for i in range(100)])
    assert len(big) == 100 and big.count.sum() == 100


def test_dispersion_matches_pairwise_cosine_distance():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(7, 4, generator=g, dtype=torch.float64)
    agg = Aggregate(4)
    agg.update(f, [["x"]] * 7 + [])
    agg.update(f[:1], [["solo"]])
    fn = f / f.norm(dim=1, keepdim=True)
    cos = fn @ fn.T
    iu = torch.triu_indices(7, 7, 1)
    brute = (1 - cos[iu[0], iu[1]]).mean()
    d = dispersion(agg)
    assert abs(float(d[agg.index["x"]]) - float(brute)) < 1e-6  # unit vectors are rounded to float32 before summing (order-independent sums)
    assert torch.isnan(d[agg.index["solo"]])


def test_save_load_and_word2vec_export(tmp_path):
    f, w = batch(4)
    agg = Aggregate(5)
    agg.update(f, [ws + ["ice cream"] for ws in w])
    save_aggregates(tmp_path / "aggregates.pt", agg, {"backbone": "x"})
    raw = torch.load(tmp_path / "aggregates.pt", weights_only=True)
    assert raw["words"] == sorted(raw["words"]) and raw["count"].dtype == torch.int64
    assert raw["sum"].dtype == torch.float64 and raw["max"].dtype == torch.float32
    assert raw["meta"] == {"backbone": "x", "feature_dim": 5}
    back, meta = load_aggregates(tmp_path / "aggregates.pt")
    assert meta["backbone"] == "x" and torch.equal(back.count, raw["count"])
    mean_path, max_path = export_word2vec(back, tmp_path)
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(str(mean_path))
    i = back.index["a"]
    assert np.allclose(kv["a"], back.mean()[i].numpy(), atol=1e-5)
    assert "ice_cream" in kv.key_to_index
    kvm = KeyedVectors.load_word2vec_format(str(max_path))
    assert np.allclose(kvm["a"], back.max[i].numpy(), atol=1e-5)
    with pytest.raises(UserError):
        load_aggregates(tmp_path / "missing.pt")


def test_equal_aggregates_give_equal_files(tmp_path):
    """Issue 11.13: the zip root used to be the random temporary name, so identical runs differed."""
    import hashlib

    f, w = batch(5)
    agg = Aggregate(5)
    agg.update(f, w)
    targets = [tmp_path / "run1" / "aggregates.pt", tmp_path / "run2" / "other-name.pt"]
    for t in targets:
        save_aggregates(t, agg, {"backbone": "x"})
    first, second = (hashlib.md5(t.read_bytes()).hexdigest() for t in targets)
    assert first == second
    assert load_aggregates(targets[1])[1]["backbone"] == "x"
