"""mmlightning.evaluation.report.primitives: the one home of the report's numbers, cells, tables and labels."""
import ast
import math
import re
from pathlib import Path

from mmlightning.evaluation.report.primitives import (diff, diff_cell, grounding_label, num, score_cell,
                                                      system_header, table, tuned_label)

REPORT = Path(__file__).resolve().parents[1] / "mmlightning" / "evaluation" / "report"


def test_numbers_and_cells():
    assert (num(0.71249), num(0.052, sign=True), num(None), num(math.nan)) == ("0.712", "+0.052", "n/a", "n/a")
    c = {"rho": 0.5, "ci95": [0.4, 0.6], "pairs_used": 9, "pairs_total": 10, "purity": 0.75, "words_used": 3,
         "words_total": 4}
    assert (score_cell(c), score_cell({**c, "ci95": None}, "purity")) == ("0.500 [0.400, 0.600] 9/10", "0.750 3/4")
    assert diff({"diff": 0.05, "ci95": [0.01, 0.09]}) == "+0.050 [+0.010, +0.090]*"
    assert diff({"diff": 0.05, "ci95": [-0.01, 0.09]}) == "+0.050 [-0.010, +0.090]"
    assert diff({"diff": None}) == diff(None) == "n/a"
    assert diff_cell({"diff": -0.1, "ci95": None, "words": 7}) == "-0.100 n=7"          # categorisation: words
    assert diff_cell({"diff": None, "pairs": 40, "pairs_used": 0}, n=0) == "n/a n=0"    # quartiles: pairs used


def test_tables_and_labels():
    assert table(["a", "b"], [["1", "2"]], align="lr") == "| a | b |\n|---|---:|\n| 1 | 2 |"
    assert table(["a", "b"], [], align="lr", spaced=True) == "| a | b |\n| --- | ---: |"
    assert system_header("linguistic") == "Linguistic"
    assert system_header("multimodal:tuxpaint/cnn-mean") == "Multi-modal tuxpaint/cnn-mean"
    assert tuned_label("eq1:openclipart") == "openclipart: Eq. 1, alpha 0.5 (paper, not tuned)"
    assert grounding_label("mmskipgram-B+eq1") == "mmskipgram-B text in Eq. 1 (centred)"


def _code_lines(path: Path):
    """(line number, line) of a module below its docstring; comments left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    start = tree.body[0].end_lineno if ast.get_docstring(tree) else 0
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(i, line) for i, line in enumerate(lines[start:], start + 1) if not line.lstrip().startswith("#")]


def own_formats(modules: list[Path]) -> list[str]:
    """Lines of `modules` that spell a number format, an "n/a" or a Markdown rule row themselves."""
    own = re.compile(r"\.3f|:\+|\"n/a\"|'n/a'|---")
    return [f"{p.name}:{i}: {line.strip()}" for p in modules for i, line in _code_lines(p) if own.search(line)]


def test_the_other_report_modules_format_only_through_the_primitives():
    found = own_formats([p for p in sorted(REPORT.glob("*.py")) if p.name != "primitives.py"])
    assert not found, "format through mmlightning.evaluation.report.primitives:\n" + "\n".join(found)
