"""`report`: the README's result tables rendered from evaluation.json, and README.md kept equal to them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlightning.cli import main
from mmlightning.evaluation.report.primitives import diff_cell
from mmlightning.evaluation.report.readme import (BEGIN, CHANGE_BEGIN, END, HEADLINE_BEGIN, TUNED_BEGIN, TUNED_END,
                                                  render_blocks, render_change, render_headline, render_results,
                                                  render_suite, suite_summary)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "figures" / "evaluation_embedded_default.json"
PREVIOUS = ROOT / "docs" / "figures" / "evaluation_embedded_default_hostpairs.json"   # the default before native pairs
SUMMARY = ROOT / "docs" / "figures" / "run_summary_embedded_default.json"   # stage times of a cold clean-clone run


def cell(rho, used, total, diff=None):
    c = {"rho": rho, "ci95": [rho - 0.1, rho + 0.1], "pairs_used": used, "pairs_total": total}
    if diff is not None:
        c["vs_linguistic"] = {"diff": diff, "ci95": [diff - 0.02, diff + 0.02], "pairs": used}
    return c


def synthetic() -> dict:
    """One source (tuxpaint, cnn-mean) on ws353 and men, laid out as evaluate_systems writes it."""
    t1 = {}
    for bench, total, rel in (("ws353", 353, 57), ("men", 3000, 564)):
        t1[bench] = {sub: {"linguistic": cell(0.5444, n - 5, n), "visual:tuxpaint/cnn-mean": cell(0.40051, n, n),
                           "multimodal:tuxpaint/cnn-mean": cell(0.6, n - 5, n, diff=0.052 if sub != "full" else 0.004)}
                     for sub, n in (("full", total), ("relevant:tuxpaint", rel))}
    return {"sources": {"tuxpaint": ["cnn-mean"]}, "table1": t1}


def test_renders_the_readme_layout():
    block = render_results(synthetic())
    assert block.splitlines()[:6] == [
        "**Tux Paint (ImageNet role)**: Spearman rho (pairs scored in the header)", "",
        "| system | ws353 full (353) | ws353 relevant:tux (57) | men full (3000) | men relevant:tux (564) |",
        "|---|---:|---:|---:|---:|",
        "| Text | 0.544 | 0.544 | 0.544 | 0.544 |",
        "| Visual cnn-mean | 0.401 | 0.401 | 0.401 | 0.401 |"]
    assert "| tuxpaint | cnn-mean | +0.004 [-0.016, +0.024] n=2995 | +0.052 [+0.032, +0.072]* n=559 |  | " \
           "+0.052 [+0.032, +0.072]* n=52 |" in block
    assert diff_cell({"diff": None, "ci95": None, "pairs": 2}) == "n/a n=2"
    assert diff_cell({"diff": -0.03, "ci95": None, "pairs": 8}) == "-0.030 n=8"


def test_rewrites_and_checks_the_block_between_the_markers(tmp_path, capsys):
    ev = tmp_path / "evaluation.json"
    ev.write_text(json.dumps(synthetic()))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\nafter\n")
    assert main(["report", "--evaluation", str(ev), "--readme", str(readme), "--check", "true"]) == 2
    assert "differs" in capsys.readouterr().err
    assert main(["report", "--evaluation", str(ev), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + BEGIN + "\n**Tux Paint") and text.endswith(f"|\n\n{END}\n\nafter\n")
    assert main(["report", "--evaluation", str(ev), "--readme", str(readme), "--check", "true"]) == 0
    assert main(["report", "--evaluation", str(ev)]) == 0 and "**Tux Paint" in capsys.readouterr().out
    readme.write_text("no markers\n")
    assert main(["report", "--evaluation", str(ev), "--readme", str(readme)]) == 2
    assert main(["report", "--evaluation", str(tmp_path / "none.json")]) == 2


@pytest.mark.parametrize("name, markers", [("README.md", [HEADLINE_BEGIN]),
                                           ("docs/results.md", [BEGIN, TUNED_BEGIN, CHANGE_BEGIN])])
def test_shipped_blocks_equal_what_the_shipped_evaluation_renders(name, markers):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert all(m in text for m in markers)
    result = json.loads(SHIPPED.read_text(encoding="utf-8"))
    previous = json.loads(PREVIOUS.read_text(encoding="utf-8"))
    assert result.get("tuned"), "the shipped evaluation has the dev/test protocol's section"
    summary = json.loads(SUMMARY.read_text(encoding="utf-8"))
    grid = json.loads((ROOT / "docs" / "figures" / "mmskipgram_dev_grid.json").read_text(encoding="utf-8"))
    assert render_blocks(text, result, name, previous, summary, grid) == text, (
        f"{name}'s result blocks differ from docs/figures/evaluation_embedded_default.json: run python -m "
        "mmlightning report --evaluation docs/figures/evaluation_embedded_default.json --readme '[README.md, docs/results.md]' "
        "--previous docs/figures/evaluation_embedded_default_hostpairs.json "
        "--summary docs/figures/run_summary_embedded_default.json --grid docs/figures/mmskipgram_dev_grid.json")


def test_headline_names_dev_choice_and_its_test_difference():
    result = synthetic()
    assert "Chosen on MEN dev" not in render_headline(result)
    result["tuned"] = {"best": "cnn-mean:tuxpaint", "test": {"men_test": {"cnn-mean:tuxpaint": {
        "rho": 0.61, "vs_linguistic": {"diff": 0.03, "ci95": [0.01, 0.05], "pairs": 900}}}}}
    lines = render_headline(result).splitlines()
    assert lines[2] == "| Tux Paint (ImageNet role) | men full (2995) | 0.544 | 0.600 | +0.004 [-0.016, +0.024] |"
    assert lines[-1] == ("Chosen on MEN dev, measured on MEN test: **tuxpaint: CNN-Mean (tuned)**, "
                         "+0.030 [+0.010, +0.050]* over text on 900 pairs (rho 0.610).")


def test_report_rewrites_several_files_and_leaves_text_around_blocks(tmp_path):
    ev = tmp_path / "evaluation.json"
    ev.write_text(json.dumps(synthetic()))
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text(f"top\n{HEADLINE_BEGIN}\nold\n<!-- headline:end -->\nbottom\n")
    b.write_text(f"x\n{BEGIN}\nold\n{END}\ny\n")
    assert main(["report", "--evaluation", str(ev), "--readme", f"[{a}, {b}]"]) == 0
    assert a.read_text().startswith("top\n" + HEADLINE_BEGIN + "\n| source |") and a.read_text().endswith("bottom\n")
    assert "**Tux Paint" in b.read_text() and b.read_text().endswith(f"{END}\ny\n")
    assert main(["report", "--evaluation", str(ev), "--readme", f"[{a}, {b}]", "--check", "true"]) == 0
    assert main(["report", "--evaluation", str(ev), "--readme", str(tmp_path / "none.md")]) == 2


def test_change_block_compares_two_evaluations_cell_by_cell():
    before, after = synthetic(), synthetic()
    after["table1"]["men"]["full"]["linguistic"]["rho"] = 0.5544          # +0.010
    after["table1"]["ws353"]["relevant:tuxpaint"]["multimodal:tuxpaint/cnn-mean"]["rho"] = 0.57   # -0.030
    lines = render_change(before, after).splitlines()
    assert lines[2] == "| men | full | Text | 0.544 | 0.554 | +0.010 |"
    assert lines[3] == "| men | full | Multi-modal CNN-Mean (tuxpaint) | 0.600 | 0.600 | +0.000 |"
    assert lines[-1] == ("Largest absolute change of rho over every cell of Table 1: linguistic 0.010 (4 cells), "
                         "visual 0.000 (4 cells), multimodal 0.030 (4 cells).")


def test_suite_block_and_summary_count_the_cis_by_hand():
    result = synthetic()
    assert render_suite(result) == "" and suite_summary(result) == ""
    mm = "multimodal:tuxpaint/cnn-mean"
    result["suite"] = {
        "table1": {"a": {"full": {"linguistic": cell(0.5, 9, 10), mm: cell(0.6, 9, 10, diff=0.1)}},       # CI above 0
                   "b": {"full": {"linguistic": cell(0.5, 9, 10), mm: cell(0.49, 9, 10, diff=-0.01)}}},  # CI holds 0
        "categorisation": {"c": {"linguistic": {"purity": 0.4, "words_used": 8, "words_total": 9},
                                 mm: {"purity": 0.3, "words_used": 8, "words_total": 9,
                                      "vs_linguistic": {"diff": -0.1, "ci95": [-0.2, -0.05], "words": 8}}}}}
    lines = render_suite(result).splitlines()
    assert lines[2] == "| a | rho | 0.500 (9/10) | 0.600 (+0.100 [+0.080, +0.120]*) |"
    assert lines[4] == "| c | purity | 0.400 (8/9) | 0.300 (-0.100 [-0.200, -0.050]*) |"
    assert suite_summary(result).endswith("Tux Paint (ImageNet role), a paired CI above 0 on 1 sets and below 0 on 1.")


def test_stage_times_render_from_a_run_summary(tmp_path):
    from mmlightning.evaluation.report.readme import STAGES_BEGIN, STAGES_END, render_stage_times

    summary = {"stages": [{"stage": "skipgram", "status": "ran", "seconds": 30.04, "computed_seconds": 30.04},
                          {"stage": "evaluate", "status": "reused", "seconds": 0.0, "computed_seconds": 12.5}],
               "load_average": {"start": 0.25, "end": 1.5}}
    lines = render_stage_times(summary).splitlines()
    assert lines[2:5] == ["| skipgram | 30.0 |", "| evaluate | 12.5 |", "| **total of the stages** | **42.5** |"]
    assert lines[-1] == "Load average (1 min) 0.2 at the start, 1.5 at the end."
    ev, run, md = tmp_path / "e.json", tmp_path / "s.json", tmp_path / "r.md"
    ev.write_text(json.dumps(synthetic()))
    run.write_text(json.dumps(summary))
    md.write_text(f"a\n{STAGES_BEGIN}\nold\n{STAGES_END}\nb\n")
    assert main(["report", "--evaluation", str(ev), "--readme", str(md), "--summary", str(run)]) == 0
    assert "| **total of the stages** | **42.5** |" in md.read_text()
    at_once = render_stage_times({**summary, "jobs": 3, "stages_wall_seconds": 31.06}).splitlines()
    assert at_once[4:6] == ["| sum of the stage times | 42.5 |", "| **wall time of the stages (3 at once)** | **31.1** |"]


def test_mmskipgram_grid_block_marks_each_variants_best_dev_setting():
    from mmlightning.evaluation.report.readme import render_mmskipgram_grid

    def run(v, w, alone, eq1):
        name = f"{v}-w{w:g}"
        return name, {"settings": {"visual_variant": v, "visual_weight": w}, "score": max(alone, eq1), "alpha_eq1": 1.0,
                      "train_seconds": 40.0, "dev": {name: alone, f"{name}+eq1": eq1, "text-centred": 0.6, "eq1": 0.61}}

    record = {"criterion": "c", "chosen": {"A": "A-w1", "B": "B-w1"}, "chosen_rule": "r",
              "runs": dict([run("A", 0.3, 0.64, 0.66), run("A", 1.0, 0.67, 0.65), run("B", 1.0, 0.6, 0.7)])}
    text_only = run(None, 1.0, 0.69, 0.7)
    record["runs"]["text-e10"] = {**text_only[1], "settings": {"epochs": 10},
                                  "dev": {"text-e10": 0.69, "text-e10+eq1": 0.7, "text-centred": 0.6, "eq1": 0.61}}
    lines = render_mmskipgram_grid(record).splitlines()
    assert lines[2].startswith("| A **chosen on dev** | 1 |") and "| 0.670 | 0.650 |" in lines[2]   # 0.67 alone beats 0.66
    assert lines[3].startswith("| A | 0.3 |") and lines[4].startswith("| B **chosen on dev** | 1 |")
    assert lines[5].startswith("| text only (control) | - | - | - | - | 10 |")
    assert lines[-1].startswith("On the same dev pairs, the skip-gram stage's text vectors centred: 0.600; in Eq. 1 with "
                                "CNN-Mean: 0.610. Score: c. Chosen: r.")
