"""The grounding section: the mean visual part, Eq. 1 cosines, choices on MEN dev, test cells and quartiles."""
from __future__ import annotations

import numpy as np
import pytest

from mmlightning.datasets import load_benchmark
from mmlightning.evaluation.fusion import fuse_keyed
from mmlightning.evaluation.grounding import mean_visual, run_grounding, text_cosines
from mmlightning.evaluation.multisource import bench_cosines
from mmlightning.evaluation.protocol import dev_test_split
from mmlightning.evaluation.relatedness import gold_scores, spearman
from mmlightning.vectors import KeyedVectors


def test_mean_visual_averages_unit_vectors_over_sources():
    a = KeyedVectors(["cat", "dog"], np.array([[3.0, 0.0], [0.0, 2.0]]))
    b = KeyedVectors(["cat"], np.array([[0.0, 5.0]]))
    m = mean_visual({"a": a, "b": b})
    np.testing.assert_allclose(m["cat"], [0.5, 0.5])
    np.testing.assert_allclose(m["dog"], [0.0, 1.0])


def test_eq1_cosines_equal_the_cosines_of_fused_vectors():
    rng = np.random.default_rng(0)
    bench = load_benchmark("rg65")
    words = sorted(bench.words())
    text = KeyedVectors(words, rng.normal(size=(len(words), 5)))
    visual = KeyedVectors(words[::2], rng.normal(size=(len(words[::2]), 3)))
    cos = bench_cosines(bench, text, visual, [0.3])[0][0]
    fused = fuse_keyed(text, visual, words, alpha=0.3)
    want = [fused[a] @ fused[b] / np.linalg.norm(fused[a]) / np.linalg.norm(fused[b]) for a, b, _ in bench.pairs]
    np.testing.assert_allclose(cos, want, atol=1e-6)
    raw = text_cosines(bench, text)
    a, b, _ = bench.pairs[0]
    assert raw[0] == pytest.approx(text[a] @ text[b] / np.linalg.norm(text[a]) / np.linalg.norm(text[b]), abs=1e-6)


@pytest.fixture(scope="module")
def section():
    rng = np.random.default_rng(1)
    words = sorted(set().union(*(load_benchmark(b).words() for b in ("men", "simlex999", "ws353"))))
    text = KeyedVectors(words, rng.normal(size=(len(words), 6)))
    pictured = words[::3]
    visual = KeyedVectors(pictured, rng.normal(size=(len(pictured), 4)))
    conc = {w: (1.0 + 4.0 * ((i * 7) % 10) / 9) for i, w in enumerate(words)}   # ratings 1..5, all rated
    return text, visual, run_grounding(text, {"src": visual}, mm_text={"mmskipgram-T": text}, n_boot=50, conc=conc)


def test_choices_are_the_dev_maximum_and_best_is_the_top_dev_system(section):
    text, visual, out = section
    men = load_benchmark("men")
    dev, _ = dev_test_split(len(men))
    gold = gold_scores(men)
    eq1 = out["systems"]["eq1"]
    cos = bench_cosines(men, text, mean_visual({"src": visual}), [eq1["alpha"]])[0][0]
    use = dev & np.isfinite(cos)
    assert eq1["dev_rho"] == pytest.approx(spearman(gold[use], cos[use]), abs=1e-12)
    grid, _ = bench_cosines(men, text, mean_visual({"src": visual}), [i / 20 for i in range(21)])
    assert eq1["dev_rho"] >= max(spearman(gold[dev], c[dev]) for c in grid) - 1e-12
    assert out["best"] == max(out["systems"], key=lambda n: out["systems"][n]["dev_rho"])
    assert out["systems"]["mmskipgram-T"]["alpha"] == 1.0 and out["systems"]["concreteness-gate"]["threshold"] in out["thresholds"]


def test_test_cells_compare_with_text_on_the_same_pairs(section):
    _, _, out = section
    assert set(out["test"]) == {"men_test", "simlex999", "ws353"}
    men = out["test"]["men_test"]
    assert men["linguistic"]["pairs_total"] == 1000
    mm = men["mmskipgram-T"]     # the text vectors themselves as "MMSkip-gram": no difference at all
    assert mm["rho"] == pytest.approx(men["linguistic"]["rho"]) and mm["vs_linguistic"]["diff"] == pytest.approx(0.0)
    for name, cell in men.items():
        if name != "linguistic":
            assert cell["vs_linguistic"]["pairs"] == men["linguistic"]["pairs_used"]
    q = out["by_concreteness"]["simlex999"]["eq1"]
    assert sum(q[k]["pairs"] for k in ("Q1", "Q2", "Q3", "Q4", "unrated")) == q["all"]["pairs"] == 999


def test_the_section_renders_its_tables_and_figure(section, tmp_path):
    from mmlightning.evaluation.report import plot_grounding
    from mmlightning.evaluation.report.grounding import grounding_markdown
    from mmlightning.evaluation.report.readme import grounding_summary, render_grounding

    _, _, g = section
    result = {"grounding": g}
    md = grounding_markdown(result)
    assert md.count("| Eq. 1 (CNN-Mean, alpha on dev)") == 1 + 1 + 1 + 3   # chosen, test, minus-Eq. 1 head, quartiles
    assert "| Eq. 1 (CNN-Mean, alpha on dev) (rho) |" in md                # the head of the minus-Eq. 1 table
    assert g["test"]["men_test"]["imagined"]["vs_eq1"]["pairs"] == g["test"]["men_test"]["eq1"]["pairs_used"]
    assert "| mmskipgram-T text alone |" in md and "| mmskipgram-T text in Eq. 1 (centred) |" in md
    assert render_grounding(result).startswith("*Chosen on MEN dev*")
    cell = g["test"]["simlex999"][g["best"]]["vs_linguistic"]
    assert f"simlex999 {cell['diff']:+.3f} [" in grounding_summary(result)
    assert plot_grounding(result, tmp_path / "g.png") and (tmp_path / "g.png").stat().st_size > 0
    assert grounding_markdown({"grounding": {"skipped": "too few words"}}).endswith("Skipped: too few words")
    assert render_grounding({}) == grounding_summary({}) == "" and not plot_grounding({}, tmp_path / "none.png")
