"""The README's and docs' result tables, rendered from an `evaluation.json` instead of copied by hand
(the `report` command).

    python -m mmlightning report --evaluation reports/evaluation.json                   # print the blocks
    python -m mmlightning report --evaluation docs/figures/evaluation_embedded_default.json \
        --readme '[README.md, docs/results.md]'                                          # rewrite them
    python -m mmlightning report --evaluation docs/figures/evaluation_embedded_default.json \
        --readme '[README.md, docs/results.md]' --check true                             # fail if stale

A Markdown file may hold any of these blocks, each between its markers `<!-- NAME:begin -->` ...
`<!-- NAME:end -->`: `headline` (the README's summary: text against multi-modal CNN-Mean per source on MEN
and WS353, and the system chosen on MEN dev measured on MEN test); `results` (one Table 1 per image source,
rho only, the header giving the pairs of each column, then the multi-modal minus text differences with
their paired-bootstrap CIs); `tuned` (the dev/test protocol's chosen systems and their differences on the
test pairs); `suite` (every set of the suite); `grounding` (the grounding section's tables); `change`
(Table 1 against an earlier evaluation.json, with --previous); `stages` (a run's stage times, with
--summary). The full report (CIs, pairs used in every cell) stays `reports/evaluation.md`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional, Union

from mmlightning.atomic import write_text
from mmlightning.errors import UserError
from mmlightning.evaluation.report.grounding import chosen_table, quartile_table, test_table
from mmlightning.evaluation.report.primitives import (KINDS, counts, diff, diff_cell, grounding_label, num,
                                                      short_num, source_columns, source_title, system_name, table,
                                                      tuned_label)
from mmlightning.evaluation.report.tuned import tuned_sections

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TUNED_BEGIN, TUNED_END = "<!-- tuned:begin -->", "<!-- tuned:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"
CHANGE_BEGIN, CHANGE_END = "<!-- change:begin -->", "<!-- change:end -->"
SUITE_BEGIN, SUITE_END = "<!-- suite:begin -->", "<!-- suite:end -->"
GROUNDING_BEGIN, GROUNDING_END = "<!-- grounding:begin -->", "<!-- grounding:end -->"
STAGES_BEGIN, STAGES_END = "<!-- stages:begin -->", "<!-- stages:end -->"
GRID_BEGIN, GRID_END = "<!-- mmgrid:begin -->", "<!-- mmgrid:end -->"
# the parts of the dev/test protocol's section that the README shows (titles of tuned.tuned_sections)
TUNED_PARTS = ("Chosen on MEN dev", "Test: minus linguistic [paired 95% CI]",
               "Test: minus plain CNN-Mean (tuned, same pairs) [paired 95% CI]")
# (benchmark, subset) columns of the difference table; "relevant:source" is each row's own source
DIFF_COLUMNS = (("men", "full"), ("men", "relevant:source"), ("men", "relevant:all"), ("ws353", "relevant:source"))


def source_table(result: dict, source: str, methods: list[str]) -> str:
    """One source's Table 1: rows Text / Visual m / Multi-modal m, columns benchmark x subset (pairs)."""
    cols = source_columns(result, source)
    t1 = result["table1"]
    short = source_title(source, short=True)
    head = [f"{b} {sub.replace(source, short)} ({t1[b][sub]['linguistic']['pairs_total']})" for b, sub in cols]
    rows = [("Text", "linguistic")]
    rows += [(f"{KINDS[kind]} {m}", system_name(kind, source, m)) for kind in ("visual", "multimodal") for m in methods]
    body = [[label] + [num(t1[b][sub][system]["rho"]) for b, sub in cols] for label, system in rows]
    return (f"**{source_title(source)}**: Spearman rho (pairs scored in the header)\n\n"
            + table(["system", *head], body, align="l" + "r" * len(cols)))


def diff_table(result: dict, sources: dict[str, list[str]]) -> str:
    """Multi-modal minus text per source and method, on DIFF_COLUMNS (or every column without men / ws353)."""
    t1 = result["table1"]
    cols = [(b, sub) for b, sub in DIFF_COLUMNS if b in t1]
    if not cols:
        cols = [(b, sub) for b in t1 for sub in ("full", "relevant:source", "relevant:all")]
    rows = []
    for source, methods in sources.items():
        for m in methods:
            cells = [t1[b].get(sub.replace("relevant:source", f"relevant:{source}"), {})
                     .get(system_name("multimodal", source, m)) for b, sub in cols]
            rows.append([source, m] + [diff_cell(cell["vs_linguistic"]) if cell else "" for cell in cells])
    return ("Multi-modal minus text, rho difference [paired-bootstrap 95% CI] on the pairs both score "
            "(* = CI excludes 0):\n\n" + table(["source", "system"] + [f"{b} {sub}" for b, sub in cols], rows))


def render_results(result: dict) -> str:
    """The README's results block (without the markers)."""
    sources = result.get("sources") or {}
    if not sources:
        raise UserError("evaluation.json holds no image source: the README tables need Table 1 per source")
    parts = [source_table(result, s, methods) for s, methods in sources.items()]
    parts.append(diff_table(result, sources))
    return "\n\n".join(parts) + "\n"


def render_headline(result: dict) -> str:
    """The README's summary: per source, text vs multi-modal CNN-Mean on MEN / WS353; dev's choice on MEN test."""
    t1 = result["table1"]
    rows = []
    for source, methods in (result.get("sources") or {}).items():
        if "cnn-mean" not in methods:
            continue
        for bench, sub in (("men", "full"), ("men", f"relevant:{source}"), ("ws353", f"relevant:{source}")):
            cells = t1.get(bench, {}).get(sub)
            if not cells:
                continue
            mm = cells[f"multimodal:{source}/cnn-mean"]
            rows.append([source_title(source), f"{bench} {sub} ({mm['vs_linguistic']['pairs']})",
                         num(cells["linguistic"]["rho"]), num(mm["rho"]), diff(mm["vs_linguistic"])])
    lines = [table(["source", "pairs", "Text", "Multi-modal CNN-Mean", "difference [paired 95% CI]"], rows,
                   align="llrrl")]
    tuned = result.get("tuned") or {}
    best = tuned.get("best")
    test = (tuned.get("test") or {}).get("men_test", {}).get(best or "", {})
    if best and test.get("vs_linguistic"):
        lines += ["", f"Chosen on MEN dev, measured on MEN test: **{tuned_label(best)}**, "
                      f"{diff(test['vs_linguistic'])} over text on {test['vs_linguistic']['pairs']} pairs "
                      f"(rho {num(test['rho'])})."]
    for summary in (suite_summary(result), grounding_summary(result)):
        if summary:
            lines += ["", summary]
    return "\n".join(lines) + "\n"


def _numbers(x, path=()):
    """(path, value) of every finite float in a nested dict / list (the leaves of Table 1)."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, path + (i,))
    elif isinstance(x, float) and math.isfinite(x):
        yield path, x


def render_change(previous: dict, result: dict) -> str:
    """Table 1 of `previous` against `result`: text and multi-modal CNN-Mean per source, and the largest changes."""
    t0, t1 = previous["table1"], result["table1"]
    systems = [("linguistic", "Text")] + [(f"multimodal:{s}/cnn-mean", f"Multi-modal CNN-Mean ({s})")
                                          for s, m in (result.get("sources") or {}).items() if "cnn-mean" in m]
    rows = []
    for bench in ("men", "ws353"):
        for sub in ("full", "relevant:all"):
            for system, label in systems:
                a, b = t0.get(bench, {}).get(sub, {}).get(system), t1.get(bench, {}).get(sub, {}).get(system)
                if a and b and a["rho"] is not None and b["rho"] is not None:
                    rows.append([bench, sub, label, num(a["rho"]), num(b["rho"]),
                                 num(round(b["rho"] - a["rho"], 3) + 0.0, sign=True)])
    lines = [table(["benchmark", "pairs", "system", "before", "after", "change"], rows, align="lllrrr")]
    old = dict(_numbers(t0))
    diffs = {kind: [] for kind in ("linguistic", "visual", "multimodal")}
    for path, x in _numbers(t1):
        if path in old and path[-1] == "rho":
            diffs[path[2].split(":")[0]].append(abs(x - old[path]))
    lines += ["", "Largest absolute change of rho over every cell of Table 1: " + ", ".join(
        f"{kind} {num(max(d))} ({len(d)} cells)" for kind, d in diffs.items() if d) + "."]
    best0, best1 = (previous.get("tuned") or {}).get("best"), (result.get("tuned") or {}).get("best")
    if best0 and best1:
        cell = lambda r, b: diff(r["tuned"]["test"]["men_test"][b]["vs_linguistic"])  # noqa: E731
        lines += ["", f"Chosen on MEN dev, minus text on MEN test: before, {tuned_label(best0)} {cell(previous, best0)}; "
                      f"after, {tuned_label(best1)} {cell(result, best1)}."]
    return "\n".join(lines) + "\n"


def _suite_cells(result: dict) -> list[tuple[str, str, dict]]:
    """(set, "rho" / "purity", {system: cell}) for every set of the suite (full pairs; all words)."""
    suite = result.get("suite") or {}
    rows = [(b, "rho", cells["full"]) for b, cells in suite.get("table1", {}).items()]
    return rows + [(name, "purity", cells) for name, cells in suite.get("categorisation", {}).items()]


def render_suite(result: dict) -> str:
    """Every set of the suite: text, and multi-modal CNN-Mean per source minus text [paired CI]; "" without a suite."""
    rows = _suite_cells(result)
    if not rows:
        return ""
    sources = [s for s, m in (result.get("sources") or {}).items() if "cnn-mean" in m]
    body = []
    for name, kind, cells in rows:
        out = [name, kind, f"{num(cells['linguistic'][kind])} ({counts(cells['linguistic'], kind)})"]
        for s in sources:
            mm = cells.get(f"multimodal:{s}/cnn-mean")
            d = (mm or {}).get("vs_linguistic") or {}
            out.append(f"{num(mm[kind])} ({diff(d)})" if mm and d else "")
        body.append(out)
    head = ["set", "score", "Text"] + [f"Multi-modal CNN-Mean {s} (minus text)" for s in sources]
    return table(head, body, align="ll" + "r" * (len(head) - 2)) + "\n"


def suite_summary(result: dict) -> str:
    """One sentence: on how many suite sets multi-modal CNN-Mean minus text has a CI above / below 0."""
    rows = _suite_cells(result)
    parts = []
    for s, methods in (result.get("sources") or {}).items():
        diffs = [cells[f"multimodal:{s}/cnn-mean"].get("vs_linguistic") or {} for _, _, cells in rows
                 if f"multimodal:{s}/cnn-mean" in cells]
        up = sum(1 for d in diffs if d.get("ci95") and d["ci95"][0] > 0)
        down = sum(1 for d in diffs if d.get("ci95") and d["ci95"][1] < 0)
        parts.append(f"{source_title(s)}, a paired CI above 0 on {up} sets and below 0 on {down}")
    if not rows or not parts:
        return ""
    return (f"Over the {len(rows)} sets of the evaluation suite (relatedness and concept categorisation), "
            f"multi-modal CNN-Mean minus text: {'; '.join(parts)}.")


def render_grounding(result: dict) -> str:
    """The grounding section's tables (chosen on dev, test minus text, by concreteness quartile); "" without."""
    g = result.get("grounding") or {}
    if not g or "skipped" in g:
        return ""
    return "\n\n".join(["*Chosen on MEN dev*", chosen_table(g), "*Test: minus text [paired 95% CI]*",
                         test_table(g), "*Test: minus Eq. 1 CNN-Mean [paired 95% CI]*", test_table(g, "vs_eq1"),
                         "*Minus text by concreteness quartile of the pair [paired 95% CI]*", quartile_table(g)]) + "\n"


def grounding_summary(result: dict) -> str:
    """One sentence: the grounding system dev chose and its test differences against text."""
    g = result.get("grounding") or {}
    if not g or "skipped" in g:
        return ""
    best = g["best"]
    cells = ", ".join(f"{s} {diff(g['test'][s][best]['vs_linguistic'])}" for s in g["test"])
    return f"Grounding the imageless words, the system chosen on MEN dev is **{grounding_label(best)}**: minus text {cells}."


def render_stage_times(summary: dict) -> str:
    """The stage times of a run (reports/run_summary.json): seconds when each stage was computed, their sum and,
    for a run with several stages at once (`jobs`), the wall time of the stages."""
    rows = [[s["stage"], f"{s.get('computed_seconds', s['seconds']):.1f}"] for s in summary["stages"]]
    total = sum(s.get("computed_seconds", s["seconds"]) for s in summary["stages"])
    jobs, wall = summary.get("jobs", 1), summary.get("stages_wall_seconds")
    if jobs > 1 and wall is not None:
        rows.append(["sum of the stage times", f"{total:.1f}"])
        rows.append([f"**wall time of the stages ({jobs} at once)**", f"**{wall:.1f}**"])
    else:
        rows.append(["**total of the stages**", f"**{total:.1f}**"])
    load = summary.get("load_average")
    note = f"Load average (1 min) {load['start']:.1f} at the start, {load['end']:.1f} at the end." if load else ""
    return table(["stage", "seconds"], rows, align="lr", spaced=True) + ("\n\n" + note if note else "") + "\n"


def render_tuned(result: dict) -> str:
    """The README's block of the dev/test protocol (chosen systems, test differences); "" without one."""
    sections = tuned_sections(result)
    return "\n\n".join(f"*{t}*\n\n{sections[t]}" for t in TUNED_PARTS if t in sections) + "\n" if sections else ""


GRID_SETTINGS = (("visual_weight", "weight"), ("visual_margin", "margin"), ("visual_negatives", "k"),
                 ("visual_map_l2", "lambda"), ("epochs", "epochs"), ("min_concreteness", "min concreteness"))


def render_mmskipgram_grid(record: dict) -> str:
    """The MMSkip-gram settings grid (scripts/tune_mmskipgram.py): MEN dev rho of each setting and of the
    text-only controls, the setting `chosen` per variant in bold (by the record's `chosen_rule`)."""
    runs = record.get("runs", {})
    chosen = set(record.get("chosen", {}).values())
    rows = []
    order = sorted(runs.items(), key=lambda kv: (kv[1]["settings"].get("visual_variant") or "~", -kv[1]["score"]))
    for name, r in order:
        st = r["settings"]
        first = st.get("visual_variant") or "text only (control)"
        cells = [first + (" **chosen on dev**" if name in chosen else ""),
                 *(short_num(st[k]) if k in st else "-" for k, _ in GRID_SETTINGS),
                 num(r["dev"][name]), num(r["dev"][f"{name}+eq1"]), short_num(r["alpha_eq1"]), short_num(r["train_seconds"])]
        rows.append(cells)
    header = ["variant", *(label for _, label in GRID_SETTINGS), "MEN dev: text alone", "in Eq. 1", "alpha", "train s"]
    out = table(header, rows, align="l" + "r" * (len(header) - 1))
    ref = next(iter(runs.values()), None)
    if ref is not None:
        out += (f"\n\nOn the same dev pairs, the skip-gram stage's text vectors centred: {num(ref['dev']['text-centred'])}; "
                f"in Eq. 1 with CNN-Mean: {num(ref['dev']['eq1'])}. Score: {record.get('criterion', '')}. "
                f"Chosen: {record.get('chosen_rule', 'the best score per variant')}.")
    return out + "\n"


def replace_block(text: str, block: str, where: str = "README.md", begin: str = BEGIN, end: str = END) -> str:
    """`text` with the part between the markers replaced by `block`; UserError when the markers are absent."""
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise UserError(f"{where}: no '{begin}' ... '{end}' block; put the two markers around the tables")
    return pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text, count=1)


def render_blocks(text: str, result: dict, where: str, previous: dict | None = None,
                  summary: dict | None = None, grid: dict | None = None) -> str:
    """`text` with each block it holds re-rendered (the change block only with `previous`, the stage times
    only with a run `summary`); UserError when it holds none."""
    renderers = [(HEADLINE_BEGIN, HEADLINE_END, render_headline), (BEGIN, END, render_results),
                 (TUNED_BEGIN, TUNED_END, render_tuned), (SUITE_BEGIN, SUITE_END, render_suite),
                 (GROUNDING_BEGIN, GROUNDING_END, render_grounding)]
    if previous is not None:
        renderers.append((CHANGE_BEGIN, CHANGE_END, lambda r: render_change(previous, r)))
    if summary is not None:
        renderers.append((STAGES_BEGIN, STAGES_END, lambda r: render_stage_times(summary)))
    if grid is not None:
        renderers.append((GRID_BEGIN, GRID_END, lambda r: render_mmskipgram_grid(grid)))
    found = [(b, e, f) for b, e, f in renderers if b in text]
    if not found:
        raise UserError(f"{where}: no '{BEGIN}' ... '{END}' block (nor a headline or tuned block); "
                        f"put the two markers around the tables")
    for begin, end, render in found:
        block = render(result)
        if block:
            text = replace_block(text, block, where, begin, end)
    return text


def _read_evaluation(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; run `reproduce` (or `evaluate`) first") from None
    except ValueError as e:
        raise UserError(f"{path}: not JSON ({e})") from None


def report(evaluation: str = "reports/evaluation.json", readme: Union[str, list[str], None] = None,
           check: bool = False, previous: Optional[str] = None, summary: Optional[str] = None,
           grid: Optional[str] = None) -> str:
    """Render the result tables from an evaluation.json (print them, or rewrite / check the files' blocks).

    Args:
        evaluation: evaluation.json written by `reproduce` or `evaluate`.
        readme: Markdown files (e.g. [README.md, docs/results.md]) whose headline / results / tuned blocks
            are rewritten.
        check: With --readme: do not write; fail (exit 2) when a block differs from what is rendered.
        previous: An earlier evaluation.json: files' `<!-- change:begin -->` blocks compare it with `evaluation`.
        summary: A run's run_summary.json: files' `<!-- stages:begin -->` blocks get its stage times.
        grid: scripts/tune_mmskipgram.py's record: files' `<!-- mmgrid:begin -->` blocks get its MEN dev table.
    """
    path = Path(evaluation)
    result = _read_evaluation(path)
    prior = None if previous is None else _read_evaluation(Path(previous))
    run = None if summary is None else _read_evaluation(Path(summary))
    settings_grid = None if grid is None else _read_evaluation(Path(grid))
    block = render_results(result)
    if readme is None:
        print(block + ("\n" + render_tuned(result) if result.get("tuned") else ""), end="")
        return block
    files = [readme] if isinstance(readme, str) else list(readme)
    for md in map(Path, files):
        try:
            old = md.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{md}: no such file") from None
        new = render_blocks(old, result, str(md), prior, run, settings_grid)
        if check and new != old:
            raise UserError(f"{md}: a result block differs from what {path} renders; run "
                            f"`python -m mmlightning report --evaluation {path} --readme '[{', '.join(files)}]'`")
        if not check and new != old:
            write_text(md, new)
    return block

