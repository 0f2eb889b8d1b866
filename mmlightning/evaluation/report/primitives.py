"""The pieces every report section is made of: numbers, score and difference cells, Markdown tables, labels.

    num(0.71234), num(0.052, sign=True), num(None)        # "0.712", "+0.052", "n/a"
    short_num(7.5), short_num(10.0)                        # "7.5", "10": a gold score or a setting, shortest form
    score_cell(cell), score_cell(cell, "purity")           # "0.712 [0.671, 0.748] 1985/2000"
    diff(d), diff_cell(d)                                  # "+0.052 [+0.018, +0.088]*", the same + " n=525"
    table(["system", "rho"], [["Text", "0.712"]], align="lr")
    system_header("multimodal:tuxpaint/cnn-mean"), tuned_label("eq1"), grounding_label("imagined")

Every Markdown of `mmlightning.evaluation.report` (evaluation.md and the README / docs blocks) is built from
these, and so are the HTML report (`mmlightning.evaluation.html`) and the `cell()` of a relatedness or
categorisation score; a "*" after a difference marks a 95% CI that excludes 0. Standard library only, and
no import of the package: the scoring modules below the report (relatedness, categorisation) use it too.
"""
from __future__ import annotations

import math

# ------------------------------------------------------------------------------------ numbers and cells


def num(x: float | None, sign: bool = False) -> str:
    """x to 3 decimals ("+" in front of a positive x with `sign`); "n/a" for None or NaN (an undefined score)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def short_num(x: float) -> str:
    """A gold (human) score or a setting (alpha, a quantile) in its shortest form: 7.5 -> "7.5", 10.0 -> "10"."""
    return f"{x:g}"


def counts(c: dict, kind: str = "rho") -> str:
    """'used/total' of a score cell: pairs for a rho, words for a purity."""
    unit = "pairs" if kind == "rho" else "words"
    return f"{c[f'{unit}_used']}/{c[f'{unit}_total']}"


def score_cell(c: dict, kind: str = "rho") -> str:
    """'0.712 [0.671, 0.748] 1985/2000': the score (kind "rho" or "purity"), its 95% CI when it has one,
    used/total."""
    ci = c.get("ci95")
    ci_s = f" [{num(ci[0])}, {num(ci[1])}]" if ci else ""
    return f"{num(c[kind])}{ci_s} {counts(c, kind)}"


def diff(d: dict | None) -> str:
    """A paired difference: '+0.052 [+0.018, +0.088]*' (* when the CI excludes 0; no CI when there is none);
    "n/a" without one."""
    if not d or d.get("diff") is None:
        return "n/a"
    ci = d.get("ci95")
    if not ci:
        return num(d["diff"], sign=True)
    star = "*" if ci[0] > 0 or ci[1] < 0 else ""
    return f"{num(d['diff'], sign=True)} [{num(ci[0], sign=True)}, {num(ci[1], sign=True)}]{star}"


def diff_cell(d: dict, n: int | None = None) -> str:
    """'+0.052 [+0.018, +0.088]* n=525': `diff(d)` and the pairs (or words) it is over (`n`, else d's own)."""
    return f"{diff(d)} n={d.get('pairs', d.get('words', 0)) if n is None else n}"


def table(header: list[str], rows: list[list[str]], align: str = "", spaced: bool = False) -> str:
    """A Markdown table. `align`: a letter per column, "l" (the default) or "r" (right-aligned, "---:");
    `spaced`: the rule row written "| --- | ---: |" rather than "|---|---:|"."""
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    line = (lambda cells: "| " + " | ".join(cells) + " |")  # noqa: E731
    return "\n".join([line(header), line(rule) if spaced else "|" + "|".join(rule) + "|", *map(line, rows)])


# ------------------------------------------------------------------------------------ Table 1's layout


def system_name(kind: str, source: str, method: str) -> str:
    """'multimodal:tuxpaint/cnn-mean' (kind linguistic / visual / multimodal); a source's own vectors have no
    method ("vectors")."""
    return f"{kind}:{source}/{method}" if method != "vectors" else f"{kind}:{source}"


def source_columns(result: dict, source: str | None) -> list[tuple[str, str]]:
    """(benchmark, subset) columns of one source's Table 1: full, relevant:<source>, relevant:all
    (every subset when there is no image source)."""
    return [(bench, sub) for bench, subsets in result["table1"].items() for sub in subsets
            if source is None or sub in ("full", f"relevant:{source}", "relevant:all")]


# ------------------------------------------------------------------------------------ labels

KINDS = {"linguistic": "Linguistic", "visual": "Visual", "multimodal": "Multi-modal"}
# source -> (title of its README table, short name in column headers)
SOURCES = {"tuxpaint": ("Tux Paint (ImageNet role)", "tux"), "openclipart": ("OpenClipart (ESP Game role)", "oc"),
           "imagenet": ("ImageNet", "imagenet"), "esp": ("ESP Game", "esp")}
TUNED = {"eq1": "Eq. 1, alpha 0.5 (paper, not tuned)", "cnn-mean": "CNN-Mean (tuned)",
         "all-sources:average": "all sources, average (tuned)", "all-sources:concat": "all sources, concat (tuned)",
         "all-sources+dispersion": "all sources + dispersion gate (tuned)"}
GROUNDING = {"text-centred": "text, centred (Eq. 1's text part, no image)", "eq1": "Eq. 1 (CNN-Mean, alpha on dev)",
             "imagined": "Eq. 1 + imagined visual vectors", "concreteness-gate": "Eq. 1 + concreteness gate"}


def system_header(system: str) -> str:
    """'Multi-modal tuxpaint/cnn-mean' for the system multimodal:tuxpaint/cnn-mean ('Linguistic' for the text)."""
    kind, _, name = system.partition(":")
    return KINDS[kind] if kind == "linguistic" else f"{KINDS[kind]} {name}"


def source_title(source: str, short: bool = False) -> str:
    """An image source's title in the README ('Tux Paint (ImageNet role)'), or its short name ('tux')."""
    return SOURCES.get(source, (source, source))[1 if short else 0]


def tuned_label(name: str) -> str:
    """A readable row label for a system of the dev/test protocol (`result["tuned"]["systems"]`)."""
    if name in TUNED:
        return TUNED[name]
    kind, _, rest = name.partition(":")
    if kind == "eq1":
        return f"{rest}: {TUNED['eq1']}"
    if rest.endswith("+dispersion"):
        return f"{rest[:-len('+dispersion')]}: CNN-Mean + dispersion gate (tuned)"
    return f"{rest}: {TUNED.get(kind, kind)}"


def grounding_label(name: str) -> str:
    """A readable row label for a system of the grounding section (`result["grounding"]["systems"]`)."""
    if name in GROUNDING:
        return GROUNDING[name]
    if name.endswith("+eq1"):
        return f"{name[:-4]} text in Eq. 1 (centred)"
    return f"{name} text alone" if name.startswith("mmskipgram") else name
