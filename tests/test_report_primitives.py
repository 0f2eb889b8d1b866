"""mmlightning.evaluation.report.primitives: the one home of the report's numbers, cells, tables and labels
(evaluation.md, the README blocks, the HTML report and the scores' `cell()`)."""
import ast
import math
import re
from pathlib import Path

from mmlightning.evaluation.report.primitives import (diff, diff_cell, grounding_label, num, score_cell, short_num,
                                                      system_header, table, tuned_label)

EVALUATION = Path(__file__).resolve().parents[1] / "mmlightning" / "evaluation"
REPORT = EVALUATION / "report"
# Modules outside the report package that show scores: the HTML report, and the `cell()` of a score
FORMATTING = [EVALUATION / "html.py", EVALUATION / "relatedness.py", EVALUATION / "categorisation.py"]


def test_numbers_and_cells():
    assert (num(0.71249), num(0.052, sign=True), num(None), num(math.nan)) == ("0.712", "+0.052", "n/a", "n/a")
    assert (short_num(7.5), short_num(10.0)) == ("7.5", "10")
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
    """(line number, line) of a module's code: its docstrings (module, class, function) and comments left out."""
    text = path.read_text(encoding="utf-8")
    docs = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    return [(i, line) for i, line in enumerate(text.splitlines(), 1)
            if i not in docs and not line.lstrip().startswith("#")]


def own_formats(modules: list[Path]) -> list[str]:
    """Lines of `modules` that spell a score's number format (".3f", ".{digits}f", ":+", ":g") themselves, an
    "n/a" or a Markdown rule row."""
    own = re.compile(r"\.3f|\.\{\w+\}f|:\+|:g\}|\"n/a\"|'n/a'|---")
    return [f"{p.name}:{i}: {line.strip()}" for p in modules for i, line in _code_lines(p) if own.search(line)]


def test_the_other_report_modules_format_only_through_the_primitives():
    found = own_formats([p for p in sorted(REPORT.glob("*.py")) if p.name != "primitives.py"])
    assert not found, "format through mmlightning.evaluation.report.primitives:\n" + "\n".join(found)


def test_the_html_report_and_the_score_cells_format_only_through_the_primitives():
    found = own_formats(FORMATTING)
    assert not found, "format through mmlightning.evaluation.report.primitives:\n" + "\n".join(found)


def test_own_formats_finds_each_kind_of_copy(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text('"""Doc: "n/a", 0.3f, ---."""\n\n\ndef f(x, d):\n    """\'n/a\' in a docstring is prose."""\n'
                   '    # ---- a comment\n    a = f"{x:.3f}"\n    b = f"{x:.{d}f}"\n    c = f"{x:+.3f}"\n'
                   '    e = f"{x:g}"\n    g = "n/a"\n    h = "|---|"\n    return a, b, c, e, g, h\n')
    assert [line.split(":")[1] for line in own_formats([mod])] == ["7", "8", "9", "10", "11", "12"]


def test_the_primitives_import_nothing_of_the_package():
    """relatedness and categorisation (below the report) import the primitives: they must not import back."""
    tree = ast.parse((REPORT / "primitives.py").read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += ["." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.startswith(("mmlightning", "."))], names
