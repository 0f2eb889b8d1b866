"""Markdown of the dev/test protocol's section (`result["tuned"]`, `mmlightning.evaluation.protocol`).

    print(tuned_markdown(result))         # "" when the result has no "tuned" section
    parts = tuned_sections(result)        # {title: Markdown}; the README's tuned block shows some of them
"""
from __future__ import annotations

from mmlightning.evaluation.report.primitives import diff, num, score_cell, short_num, table, tuned_label


def _diff(d: dict | None) -> str:
    return diff(d) if d else ""


def _chosen(tuned: dict) -> str:
    rows = []
    for name, s in tuned["systems"].items():
        gate = "" if s["gate_quantile"] is None else f"q={short_num(s['gate_quantile'])} (" \
            + ", ".join(f"{k} <= {num(v)}" for k, v in (s["dispersion_max"] or {}).items()) + ")"
        best = " **best on dev**" if name == tuned.get("best") else ""
        rows.append([tuned_label(name) + best, ", ".join(s["sources"]), s["fusion"], short_num(s["alpha"]),
                     s["missing_visual"], gate or "-", num(s["dev_rho"])])
    return table(["system", "sources", "fusion", "alpha", "missing visual", "dispersion gate", "rho on MEN dev"], rows)


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
               table(["system", *benches], [[tuned_label(s) if s != "linguistic" else "Linguistic"] +
                                            [score_cell(tuned["test"][b][s]) for b in benches] for s in systems]),
           "Test: minus linguistic [paired 95% CI]":
               table(["system", *benches], [[tuned_label(s)] + [_diff(tuned["test"][b][s].get("vs_linguistic"))
                                                                for b in benches] for s in systems[1:]])}
    against = [s for s in systems[1:] if tuned["systems"][s].get("baseline")]
    if against:
        out["Test: minus plain CNN-Mean (tuned, same pairs) [paired 95% CI]"] = table(
            ["system", "against", *benches], [[tuned_label(s), tuned["systems"][s]["baseline"]] +
                                              [_diff(tuned["test"][b][s].get("vs_cnn_mean")) for b in benches]
                                              for s in against])
    srcs = sorted({s for o in tuned["oov"].values() for s in o["words_with_images"]})
    out["Benchmarks: out-of-vocabulary counts (text vectors) and words with images"] = table(
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
