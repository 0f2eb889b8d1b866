"""Markdown and the figure of the grounding section (`result["grounding"]`, `mmlightning.evaluation.grounding`).

    print(grounding_markdown(result))                                   # "" without the section
    plot_grounding(result, "reports/grounding_concreteness.png")       # gain over text by concreteness quartile
"""
from __future__ import annotations

import math
import os

from mmlightning.atomic import atomic_path

LABELS = {"text-centred": "text, centred (Eq. 1's text part, no image)", "eq1": "Eq. 1 (CNN-Mean, alpha on dev)", "imagined": "Eq. 1 + imagined visual vectors",
          "concreteness-gate": "Eq. 1 + concreteness gate"}
BANDS = ("Q1", "Q2", "Q3", "Q4", "unrated", "all")


def label(name: str) -> str:
    """A readable row label for a grounding system name."""
    if name in LABELS:
        return LABELS[name]
    if name.endswith("+eq1"):
        return f"{name[:-4]} text in Eq. 1 (centred)"
    return f"{name} text alone" if name.startswith("mmskipgram") else name


def _n(x, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _diff(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "n/a"
    ci = d.get("ci95")
    if not ci:
        return _n(d["diff"], True)
    star = "*" if ci[0] > 0 or ci[1] < 0 else ""
    return f"{_n(d['diff'], True)} [{_n(ci[0], True)}, {_n(ci[1], True)}]{star}"


def chosen_table(g: dict) -> str:
    rows = ["| system | alpha | concreteness threshold | rho on MEN dev |", "|---|---:|---:|---:|"]
    for name, s in g["systems"].items():
        best = " **best on dev**" if name == g["best"] else ""
        rows.append(f"| {label(name)}{best} | {s.get('alpha', '')} | {s.get('threshold', '-')} | {_n(s['dev_rho'])} |")
    return "\n".join(rows)


def test_table(g: dict, against: str = "vs_linguistic") -> str:
    """Each system minus text (or, with against="vs_eq1", minus Eq. 1 CNN-Mean) on each test set."""
    sets = list(g["test"])
    rows = ["| system | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    base = "linguistic" if against == "vs_linguistic" else "eq1"
    rows.append(f"| {'text' if base == 'linguistic' else label('eq1')} (rho) | "
                + " | ".join(_n(g["test"][s][base]["rho"]) for s in sets) + " |")
    for name in g["systems"]:
        if name != base and against in g["test"][sets[0]][name]:
            rows.append(f"| {label(name)} | " + " | ".join(_diff(g["test"][s][name].get(against)) for s in sets) + " |")
    return "\n".join(rows)


def quartile_table(g: dict) -> str:
    rows = ["| set | system | " + " | ".join(BANDS) + " |", "|---|---|" + "---|" * len(BANDS)]
    for s, per in g["by_concreteness"].items():
        edges = next(iter(per.values())).get("edges")
        where = f"{s} (edges {' / '.join(f'{e:.2f}' for e in edges)})" if edges else s
        for name, q in per.items():
            cells = [f"{_diff(q[b])} n={q[b]['pairs_used']}" for b in BANDS]
            rows.append(f"| {where} | {label(name)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def grounding_markdown(result: dict) -> str:
    """The section as Markdown: what dev chose, test minus text, and the gains by concreteness quartile."""
    g = result.get("grounding")
    if not g:
        return ""
    title = "### Grounding the words without pictures (tuned on MEN dev, reported on test)"
    if "skipped" in g:
        return f"{title}\n\nSkipped: {g['skipped']}"
    return "\n\n".join([
        title, f"Visual part: {g['visual']}. Choices by Spearman rho on MEN's 2000 dev pairs.",
        "*Chosen on MEN dev*", chosen_table(g),
        "*Test: minus text [paired 95% CI] (MEN test pairs; SimLex-999 and WS353 test-only)*", test_table(g),
        "*Test: minus Eq. 1 CNN-Mean [paired 95% CI]*", test_table(g, "vs_eq1"),
        "*Minus text by concreteness quartile of the pair (Brysbaert et al. 2014 ratings, mean of the two words; "
        "Q1 most abstract) [paired 95% CI], pairs used*", quartile_table(g)])


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
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=label(name), color=f"C{k}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(4), ["Q1\n(abstract)", "Q2", "Q3", "Q4\n(concrete)"])
        ax.set_title(s)
        ax.set_ylabel("rho minus text")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True
