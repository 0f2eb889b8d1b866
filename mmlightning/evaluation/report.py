"""Render an `evaluate_systems` result: Markdown (every set x every system, Table 1, differences,
categorisation, Table 2), JSON, Figure 4 PNG.

    from mmlightning.evaluation.report import render_markdown, plot_alpha_sweep, write_reports
    print(render_markdown(result))                 # all sections
    paths = write_reports(result, "reports")       # {"markdown": ..., "json": ..., "figure4": ...}

Cells read "rho [lo, hi] used/total" (pairs) or "purity [lo, hi] used/total" (words); "n/a" marks an
undefined score (fewer than 3 usable pairs / words).
In the difference table a "*" marks a 95% CI of (multi-modal - linguistic) that excludes 0.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Callable

from mmlightning.atomic import atomic_path, write_json, write_text

SECTIONS = ("settings", "suite", "table1", "diff", "categorisation", "table2", "tuned", "grounding")  # each only when it has data


def _num(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _cell(c: dict) -> str:
    ci = c.get("ci95")
    ci_s = f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""
    return f"{_num(c['rho'])}{ci_s} {c['pairs_used']}/{c['pairs_total']}"


def _purity_cell(c: dict) -> str:
    ci = c.get("ci95")
    ci_s = f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""
    return f"{_num(c['purity'])}{ci_s} {c['words_used']}/{c['words_total']}"


def _diff_cell(d: dict) -> str:
    ci = d.get("ci95")
    if d.get("diff") is None:
        return f"n/a (n={d.get('pairs', 0)})"
    star = "*" if ci and (ci[0] > 0 or ci[1] < 0) else ""
    ci_s = f" [{_num(ci[0], sign=True)}, {_num(ci[1], sign=True)}]" if ci else ""
    return f"{_num(d['diff'], sign=True)}{ci_s}{star} n={d.get('pairs', d.get('words'))}"


def _header(label: str) -> str:
    kind, _, name = label.partition(":")
    return {"linguistic": "Linguistic", "visual": f"Visual {name}", "multimodal": f"Multi-modal {name}"}[kind]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _source_columns(result: dict, source: str | None) -> list[tuple[str, str]]:
    """(benchmark, subset) columns of one source's table: full, relevant:<source>, relevant:all
    (every subset when there is no image source)."""
    return [(bench, sub) for bench, subsets in result["table1"].items() for sub in subsets
            if source is None or sub in ("full", f"relevant:{source}", "relevant:all")]


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


def _system(kind: str, source: str, method: str) -> str:
    return f"{kind}:{source}/{method}" if method != "vectors" else f"{kind}:{source}"


def _source_table(result: dict, source: str | None, rows: list[tuple[str, str, Callable[[dict], str]]]) -> str:
    """One source's table: a row per (label, system, format of that system's Table 1 cell)."""
    cols = _source_columns(result, source)
    body = [[label] + [fmt(result["table1"][b][sub][system]) for b, sub in cols] for label, system, fmt in rows]
    table = _table(["System"] + [f"{b} {sub}" for b, sub in cols], body)
    return table if source is None else f"**{source}**\n\n" + table


def _diff_of(cell: dict) -> str:
    return _diff_cell(cell["vs_linguistic"])


def table1_markdown(result: dict) -> str:
    """Table 1 in the paper's layout, one table per image source: rows linguistic / visual / multi-modal
    per method, columns benchmark x subset (full, relevant to this source, relevant to every source)."""
    if not result["table1"]:
        return ""
    s = result["settings"]
    out = [f"### Table 1: Spearman rho [95% bootstrap CI] pairs used/total "
           f"(alpha={s['alpha']}, oov={s['oov']}, missing_visual={s['missing_visual']})"]
    for source, methods in _sources(result).items():
        rows = [("Linguistic", "linguistic", _cell)]
        rows += [(f"{label} {m}", _system(kind, source, m), _cell)
                 for kind, label in (("visual", "Visual"), ("multimodal", "Multi-modal")) for m in methods]
        out.append(_source_table(result, source, rows))
    return "\n\n".join(out)


def suite_markdown(result: dict) -> str:
    """One table of every set x every system: Spearman rho on all pairs of each relatedness set, purity
    of each categorisation set, each with its 95% CI and pairs / words used of the total.

    A result whose sets beyond Table 1's were scored apart (`reproduce`'s suite) holds them in `suite`."""
    result = result.get("suite") or result
    systems = list(result["systems"])
    rows = [[bench, "rho"] + [_cell(subsets["full"][s]) if s in subsets["full"] else "" for s in systems]
            for bench, subsets in result["table1"].items() if "full" in subsets]
    rows += [[name, "purity"] + [_purity_cell(cells[s]) if s in cells else "" for s in systems]
             for name, cells in (result.get("categorisation") or {}).items()]
    if not rows:
        return ""
    title = ("### Every set x every system: Spearman rho (pairs) or purity (words) [95% bootstrap CI] used/total "
             f"(oov={result['settings']['oov']})")
    return title + "\n\n" + _table(["Set", "Score"] + [_header(s) for s in systems], rows)


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
        diffs = [f"{_header(s)} {_diff_cell(c['vs_linguistic'])}" for s, c in cells.items() if "vs_linguistic" in c]
        rows.append([name, str(ling["words_total"]), str(ling["categories"]), shown or "none",
                     "; ".join(diffs) or "-"])
    out.append(_table(["Set", "words", "categories (k)", "linguistic OOV", "multi-modal - linguistic purity [paired CI]"],
                      rows))
    return "\n\n".join(out)


def diff_markdown(result: dict) -> str:
    """Multi-modal minus linguistic, with paired bootstrap CIs, per source in Table 1's layout."""
    if not result["table1"]:
        return ""
    out = [_source_table(result, source, [(f"Multi-modal {m}", _system("multimodal", source, m), _diff_of)
                                          for m in methods])
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
    out = [f"### Table 2: best and worst pairs of {_header(system)} (|cosine - gold rescaled to [0, 1]|)"]
    for bench, pairs in table2_pairs(result):
        rows = [[kind, p["word1"], p["word2"], f"{p['gold']:g}", _num(p["gold01"]), _num(p["cosine"]),
                 _num(p["error"])] for kind, p in pairs]
        out.append(f"**{bench}**\n\n" + _table(["", "word 1", "word 2", "gold", "gold [0,1]", "cosine", "error"], rows))
    return "\n\n".join(out)


def settings_markdown(result: dict) -> str:
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
    from mmlightning.evaluation.grounding_report import grounding_markdown
    from mmlightning.evaluation.tuned_report import tuned_markdown

    parts = {"settings": settings_markdown, "suite": suite_markdown, "table1": table1_markdown,
             "diff": diff_markdown, "categorisation": categorisation_markdown, "table2": table2_markdown,
             "tuned": tuned_markdown, "grounding": grounding_markdown}
    return "\n\n".join(p for p in (parts[t](result) for t in tables) if p) + "\n"


def plot_alpha_sweep(result: dict, path: str | os.PathLike) -> None:
    """Figure 4: rho against alpha, one panel per benchmark; solid = full, dashed = most Relevant subset."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, faster import

    sweep = result["alpha_sweep"]
    alphas = sweep["alphas"]
    benches = [b for b in sweep if b != "alphas"]
    n = max(len(benches), 1)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.5 * cols, 4 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, bench in zip(axes.flat, benches):
        subsets = sweep[bench]
        relevant = "relevant:all" if "relevant:all" in subsets else next((s for s in subsets if s != "full"), None)
        for k, name in enumerate(subsets.get("full", {})):
            color = f"C{k % 10}"
            for sub, style in (("full", "-"), (relevant, "--")):
                if sub is None:
                    continue
                ys = [math.nan if y is None else y for y in subsets[sub][name]]
                ax.plot(alphas, ys, style, color=color, label=f"{name} ({sub})")
        ax.axvline(result["settings"]["alpha"], color="grey", lw=0.8, ls=":")
        ax.set_title(bench)
        ax.set_xlabel("alpha (weight of the linguistic part)")
        ax.set_ylabel("Spearman rho")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        if subsets.get("full"):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no visual system", ha="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(benches):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def write_reports(result: dict, out_dir: str | os.PathLike = "reports") -> dict[str, Path]:
    """Write evaluation.md, evaluation.json and figure4_alpha.png (atomically); returns their paths.

    Without a visual system (or a relatedness set) there is no alpha sweep: no PNG is written (a stale
    one is removed).
    """
    out = Path(out_dir)
    paths = {"markdown": out / "evaluation.md", "json": out / "evaluation.json", "figure4": out / "figure4_alpha.png"}
    write_json(paths["json"], result)
    md = render_markdown(result)
    if result.get("sources") and result["table1"]:
        plot_alpha_sweep(result, paths["figure4"])
        md += f"\n![Figure 4: rho against alpha]({paths['figure4'].name})\n"
    else:
        paths.pop("figure4").unlink(missing_ok=True)
    from mmlightning.evaluation.grounding_report import plot_grounding

    paths["grounding"] = out / "grounding_concreteness.png"
    if plot_grounding(result, paths["grounding"]):
        md += f"\n![Minus text by concreteness quartile]({paths['grounding'].name})\n"
    else:
        paths.pop("grounding").unlink(missing_ok=True)
    write_text(paths["markdown"], md)
    return paths
