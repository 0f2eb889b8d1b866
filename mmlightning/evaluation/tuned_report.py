"""Markdown of the dev/test protocol's section (`result["tuned"]`, `mmlightning.evaluation.protocol`).

    print(tuned_markdown(result))   # "" when the result has no "tuned" section
"""
from __future__ import annotations

import math

LABELS = {"eq1": "Eq. 1, alpha 0.5 (paper, not tuned)", "cnn-mean": "CNN-Mean (tuned)",
          "all-sources:average": "all sources, average (tuned)", "all-sources:concat": "all sources, concat (tuned)",
          "all-sources+dispersion": "all sources + dispersion gate (tuned)"}


def label(name: str) -> str:
    """A readable row label for a tuned system name."""
    if name in LABELS:
        return LABELS[name]
    kind, _, rest = name.partition(":")
    if kind == "eq1":
        return f"{rest}: {LABELS['eq1']}"
    if rest.endswith("+dispersion"):
        return f"{rest[:-len('+dispersion')]}: CNN-Mean + dispersion gate (tuned)"
    return f"{rest}: {LABELS.get(kind, kind)}"


def _n(x, sign=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _cell(c: dict) -> str:
    ci = c.get("ci95")
    return f"{_n(c['rho'])}" + (f" [{_n(ci[0])}, {_n(ci[1])}]" if ci else "") + f" {c['pairs_used']}/{c['pairs_total']}"


def _diff(d: dict | None) -> str:
    if not d:
        return ""
    if d.get("diff") is None:
        return "n/a"
    ci = d.get("ci95")
    star = "*" if ci and (ci[0] > 0 or ci[1] < 0) else ""
    return _n(d["diff"], True) + (f" [{_n(ci[0], True)}, {_n(ci[1], True)}]" if ci else "") + star


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _chosen(tuned: dict) -> str:
    rows = []
    for name, s in tuned["systems"].items():
        gate = "" if s["gate_quantile"] is None else \
            f"q={s['gate_quantile']:g} (" + ", ".join(f"{k} <= {v:.3f}" for k, v in (s["dispersion_max"] or {}).items()) + ")"
        best = " **best on dev**" if name == tuned.get("best") else ""
        rows.append([label(name) + best, ", ".join(s["sources"]), s["fusion"], f"{s['alpha']:g}", s["missing_visual"],
                     gate or "-", _n(s["dev_rho"])])
    return _table(["system", "sources", "fusion", "alpha", "missing visual", "dispersion gate", "rho on MEN dev"], rows)


def tuned_sections(result: dict) -> dict[str, str]:
    """The protocol section's parts by title ("" -> the introduction); {} when the result has no "tuned"."""
    tuned = result.get("tuned")
    if not tuned:
        return {}
    if "skipped" in tuned:
        return {"": f"Skipped: {tuned['skipped']}"}
    p, split = tuned["protocol"], tuned["protocol"]["split"]
    benches = list(tuned["test"])
    systems = ["linguistic", *tuned["systems"]]
    out = {"": f"Every choice below was made on MEN dev ({split['kind']}, seed {split['seed']}: {split['dev_pairs']} dev / "
               f"{split['test_pairs']} test pairs; MEN's official split is not installed offline) by "
               f"{p['selection']}; alpha on a {len(p['alphas'])}-point grid, missing visual in {p['missing_visual']}, "
               f"fusion in {p['fusions']}, dispersion gate quantile in {p['gate_quantiles'] or 'none'}. "
               f"{', '.join(p['test_only'])} are test-only. Bootstrap: {p['n_boot']} resamples, seed {p['seed']}; "
               "* marks a paired 95% CI that excludes 0.",
           "Chosen on MEN dev": _chosen(tuned),
           "Test: Spearman rho [95% CI] pairs used/total":
               _table(["system", *benches], [[label(s) if s != "linguistic" else "Linguistic"] +
                                             [_cell(tuned["test"][b][s]) for b in benches] for s in systems]),
           "Test: minus linguistic [paired 95% CI]":
               _table(["system", *benches], [[label(s)] + [_diff(tuned["test"][b][s].get("vs_linguistic"))
                                                           for b in benches] for s in systems[1:]])}
    against = [s for s in systems[1:] if tuned["systems"][s].get("baseline")]
    if against:
        out["Test: minus plain CNN-Mean (tuned, same pairs) [paired 95% CI]"] = _table(
            ["system", "against", *benches], [[label(s), tuned["systems"][s]["baseline"]] +
                                              [_diff(tuned["test"][b][s].get("vs_cnn_mean")) for b in benches]
                                              for s in against])
    srcs = sorted({s for o in tuned["oov"].values() for s in o["words_with_images"]})
    out["Benchmarks: out-of-vocabulary counts (text vectors) and words with images"] = _table(
        ["benchmark", "pairs", "pairs OOV", "words", "words OOV", *[f"words with {s} images" for s in srcs]],
        [[b, str(o["pairs"]), str(o["pairs_oov"]), str(o["words"]), str(o["words_oov"])] +
         [str(o["words_with_images"].get(s, 0)) for s in srcs] for b, o in tuned["oov"].items()])
    return out


def tuned_markdown(result: dict) -> str:
    """The section "tuned on dev, reported on test": choices, test scores, differences, OOV counts."""
    sections = tuned_sections(result)
    if not sections:
        return ""
    parts = ["## Tuned on dev, reported on test"]
    for title, body in sections.items():
        parts += ([f"### {title}"] if title else []) + [body]
    return "\n\n".join(parts)
