"""The files of an evaluation report: evaluation.md, evaluation.json and the two figures (PNG).

    from mmlightning.evaluation.report import write_reports
    paths = write_reports(result, "reports")      # {"markdown": ..., "json": ..., "figure4": ..., "grounding": ...}
    plot_alpha_sweep(result, "fig4.png")          # Figure 4 alone
    plot_grounding(result, "g.png")               # minus text by concreteness quartile; False without the section

Every file is written atomically; matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from mmlightning.atomic import atomic_path, write_json, write_text
from mmlightning.evaluation.report.grounding import BANDS
from mmlightning.evaluation.report.primitives import grounding_label
from mmlightning.evaluation.report.tables import render_markdown


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


def plot_grounding(result: dict, path: str | os.PathLike) -> bool:
    """Bars of minus-text rho per concreteness quartile, one panel per set; False (nothing written) without data."""
    g = result.get("grounding") or {}
    if not g.get("by_concreteness"):
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sets = list(g["by_concreteness"])
    fig = Figure(figsize=(4.6 * len(sets), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, s in zip(axes, sets):
        per = g["by_concreteness"][s]
        width = 0.8 / max(len(per), 1)
        for k, (name, q) in enumerate(per.items()):
            xs = [i + (k - (len(per) - 1) / 2) * width for i in range(4)]
            ys = [q[b]["diff"] if q[b]["diff"] is not None else math.nan for b in BANDS[:4]]
            err = [[y - (q[b]["ci95"] or [y, y])[0] for y, b in zip(ys, BANDS[:4])],
                   [(q[b]["ci95"] or [y, y])[1] - y for y, b in zip(ys, BANDS[:4])]]
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=grounding_label(name), color=f"C{k}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(4), ["Q1\n(abstract)", "Q2", "Q3", "Q4\n(concrete)"])
        ax.set_title(s)
        ax.set_ylabel("rho minus text")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True


def write_reports(result: dict, out_dir: str | os.PathLike = "reports") -> dict[str, Path]:
    """Write evaluation.md, evaluation.json, figure4_alpha.png and grounding_concreteness.png; returns their paths.

    Without a visual system (or a relatedness set) there is no alpha sweep, without a grounding section no
    grounding figure: that PNG is not written (a stale one is removed).
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
    paths["grounding"] = out / "grounding_concreteness.png"
    if plot_grounding(result, paths["grounding"]):
        md += f"\n![Minus text by concreteness quartile]({paths['grounding'].name})\n"
    else:
        paths.pop("grounding").unlink(missing_ok=True)
    write_text(paths["markdown"], md)
    return paths
