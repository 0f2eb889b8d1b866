"""The evaluate command end to end on tiny synthetic files, the library API, and bad input."""
import json

import numpy as np
import torch
import pytest

from mmlightning import cli
from mmlightning.datasets import Benchmark
from mmlightning.evaluation.fusion import alpha_grid
from mmlightning.evaluation.systems import evaluate_systems, split_name
from mmlightning.evaluation.relatedness import score
from mmlightning.evaluation.report import render_markdown, write_reports
from mmlightning.vectors import KeyedVectors, load_vectors

WORDS = [f"w{i:02d}" for i in range(40)]


def _pairs(rng, n=120):
    out = []
    for _ in range(n):
        i, j = rng.choice(40, 2, replace=False)
        out.append((WORDS[i], WORDS[j]))
    return out


@pytest.fixture
def setup(tmp_path):
    """A benchmark whose gold follows a hidden (40, 6) matrix; text and visual are noisy views of it."""
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(40, 6))
    pairs = _pairs(rng)
    gold = [float(hidden[int(a[1:])] @ hidden[int(b[1:])]) for a, b in pairs]
    bench = tmp_path / "toy.txt"
    bench.write_text("".join(f"{a}\t{b}\t{g:.4f}\n" for (a, b), g in zip(pairs, gold)))
    ling = KeyedVectors(WORDS[:38], hidden[:38] + rng.normal(0, 1.0, (38, 6)))          # 2 words OOV
    ling.save_word2vec(tmp_path / "ling.txt")
    files = {}
    for name, n_words in (("tux/cnn-mean", 30), ("tux/cnn-max", 30), ("clip/cnn-mean", 25)):
        keep = sorted(rng.choice(40, n_words, replace=False))
        vis = np.concatenate([hidden[keep], rng.normal(0, 0.5, (n_words, 2))], axis=1)  # (n, 8)
        path = tmp_path / (name.replace("/", "_") + ".txt")
        KeyedVectors([WORDS[i] for i in keep], vis).save_word2vec(path)
        files[name] = str(path)
    return tmp_path, str(bench), files


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_command_end_to_end(setup, capsys):
    tmp, bench, files = setup
    out_dir = tmp / "reports"
    code, out, err = _run(["evaluate", "--linguistic", str(tmp / "ling.txt"), "--visual", json.dumps(files),
                           "--benchmarks", f"[{bench}]", "--n_boot", "200", "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert "Table 1" in out and "relevant:all" in out
    tux_table = out.split("**tux**")[1].split("**clip**")[0]  # the paper's layout: one table per source
    assert "| System | toy full | toy relevant:tux | toy relevant:all |" in tux_table
    assert "| Multi-modal cnn-max |" in tux_table and "relevant:clip" not in tux_table
    for f in ("evaluation.md", "evaluation.json", "figure4_alpha.png"):
        assert (out_dir / f).stat().st_size > 0
    assert (out_dir / "figure4_alpha.png").read_bytes()[:4] == b"\x89PNG"
    r = json.loads((out_dir / "evaluation.json").read_text())
    assert r["format"] == "mmlightning-evaluation/1"
    assert r["sources"] == {"tux": ["cnn-mean", "cnn-max"], "clip": ["cnn-mean"]}
    assert list(r["table1"]["toy"]) == ["full", "relevant:tux", "relevant:clip", "relevant:all"]
    full = r["table1"]["toy"]["full"]
    assert set(full) == {"linguistic", "visual:tux/cnn-mean", "visual:tux/cnn-max", "visual:clip/cnn-mean",
                         "multimodal:tux/cnn-mean", "multimodal:tux/cnn-max", "multimodal:clip/cnn-mean"}
    ling = full["linguistic"]
    assert ling["pairs_total"] == 120 and ling["pairs_used"] < 120          # w38, w39 have no text vector
    assert full["multimodal:tux/cnn-mean"]["pairs_used"] == ling["pairs_used"]
    assert ling["ci95"][0] < ling["rho"] < ling["ci95"][1]
    d = full["multimodal:tux/cnn-mean"]["vs_linguistic"]
    assert d["diff"] == pytest.approx(full["multimodal:tux/cnn-mean"]["rho"] - ling["rho"])
    assert len(r["alpha_sweep"]["alphas"]) == 21 and len(r["alpha_sweep"]["toy"]["full"]["tux/cnn-mean"]) == 21
    t2 = r["table2"]["toy"][r["table2_system"]]
    assert r["table2_system"] == "multimodal:tux/cnn-mean"
    assert len(t2["best"]) == len(t2["worst"]) == 5
    assert max(p["error"] for p in t2["best"]) <= min(p["error"] for p in t2["worst"])
    assert all(0 <= p["gold01"] <= 1 for p in t2["best"] + t2["worst"])
    md = (out_dir / "evaluation.md").read_text()
    assert "Table 2" in md and "figure4_alpha.png" in md


def test_relevant_subsets_and_sweep_semantics(setup):
    tmp, bench_path, files = setup
    from mmlightning.datasets import load_benchmark
    from mmlightning.vectors import load_vectors

    bench = load_benchmark(bench_path)
    ling = load_vectors(tmp / "ling.txt")
    vis = {k: load_vectors(v) for k, v in files.items()}
    r = evaluate_systems(ling, vis, [bench], n_boot=0, centring=False)
    t = r["table1"]["toy"]
    tux_words = set(vis["tux/cnn-mean"].index_to_key) & set(vis["tux/cnn-max"].index_to_key)
    n_tux = sum(a in tux_words and b in tux_words for a, b, _ in bench.pairs)
    assert t["relevant:tux"]["visual:tux/cnn-mean"]["pairs_used"] == n_tux == t["relevant:tux"]["linguistic"]["pairs_total"]
    assert t["relevant:all"]["linguistic"]["pairs_total"] <= min(n_tux, t["relevant:clip"]["linguistic"]["pairs_total"])
    # without centring, alpha = 1 is the linguistic system and alpha = 0 the visual one on covered pairs
    sweep = r["alpha_sweep"]["toy"]
    assert sweep["full"]["tux/cnn-mean"][-1] == pytest.approx(t["full"]["linguistic"]["rho"], abs=1e-9)
    assert sweep["relevant:tux"]["tux/cnn-mean"][0] == pytest.approx(
        score(vis["tux/cnn-mean"], bench, mask=_mask(bench, tux_words) & _mask(bench, ling.key_to_index),
              n_boot=0).rho, abs=1e-9)
    # alpha=0.5 headline equals the sweep's 0.5 point
    assert t["full"]["multimodal:tux/cnn-mean"]["rho"] == pytest.approx(sweep["full"]["tux/cnn-mean"][10])


def _mask(bench, words):
    return np.array([a in words and b in words for a, b, _ in bench.pairs])


def test_missing_visual_text_option_and_oov_zero(setup):
    tmp, bench_path, files = setup
    from mmlightning.datasets import load_benchmark
    from mmlightning.vectors import load_vectors

    bench = load_benchmark(bench_path)
    ling = load_vectors(tmp / "ling.txt")
    vis = {"tux/cnn-mean": load_vectors(files["tux/cnn-mean"])}
    zero = evaluate_systems(ling, vis, [bench], n_boot=0)["table1"]["toy"]
    text = evaluate_systems(ling, vis, [bench], n_boot=0, missing_visual="text")["table1"]["toy"]
    key = "multimodal:tux/cnn-mean"
    assert text["relevant:tux"][key]["rho"] == pytest.approx(zero["relevant:tux"][key]["rho"])
    assert text["full"][key]["rho"] != pytest.approx(zero["full"][key]["rho"])
    z = evaluate_systems(ling, vis, [bench], n_boot=0, oov="zero")["table1"]["toy"]["full"]
    assert z["linguistic"]["pairs_used"] == z[key]["pairs_used"] == z["visual:tux/cnn-mean"]["pairs_used"] == 120


def test_undefined_rho_is_null_and_na(tmp_path):
    ling = KeyedVectors(["a", "b", "c"], np.eye(3))
    bench = Benchmark("tiny", (("a", "b", 1.0), ("a", "c", 2.0), ("a", "zz", 3.0)))
    r = evaluate_systems(ling, {"s/m": KeyedVectors(["a", "b"], np.eye(2))}, [bench], n_boot=50)
    cell = r["table1"]["tiny"]["full"]["linguistic"]
    assert cell["rho"] is None and cell["ci95"] is None and cell["pairs_used"] == 2
    assert r["table1"]["tiny"]["full"]["multimodal:s/m"]["vs_linguistic"]["diff"] is None
    md = render_markdown(r)
    assert "n/a" in md
    paths = write_reports(r, tmp_path / "rep")
    assert json.loads(paths["json"].read_text())["table1"]["tiny"]["full"]["linguistic"]["rho"] is None


def test_linguistic_only_and_helpers(setup, tmp_path):
    tmp, bench_path, _ = setup
    from mmlightning.datasets import load_benchmark
    from mmlightning.vectors import load_vectors

    r = evaluate_systems(load_vectors(tmp / "ling.txt"), {}, [load_benchmark(bench_path)], n_boot=0)
    assert list(r["table1"]["toy"]) == ["full"] and r["table2_system"] == "linguistic"
    paths = write_reports(r, tmp_path / "rep")
    assert "figure4" not in paths and not (tmp_path / "rep" / "figure4_alpha.png").exists()
    assert split_name("tuxpaint/cnn-mean") == ("tuxpaint", "cnn-mean")
    assert split_name("tux") == ("tux", "vectors")
    assert alpha_grid()[:3] == [0.0, 0.05, 0.1] and alpha_grid()[-1] == 1.0


# ---------------------------------------------------------------- bad input: one line, exit 2

def _bad(argv, capsys, *needles):
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_missing_and_malformed_vectors(setup, capsys):
    tmp, bench, files = setup
    base = ["evaluate", "--benchmarks", f"[{bench}]", "--n_boot", "0", "--out", str(tmp / "r")]
    _bad(base + ["--linguistic", str(tmp / "nope.txt")], capsys, "nope.txt", "not found")
    _bad(base, capsys, "--linguistic")
    bad = tmp / "bad.txt"
    bad.write_text("2 3\nw00 1 2 3\nw01 1 x 3\n")
    _bad(base + ["--linguistic", str(bad)], capsys, f"{bad}:3", "non-numeric")
    liar = tmp / "liar.txt"
    liar.write_text("2 4\nw00 1 2 3\nw01 1 2 3\n")
    _bad(base + ["--linguistic", str(liar)], capsys, f"{liar}:2", "header says 4")
    garbage = tmp / "garbage.txt"
    garbage.write_text("hello world\n")
    _bad(base + ["--linguistic", str(garbage)], capsys, f"{garbage}:1")


def test_bad_benchmark_line(setup, capsys):
    tmp, _, _ = setup
    bench = tmp / "broken.txt"
    bench.write_text("w00\tw01\t3.0\nw00 w02\n")
    _bad(["evaluate", "--linguistic", str(tmp / "ling.txt"), "--benchmarks", f"[{bench}]"], capsys, f"{bench}:2")
    bench.write_text("w00\tw01\tlots\n")
    _bad(["evaluate", "--linguistic", str(tmp / "ling.txt"), "--benchmarks", f"[{bench}]"], capsys, f"{bench}:1")


def test_visual_dimension_mismatch_and_no_common_word(setup, capsys):
    tmp, bench, files = setup
    other = tmp / "clip_wide.txt"
    KeyedVectors(WORDS[:10], np.ones((10, 5))).save_word2vec(other)
    vis = {"tux/cnn-mean": files["tux/cnn-mean"], "clip/cnn-mean": str(other)}
    base = ["evaluate", "--linguistic", str(tmp / "ling.txt"), "--benchmarks", f"[{bench}]", "--n_boot", "0",
            "--out", str(tmp / "r")]
    _bad(base + ["--visual", json.dumps(vis)], capsys, str(other), "dimension 5", "8")
    stranger = tmp / "stranger.txt"
    KeyedVectors(["zebra", "yak"], np.ones((2, 8))).save_word2vec(stranger)
    _bad(base + ["--visual", json.dumps({"tux/cnn-mean": str(stranger)})], capsys, str(stranger), "no word in common")
    _bad(base + ["--visual", json.dumps({"tux/": files["tux/cnn-mean"]})], capsys, "<source>/<method>")
    _bad(base + ["--alpha", "1.5"], capsys, "alpha")


def test_text_only_and_unnamed_source_render(setup):
    tmp, bench_path, files = setup
    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.report import render_markdown
    from mmlightning.vectors import load_vectors

    bench, ling = load_benchmark(bench_path), load_vectors(tmp / "ling.txt")
    text_only = render_markdown(evaluate_systems(ling, None, [bench], n_boot=0), tables=("table1", "diff"))
    assert "| System | toy full |" in text_only and "| Linguistic | " in text_only and "Multi-modal" not in text_only
    plain = render_markdown(evaluate_systems(ling, {"mine": load_vectors(files["clip/cnn-mean"])}, [bench], n_boot=0))
    assert "**mine**" in plain and "| Visual vectors |" in plain and "| Multi-modal vectors |" in plain


def test_protocol_option_adds_a_section_and_keeps_table1(tmp_path, capsys):
    from mmlightning.datasets import load_benchmark
    from mmlightning.features.aggregates import Aggregate, save_aggregates

    words = sorted(load_benchmark("men").words())[:300]
    rng = np.random.default_rng(0)
    KeyedVectors(words, rng.normal(size=(300, 6))).save_word2vec(tmp_path / "ling.txt")
    files, aggs = {}, {}
    for src, sl in (("tux", slice(0, 120)), ("clip", slice(80, 200))):
        ws = words[sl]
        KeyedVectors(ws, rng.normal(size=(len(ws), 4))).save_word2vec(tmp_path / f"{src}.txt")
        agg = Aggregate(4)
        agg.update(torch.from_numpy(rng.normal(size=(2 * len(ws), 4))).float(), [[w] for w in ws for _ in range(2)])
        save_aggregates(tmp_path / f"{src}.pt", agg)
        files[f"{src}/cnn-mean"], aggs[src] = str(tmp_path / f"{src}.txt"), str(tmp_path / f"{src}.pt")
    base = ["evaluate", "--linguistic", str(tmp_path / "ling.txt"), "--visual", json.dumps(files),
            "--benchmarks", "[men]", "--n_boot", "0"]
    assert _run(base + ["--out", str(tmp_path / "plain")], capsys)[0] == 0
    code, out, err = _run(base + ["--out", str(tmp_path / "tuned"), "--protocol", "true",
                                  "--aggregates", json.dumps(aggs)], capsys)
    assert code == 0, err
    plain = json.loads((tmp_path / "plain" / "evaluation.json").read_text())
    tuned = json.loads((tmp_path / "tuned" / "evaluation.json").read_text())
    assert "tuned" not in plain and tuned.pop("tuned")["best"] is not None
    assert tuned == plain                                                # Table 1 & co. unchanged
    assert "all sources + dispersion gate" in out and "Tuned on dev" in (tmp_path / "tuned" / "evaluation.md").read_text()
    code, _, err = _run(base + ["--out", str(tmp_path / "bad"), "--protocol", "true", "--source_fusion", "[sum]"],
                        capsys)
    assert code == 2 and "source_fusion" in err and "Traceback" not in err


class _OpensFile:
    """Unpickling this creates `path`: the marker that a file was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_vectors_file_is_refused_unless_the_unsafe_flag_is_given(setup, capsys):
    """gensim's native format is a pickle: read only with --unsafe_gensim_pickle; otherwise nothing is unpickled."""
    import pickle

    from gensim.models import KeyedVectors as GKV

    tmp, bench, files = setup
    base = ["evaluate", "--benchmarks", f"[{bench}]", "--n_boot", "0", "--out", str(tmp / "r")]
    evil = tmp / "evil.txt"
    evil.write_bytes(pickle.dumps(_OpensFile(tmp / "unpickled"), protocol=4))
    _bad(base + ["--linguistic", str(evil)], capsys, str(evil), "pickle", "--unsafe_gensim_pickle")
    _bad(base + ["--linguistic", str(tmp / "ling.txt"), "--visual", json.dumps({"tux/cnn-mean": str(evil)})],
         capsys, str(evil), "pickle", "--unsafe_gensim_pickle")
    assert not (tmp / "unpickled").exists()
    ling = load_vectors(tmp / "ling.txt")
    g = GKV(vector_size=ling.vector_size)
    g.add_vectors(ling.index_to_key, ling.vectors)
    g.save(str(tmp / "ling.kv"))
    _bad(base + ["--linguistic", str(tmp / "ling.kv")], capsys, "pickle", "--unsafe_gensim_pickle")
    code, _, err = _run(base + ["--linguistic", str(tmp / "ling.kv"), "--unsafe_gensim_pickle", "true"], capsys)
    assert code == 0, err
    assert json.loads((tmp / "r" / "evaluation.json").read_text())["systems"]["linguistic"]["words"] == 38
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "unpickles: only for files you trust" in " ".join(capsys.readouterr().out.split())
