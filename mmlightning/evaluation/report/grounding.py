"""Markdown of the grounding section (`result["grounding"]`, `mmlightning.evaluation.grounding`).

    print(grounding_markdown(result))     # "" without the section
    chosen_table(g), test_table(g), test_table(g, "vs_eq1"), quartile_table(g)   # its tables, g = result["grounding"]

Its figure (gain over text by concreteness quartile) is `files.plot_grounding`.
"""
from __future__ import annotations

from mmlightning.evaluation.report.primitives import diff, diff_cell, grounding_label, num, table

BANDS = ("Q1", "Q2", "Q3", "Q4", "unrated", "all")


def chosen_table(g: dict) -> str:
    """The systems, their alpha / concreteness threshold and rho on MEN dev; the best one marked."""
    rows = [[grounding_label(name) + (" **best on dev**" if name == g["best"] else ""), str(s.get("alpha", "")),
             str(s.get("threshold", "-")), num(s["dev_rho"])] for name, s in g["systems"].items()]
    return table(["system", "alpha", "concreteness threshold", "rho on MEN dev"], rows, align="lrrr")


def test_table(g: dict, against: str = "vs_linguistic") -> str:
    """Each system minus text (or, with against="vs_eq1", minus Eq. 1 CNN-Mean) on each test set."""
    sets = list(g["test"])
    base = "linguistic" if against == "vs_linguistic" else "eq1"
    rows = [[f"{'text' if base == 'linguistic' else grounding_label('eq1')} (rho)"]
            + [num(g["test"][s][base]["rho"]) for s in sets]]
    rows += [[grounding_label(name)] + [diff(g["test"][s][name].get(against)) for s in sets]
             for name in g["systems"] if name != base and against in g["test"][sets[0]][name]]
    return table(["system", *sets], rows)


def quartile_table(g: dict) -> str:
    """Each system minus text by concreteness band of the pair, on each set (the band edges in the row)."""
    rows = []
    for s, per in g["by_concreteness"].items():
        edges = next(iter(per.values())).get("edges")
        where = f"{s} (edges {' / '.join(f'{e:.2f}' for e in edges)})" if edges else s
        rows += [[where, grounding_label(name)] + [diff_cell(q[b], n=q[b]["pairs_used"]) for b in BANDS]
                 for name, q in per.items()]
    return table(["set", "system", *BANDS], rows)


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
