"""Every report of an `evaluate_systems` result: evaluation.md / .json, the figures, and the README / docs blocks.

    from mmlightning.evaluation.report import render_markdown, write_reports
    print(render_markdown(result))                 # every section of evaluation.md
    paths = write_reports(result, "reports")       # {"markdown": ..., "json": ..., "figure4": ..., "grounding": ...}
    python -m mmlightning report --evaluation reports/evaluation.json --readme '[README.md, docs/results.md]'

The modules, each built on `primitives` (numbers, score and difference cells, Markdown tables, labels):
    primitives.py  the pieces, each defined once
    tables.py      evaluation.md's sections (settings, suite, Table 1, differences, categorisation, Table 2)
                   and render_markdown
    tuned.py       the dev/test protocol's section (result["tuned"])
    grounding.py   the grounding section's tables (result["grounding"])
    files.py       write_reports: evaluation.md, evaluation.json, Figure 4 and the grounding figure (PNG)
    readme.py      the README / docs blocks rendered from evaluation.json, and the `report` command
"""
from __future__ import annotations

from mmlightning.evaluation.report.files import plot_alpha_sweep, plot_grounding, write_reports
from mmlightning.evaluation.report.tables import SECTIONS, render_markdown, table2_pairs

__all__ = ["SECTIONS", "plot_alpha_sweep", "plot_grounding", "render_markdown", "table2_pairs", "write_reports"]
