"""Concept categorisation on small synthetic vectors: hand-computed purity, the Ward clusters, OOV words, the
bootstrap CI over words, every system inside `evaluate_systems`, the reports, and `mm.evaluate` records
(with a hand-computed Spearman rho beside them)."""
import json

import numpy as np
import pytest

import mmlightning as mm
from mmlightning import cli
from mmlightning.errors import UserError
from mmlightning.datasets import Benchmark, CategorySet, is_categorisation, load_categories, load_set
from mmlightning.evaluation.categorisation import (
    cluster_words, in_majority, paired_purity_difference, purity, purity_ci, score_categories,
)
from mmlightning.evaluation.fusion import fuse_keyed
from mmlightning.evaluation.report import render_markdown, write_reports
from mmlightning.evaluation.report.tables import suite_markdown
from mmlightning.evaluation.systems import evaluate_systems
from mmlightning.vectors import KeyedVectors

# three categories along three axes; "plum" (a fruit) sits among the animals
ITEMS = (("cat", "animal"), ("dog", "animal"), ("cow", "animal"), ("plum", "fruit"), ("fig", "fruit"),
         ("pear", "fruit"), ("bus", "vehicle"), ("van", "vehicle"), ("car", "vehicle"))
AXES = {"animal": 0, "fruit": 1, "vehicle": 2}


def _toy_vectors(scale=1.0, drop=()):
    rng = np.random.default_rng(1)
    words, rows = [], []
    for w, c in ITEMS:
        if w in drop:
            continue
        v = np.zeros(3)
        v[AXES["animal" if w == "plum" else c]] = 1.0
        words.append(w)
        rows.append((v + rng.normal(0, 0.05, 3)) * scale)
    return KeyedVectors(words, np.array(rows))


TOY = CategorySet("toy", ITEMS)


def test_purity_by_hand():
    # cluster 0: a, a, b -> 2; cluster 1: b, b -> 2; cluster 2: c -> 1; purity 5/6
    assert purity([0, 0, 0, 1, 1, 2], ["a", "a", "b", "b", "b", "c"]) == pytest.approx(5 / 6)
    assert purity([5, 5, 9, 9], ["x", "y", "x", "y"]) == 0.5       # labels and categories of any kind
    assert purity([0, 1, 2], ["a", "a", "a"]) == 1.0
    assert in_majority([0, 0, 0, 1], ["a", "a", "b", "b"]).tolist() == [True, True, False, True]
    with pytest.raises(ValueError):
        purity([], [])


def test_ward_clusters_of_the_toy_set_and_their_purity():
    s = score_categories(_toy_vectors(), TOY, n_boot=0)
    # animals + plum | fig, pear | vehicles: 3 + 2 + 3 of 9 words in their cluster's majority category
    assert s.purity == pytest.approx(8 / 9) and s.categories == 3 and (s.words_used, s.words_total) == (9, 9)
    labels = dict(zip([w for w, _ in ITEMS], s.labels))
    assert labels["plum"] == labels["cat"] == labels["dog"] == labels["cow"] != labels["fig"] == labels["pear"]
    assert labels["bus"] == labels["van"] == labels["car"] not in (labels["cat"], labels["fig"])
    # clustering is on L2-normalised rows, deterministic: scaling rows changes nothing
    kv = _toy_vectors()
    scaled = KeyedVectors(kv.index_to_key, kv.vectors * np.arange(1, 10)[:, None])
    assert score_categories(scaled, TOY, n_boot=0).labels.tolist() == s.labels.tolist()


def test_oov_words_listed_and_k_counts_categories_in_vocabulary():
    s = score_categories(_toy_vectors(drop=("bus", "van", "car", "fig")), TOY, n_boot=0)
    assert s.oov == ("fig", "bus", "van", "car") and (s.words_used, s.words_total) == (5, 9)
    assert s.categories == 2                  # no vehicle left: two clusters
    assert s.purity == pytest.approx(4 / 5)   # {cat, dog, cow, plum} -> 3, {pear} -> 1
    assert s.cell() == "0.800 5/9"
    d = s.to_dict()
    assert d["oov_words"] == ["fig", "bus", "van", "car"] and d["ci95"] is None
    too_few = score_categories(_toy_vectors(drop=("cat", "dog", "cow", "plum", "fig", "pear", "bus")), TOY)
    assert too_few.purity is None and too_few.cell() == "n/a 2/9"


def test_cluster_words_edge_cases():
    x = np.eye(4)
    assert cluster_words(x, 1).tolist() == [0, 0, 0, 0]
    assert cluster_words(x, 4).tolist() == [0, 1, 2, 3]
    assert cluster_words(x[:0], 3).tolist() == []
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0, 0]], dtype=float)   # a zero row stays usable
    assert len(set(cluster_words(x, 2).tolist())) == 2


def test_purity_ci_is_a_seeded_bootstrap_over_words():
    rng = np.random.default_rng(3)
    labels, gold = rng.integers(0, 4, 60), rng.integers(0, 5, 60)
    ci = purity_ci(labels, gold, n_boot=500, seed=7)
    assert ci == purity_ci(labels, gold, n_boot=500, seed=7)
    assert ci[0] <= purity(labels, gold) <= ci[1]
    hit = in_majority(labels, gold).astype(float)       # the same draws, one resample at a time
    idx = np.random.default_rng(7).integers(0, 60, size=(500, 60))
    naive = np.quantile([hit[i].mean() for i in idx], [0.025, 0.975])
    assert ci == pytest.approx(tuple(naive))
    assert purity_ci(labels[:9], gold[:9]) is None and purity_ci(labels, gold, n_boot=0) is None


def test_paired_difference():
    kv = _toy_vectors()
    a = score_categories(kv, TOY, n_boot=0)
    assert paired_purity_difference(a, a, n_boot=200) == {"diff": 0.0, "ci95": None, "words": 9}  # < 10 words
    perfect = KeyedVectors(kv.index_to_key, np.array([np.eye(3)[AXES[c]] for _, c in ITEMS]))
    b = score_categories(perfect, TOY, n_boot=0)
    assert b.purity == 1.0
    d = paired_purity_difference(b, a, n_boot=0)
    assert d["diff"] == pytest.approx(1 / 9) and d["words"] == 9
    big = CategorySet("big", tuple((f"{w}{i}", c) for i in range(4) for w, c in ITEMS))   # 36 words
    kv4 = KeyedVectors([w for w, _ in big.items], np.tile(kv.vectors, (4, 1)))
    s4 = score_categories(kv4, big, n_boot=0)
    paired = paired_purity_difference(s4, s4, n_boot=300, seed=1)
    assert paired == {"diff": 0.0, "ci95": [0.0, 0.0], "words": 36}


def test_user_csv_set_blank_rows_and_ambiguous_words(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text(",category,word\n0,animal,cat\n1,animal,dog\n2,animal,\n3,pet,cat\n4,pet,fish\n5,pet,fish\n")
    assert is_categorisation(p) and not is_categorisation("men")
    cs = load_set(p)
    assert isinstance(cs, CategorySet) and cs.name == "mine"
    assert cs.items == (("dog", "animal"), ("fish", "pet")) and cs.ambiguous == ("cat",)
    bad = tmp_path / "bad.csv"
    bad.write_text("category,term\nanimal,cat\n")
    assert not is_categorisation(bad)
    with pytest.raises(UserError, match="lacks the column"):
        load_categories(bad)


def test_every_system_is_clustered_inside_evaluate_systems():
    ling = _toy_vectors()
    vis = KeyedVectors(["cat", "dog", "fig", "pear", "bus"], np.abs(np.random.default_rng(2).normal(size=(5, 4))))
    bench = Benchmark("pairs", (("cat", "dog", 3.0), ("cat", "bus", 1.0), ("fig", "pear", 2.5)))
    r = evaluate_systems(ling, {"pics/cnn-mean": vis}, [bench, TOY], n_boot=100)
    cells = r["categorisation"]["toy"]
    assert set(cells) == {"linguistic", "visual:pics/cnn-mean", "multimodal:pics/cnn-mean"}
    assert cells["linguistic"]["purity"] == pytest.approx(8 / 9)
    assert cells["visual:pics/cnn-mean"]["words_used"] == 5
    fused = fuse_keyed(ling, vis, [w for w, _ in ITEMS], 0.5)     # Eq. 1 over the set's words
    multi = cells["multimodal:pics/cnn-mean"]
    assert multi["purity"] == pytest.approx(score_categories(fused, TOY, n_boot=0).purity)
    assert multi["vs_linguistic"]["words"] == 9
    assert "clustering" in r["settings"] and list(r["table1"]) == ["pairs"]
    md = suite_markdown(r)
    assert "| toy | purity | 0.889 9/9 |" in md and "| pairs | rho |" in md and "Multi-modal pics/cnn-mean" in md
    assert "Concept categorisation" in render_markdown(r)


def test_reports_and_html_carry_the_suite_table(tmp_path):
    from mmlightning.evaluation.html import write_html_report

    r = evaluate_systems(_toy_vectors(), None, [TOY], n_boot=0)
    paths = write_reports(r, tmp_path)
    assert "figure4" not in paths                   # no relatedness set: no alpha sweep
    md = paths["markdown"].read_text()
    assert "Every set x every system" in md and "| toy | purity | 0.889 9/9 |" in md and "Table 1" not in md
    assert json.loads(paths["json"].read_text())["categorisation"]["toy"]["linguistic"]["categories"] == 3
    page = write_html_report(r, tmp_path)["index"].read_text()
    assert "Every set x every system" in page and "<td>0.889 9/9</td>" in page


def test_mm_evaluate_records_with_hand_computed_rho_and_purity(tmp_path):
    # cosines with "a": e 0.894, b 0.707, c 0, d -0.707 -> ranks 4 3 2 1; gold ranks 1 4 3 2;
    # sum d^2 = 9 + 1 + 1 + 1 = 12, rho = 1 - 6 * 12 / (4 * 15) = -0.2
    bench = tmp_path / "hand.txt"
    bench.write_text("a e 1\na b 4\na c 3\na d 2\n")
    cats = tmp_path / "hand.csv"
    cats.write_text("category,word\nx,a\nx,b\ny,c\ny,d\nz,e\nz,missing\n")
    vecs = {"a": [1, 0], "b": [1, 1], "c": [0, 1], "d": [-1, 1], "e": [2, 1]}
    sim, cat = mm.evaluate(vecs, [str(bench), str(cats)], n_boot=0)
    assert sim["task"] == "similarity" and sim["score"] == sim["rho"] == pytest.approx(-0.2)
    assert (sim["used"], sim["total"], sim["pairs_used"], sim["purity"]) == (4, 4, 4, None)
    assert cat["task"] == "categorisation" and cat["benchmark"] == "hand" and cat["rho"] is None
    assert (cat["used"], cat["total"], cat["categories"], cat["oov_words"]) == (5, 6, 3, ["missing"])
    assert cat["oov_ratio"] == pytest.approx(1 / 6)
    # by hand, Ward on unit rows: b, e merge first (distance |b - e| = 0.32); then a joins {b, e} at
    # sqrt(2 * 1 * 2 / 3) * |a - (b + e) / 2| = 1.155 * 0.611 = 0.705 < |c - d| = 0.765; k = 3 stops there:
    # {a, b, e} (x, x, z -> 2), {c} (1), {d} (1): purity 4 / 5
    assert cat["score"] == cat["purity"] == pytest.approx(4 / 5)
    assert list(sim) == list(cat)                  # one record shape for both tasks


def test_cli_benchmarks_all_is_a_plain_word(tmp_path, capsys):
    kv = _toy_vectors()
    kv.save_word2vec(tmp_path / "v.txt")
    code = cli.main(["evaluate", "--linguistic", str(tmp_path / "v.txt"), "--benchmarks", "all",
                     "--n_boot", "0", "--out", str(tmp_path / "rep")])
    assert code in (0, None)
    out = capsys.readouterr().out
    assert "Every set x every system" in out and "| simverb3500 | rho |" in out and "| battig | purity |" in out
    r = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert len(r["table1"]) == 13 and list(r["categorisation"]) == ["ap", "battig", "bless", "esslli2008_verbs"]
