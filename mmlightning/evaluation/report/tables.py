"""evaluation.md: an `evaluate_systems` result as Markdown, section by section (of SECTIONS).

    from mmlightning.evaluation.report.tables import render_markdown, suite_markdown
    print(render_markdown(result))                     # every section that has data
    print(render_markdown(result, ("table1", "diff")))

Cells read "rho [lo, hi] used/total" (pairs) or "purity [lo, hi] used/total" (words); "n/a" marks an
undefined score (fewer than 3 usable pairs / words).
In the difference tables a "*" marks a 95% CI of (multi-modal - linguistic) that excludes 0.
The dev/test protocol's section is `tuned.py`'s, the grounding section `grounding.py`'s.
"""
from __future__ import annotations

from typing import Callable, Iterator

from mmlightning.evaluation.report.grounding import grounding_markdown
from mmlightning.evaluation.report.primitives import (KINDS, diff_cell, num, score_cell, short_num,
                                                      source_columns, system_header, system_name, table)
from mmlightning.evaluation.report.tuned import tuned_markdown

SECTIONS = ("settings", "suite", "table1", "diff", "categorisation", "table2", "tuned", "grounding")  # each only when it has data


def _sources(result: dict) -> dict[str | None, list[str]]:
    """{source: [method, ...]}, from the result or (older results) from the system names; {None: []}
    for text vectors alone (one table, one row)."""
    out: dict[str | None, list[str]] = dict(result.get("sources") or {})
    if not out:
        for system in result["systems"]:
            if system.startswith("visual:"):
                src, _, method = system[len("visual:"):].partition("/")
                out.setdefault(src, []).append(method or "vectors")
    return out or {None: []}


def _source_table(result: dict, source: str | None, rows: list[tuple[str, str, Callable[[dict], str]]]) -> str:
    """One source's table: a row per (label, system, format of that system's Table 1 cell)."""
    cols = source_columns(result, source)
    body = [[label] + [fmt(result["table1"][b][sub][system]) for b, sub in cols] for label, system, fmt in rows]
    out = table(["System"] + [f"{b} {sub}" for b, sub in cols], body)
    return out if source is None else f"**{source}**\n\n" + out


def _diff_of(cell: dict) -> str:
    return diff_cell(cell["vs_linguistic"])


def table1_markdown(result: dict) -> str:
    """Table 1 in the paper's layout, one table per image source: rows linguistic / visual / multi-modal
    per method, columns benchmark x subset (full, relevant to this source, relevant to every source)."""
    if not result["table1"]:
        return ""
    s = result["settings"]
    out = [f"### Table 1: Spearman rho [95% bootstrap CI] pairs used/total "
           f"(alpha={s['alpha']}, oov={s['oov']}, missing_visual={s['missing_visual']})"]
    for source, methods in _sources(result).items():
        rows = [(KINDS["linguistic"], "linguistic", score_cell)]
        rows += [(f"{KINDS[kind]} {m}", system_name(kind, source, m), score_cell)
                 for kind in ("visual", "multimodal") for m in methods]
        out.append(_source_table(result, source, rows))
    return "\n\n".join(out)


def suite_markdown(result: dict) -> str:
    """One table of every set x every system: Spearman rho on all pairs of each relatedness set, purity
    of each categorisation set, each with its 95% CI and pairs / words used of the total.

    A result whose sets beyond Table 1's were scored apart (`reproduce`'s suite) holds them in `suite`."""
    result = result.get("suite") or result
    systems = list(result["systems"])
    rows = [[bench, "rho"] + [score_cell(subsets["full"][s]) if s in subsets["full"] else "" for s in systems]
            for bench, subsets in result["table1"].items() if "full" in subsets]
    rows += [[name, "purity"] + [score_cell(cells[s], "purity") if s in cells else "" for s in systems]
             for name, cells in (result.get("categorisation") or {}).items()]
    if not rows:
        return ""
    title = ("### Every set x every system: Spearman rho (pairs) or purity (words) [95% bootstrap CI] used/total "
             f"(oov={result['settings']['oov']})")
    return title + "\n\n" + table(["Set", "Score"] + [system_header(s) for s in systems], rows)


def categorisation_markdown(result: dict) -> str:
    """Categorisation: the method, each set's words / categories / OOV, and multi-modal minus linguistic."""
    result = result.get("suite") or result
    cats = result.get("categorisation") or {}
    if not cats:
        return ""
    method = result["settings"].get("clustering", "")
    out = [f"### Concept categorisation: purity of {method}",
           "- CI: 95% percentile bootstrap over words (each word in / out of its cluster's majority category, "
           "clusters fixed); OOV words are left out of the clustering and listed in evaluation.json"]
    rows = []
    for name, cells in cats.items():
        ling = cells.get("linguistic", next(iter(cells.values())))
        oov = ling["oov_words"]
        shown = ", ".join(oov[:8]) + (f", ... ({len(oov)})" if len(oov) > 8 else "")
        diffs = [f"{system_header(s)} {diff_cell(c['vs_linguistic'])}" for s, c in cells.items()
                 if "vs_linguistic" in c]
        rows.append([name, str(ling["words_total"]), str(ling["categories"]), shown or "none",
                     "; ".join(diffs) or "-"])
    out.append(table(["Set", "words", "categories (k)", "linguistic OOV", "multi-modal - linguistic purity [paired CI]"],
                     rows))
    return "\n\n".join(out)


def diff_markdown(result: dict) -> str:
    """Multi-modal minus linguistic, with paired bootstrap CIs, per source in Table 1's layout."""
    if not result["table1"]:
        return ""
    out = [_source_table(result, source, [(f"{KINDS['multimodal']} {m}", system_name("multimodal", source, m),
                                           _diff_of) for m in methods])
           for source, methods in _sources(result).items() if methods]
    title = "### Multi-modal minus linguistic: rho difference [paired bootstrap 95% CI] (* CI excludes 0)"
    return "\n\n".join([title, *out]) if out else ""


def table2_pairs(result: dict) -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    """(benchmark, [("best" | "worst", pair), ...]) of Table 2's system, for each benchmark that has it."""
    system = result["table2_system"]
    for bench, per_system in result["table2"].items():
        t = per_system.get(system)
        if t:
            yield bench, [(kind, p) for kind in ("best", "worst") for p in t[kind]]


def table2_markdown(result: dict) -> str:
    """Table 2: 5 best and 5 worst pairs per benchmark for the chosen system."""
    if not result.get("table2"):
        return ""
    system = result["table2_system"]
    out = [f"### Table 2: best and worst pairs of {system_header(system)} (|cosine - gold rescaled to [0, 1]|)"]
    for bench, pairs in table2_pairs(result):
        rows = [[kind, p["word1"], p["word2"], short_num(p["gold"]), num(p["gold01"]), num(p["cosine"]),
                 num(p["error"])] for kind, p in pairs]
        out.append(f"**{bench}**\n\n" + table(["", "word 1", "word 2", "gold", "gold [0,1]", "cosine", "error"], rows))
    return "\n\n".join(out)


def settings_markdown(result: dict) -> str:
    """The section's heading and its settings: alpha, OOV policy, bootstrap, the input files, the subsets."""
    s = result["settings"]
    lines = ["## Relatedness evaluation", "",
             f"- alpha {s['alpha']}, OOV policy `{s['oov']}`, missing visual `{s['missing_visual']}`, "
             f"centring {'on' if s['centring'] else 'off'}, bootstrap {s['n_boot']} resamples, seed {s['seed']}"]
    inputs = s.get("inputs") or {}
    if inputs.get("linguistic"):
        lines.append(f"- linguistic: `{inputs['linguistic']}`")
    for name, path in (inputs.get("visual") or {}).items():
        lines.append(f"- visual {name}: `{path}`")
    lines.append("- subsets: full = every pair; relevant:<source> = both words have images in that source; "
                 "relevant:all = both words have images in every source")
    return "\n".join(lines)


def render_markdown(result: dict, tables: tuple[str, ...] = SECTIONS) -> str:
    """The chosen sections (of SECTIONS) as one Markdown string; empty sections are left out."""
    parts = {"settings": settings_markdown, "suite": suite_markdown, "table1": table1_markdown,
             "diff": diff_markdown, "categorisation": categorisation_markdown, "table2": table2_markdown,
             "tuned": tuned_markdown, "grounding": grounding_markdown}
    return "\n\n".join(p for p in (parts[t](result) for t in tables) if p) + "\n"
