"""Dev/test protocol, several image sources per word, the dispersion gate (tiny synthetic vectors)."""
import json

import numpy as np
import pytest
import torch

from mmlightning.datasets import Benchmark, load_benchmark
from mmlightning.evaluation.dispersion import load_dispersion, quantile_threshold
from mmlightning.evaluation.fusion import fused_pair_cosines
from mmlightning.evaluation.multisource import Spec, coverage, prepare_benchmark, spec_cosines, visual_rows
from mmlightning.evaluation.protocol import dev_test_split, run_protocol, tune
from mmlightning.evaluation.report.tuned import tuned_markdown
from mmlightning.features.aggregates import Aggregate, save_aggregates
from mmlightning.vectors import KeyedVectors

WORDS = [f"w{i}" for i in range(40)]


def _bench(seed=0, n=200):
    rng = np.random.default_rng(seed)
    pairs = tuple((WORDS[a], WORDS[b], float(rng.random())) for a, b in rng.integers(0, len(WORDS), (n, 2)) if a != b)
    return Benchmark("toy", pairs)


def _kv(words, dim, seed):
    return KeyedVectors(words, np.random.default_rng(seed).normal(size=(len(words), dim)))


def test_split_is_seeded_disjoint_and_sized():
    dev, test = dev_test_split(3000)
    assert dev.sum() == 2000 and test.sum() == 1000 and not (dev & test).any()
    assert np.array_equal(dev, dev_test_split(3000)[0])
    assert not np.array_equal(dev, dev_test_split(3000, seed=1)[0])


@pytest.mark.parametrize("missing", ["zero", "text"])
def test_one_source_no_gate_is_eq1(missing):
    bench = _bench()
    ling, vis = _kv(WORDS, 6, 1), _kv(WORDS[:25], 5, 2)
    data = prepare_benchmark(bench, ling, {"a": vis})
    alphas = [0.0, 0.3, 0.5, 1.0]
    got = spec_cosines(data, Spec(("a",)), alphas, missing)[:, data.known]
    vocab = sorted(bench.words())
    text = torch.from_numpy(ling.vectors[[ling.lookup(w) for w in vocab]]).double()
    has = torch.tensor([vis.lookup(w) is not None for w in vocab])
    v = torch.zeros(len(vocab), 5, dtype=torch.float64)
    v[has] = torch.from_numpy(vis.vectors[[vis.lookup(w) for w in vocab if vis.lookup(w) is not None]]).double()
    want = fused_pair_cosines(text, v, has, data.i1, data.i2, alphas, missing_visual=missing).numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_average_and_concat_cover_the_union():
    bench = _bench()
    ling = _kv(WORDS, 6, 1)
    a, b = _kv(WORDS[:20], 4, 2), _kv(WORDS[15:30], 4, 3)
    data = prepare_benchmark(bench, ling, {"a": a, "b": b})
    n_a = coverage(data, Spec(("a",)))
    assert coverage(data, Spec(("a", "b"), "average")) == coverage(data, Spec(("a", "b"), "concat")) == \
        len({w for w in bench.words() if w in set(WORDS[:30])}) > n_a
    avg, has = visual_rows(data, Spec(("a", "b"), "average"))
    cat, _ = visual_rows(data, Spec(("a", "b"), "concat"))
    vocab = sorted(bench.words())
    only_b = vocab.index(next(w for w in vocab if w in WORDS[20:30]))
    both = vocab.index(next(w for w in vocab if w in WORDS[15:20]))
    assert torch.allclose(avg[only_b], data.unit["b"][only_b]) and cat[only_b, :4].abs().sum() == 0
    assert torch.allclose(avg[both], (data.unit["a"][both] + data.unit["b"][both]) / 2)
    assert cat.shape[1] == 8 and has[only_b] and has[both]


def test_gate_drops_dispersed_words_keeps_unknown_dispersion():
    bench = _bench()
    ling, vis = _kv(WORDS, 6, 1), _kv(WORDS[:20], 4, 2)
    disp = KeyedVectors(WORDS[:10], np.linspace(0.1, 1.0, 10)[:, None])   # w10..w19: no dispersion
    data = prepare_benchmark(bench, ling, {"a": vis}, {"a": disp})
    _, has = visual_rows(data, Spec(("a",), gate={"a": 0.45}))
    vocab = sorted(bench.words())
    kept = {w for w, h in zip(vocab, has.tolist()) if h}
    assert kept == {w for w in vocab if w in {"w0", "w1", "w2", "w3"} or w in WORDS[10:20]}


def test_dispersion_from_aggregates_is_mean_pairwise_cosine_distance(tmp_path):
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 4.0]])
    agg = Aggregate(2)
    agg.update(feats, [["ice cream"], ["ice cream"], ["ice cream"], ["solo"]])
    save_aggregates(tmp_path / "aggregates.pt", agg, meta={})
    disp = load_dispersion(tmp_path / "aggregates.pt")
    u = torch.nn.functional.normalize(feats[:3], dim=1)
    want = np.mean([1 - float(u[i] @ u[j]) for i in range(3) for j in range(3) if i < j])
    assert disp.index_to_key == ["ice_cream"]            # keyed like mean.txt; one image: no dispersion
    assert disp["ice_cream"][0] == pytest.approx(want, abs=1e-6)
    assert quantile_threshold(disp, ["ice_cream"], 0.5) == pytest.approx(want, abs=1e-6)


def test_choices_do_not_depend_on_test_gold():
    bench = _bench(n=400)
    ling, a, b = _kv(WORDS, 6, 1), _kv(WORDS[:25], 4, 2), _kv(WORDS[10:35], 4, 3)
    disp = {s: KeyedVectors(WORDS, np.random.default_rng(k).random((len(WORDS), 1))) for k, s in enumerate("ab")}
    dev, test = dev_test_split(len(bench), n_dev=250)
    rng = np.random.default_rng(9)
    shuffled = Benchmark("toy", tuple((x, y, float(rng.random()) if t else g)
                                      for (x, y, g), t in zip(bench.pairs, test)))
    first = tune(prepare_benchmark(bench, ling, {"a": a, "b": b}, disp), dev)
    second = tune(prepare_benchmark(shuffled, ling, {"a": a, "b": b}, disp), dev)
    assert {n: t.to_dict() for n, t in first.items()} == {n: t.to_dict() for n, t in second.items()}
    assert {"cnn-mean:a", "cnn-mean:a+dispersion", "all-sources:average", "all-sources:concat",
            "all-sources+dispersion"} <= set(first)


def test_run_protocol_on_men_words_reports_test_and_oov():
    men = load_benchmark("men")
    words = sorted(men.words())[:500]
    rng = np.random.default_rng(0)
    ling = KeyedVectors(words, rng.normal(size=(len(words), 8)))
    vis = {"a": KeyedVectors(words[:200], rng.normal(size=(200, 4))),
           "b": KeyedVectors(words[150:300], rng.normal(size=(150, 4)))}
    r = run_protocol(ling, vis, None, test_only=("ws353", "rg65"), n_boot=10)
    assert r["protocol"]["split"] == {"kind": "seeded permutation of MEN's pairs", "seed": 0, "dev_pairs": 2000,
                                      "test_pairs": 1000}
    assert list(r["test"]) == ["men_test", "ws353", "rg65"] and r["best"] in r["systems"]
    cell = r["test"]["men_test"]["all-sources:average"]
    assert cell["pairs_total"] == 1000 and "vs_linguistic" in cell and cell["vs_cnn_mean"]["baseline"].startswith("cnn-mean:")
    assert r["oov"]["men"]["words_oov"] == len(men.words()) - 500
    json.dumps(r)                                                        # JSON-ready
    md = tuned_markdown({"tuned": r})
    assert "## Tuned on dev, reported on test" in md and "**best on dev**" in md and "rg65" in md
