"""docs/skipgram.md's benchmark block is the rendering of the shipped benchmark records."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [ROOT / "docs" / "figures" / "bench_skipgram.json", ROOT / "docs" / "figures" / "bench_skipgram_loaded.json"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_skipgram", ROOT / "benchmarks" / "bench_skipgram.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_block_equals_the_records(bench):
    text = (ROOT / "docs" / "skipgram.md").read_text()
    block = text.split(bench.BEGIN, 1)[1].split(bench.END, 1)[0].strip("\n")
    assert block == bench.render([str(r) for r in RECORDS])


def test_records_meet_the_issue_and_render_ratios(bench, tmp_path):
    for r in RECORDS:
        rec = json.loads(r.read_text())
        g, o = rec["gensim"], rec["ours"]
        assert rec["ratio_wall"] == o["words_per_s"] / g["words_per_s"] >= 1.3 and rec["ratio_cpu"] >= 1.3
        assert abs(o["ws353"] - g["ws353"]) <= 0.01 and abs(o["men"] - g["men"]) <= 0.01
        assert "pairs=native" in o["system"]
    rec = json.loads(RECORDS[0].read_text())
    rec["ours"]["words_per_s"] = rec["gensim"]["words_per_s"] * 3
    rec["ratio_wall"] = 3.0
    (tmp_path / "r.json").write_text(json.dumps(rec))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.BEGIN}\nold\n{bench.END}\nrest\n")
    bench.render([str(tmp_path / "r.json")], str(readme))
    out = readme.read_text()
    assert "**3.00x on the wall clock" in out and out.startswith("intro\n") and out.endswith("rest\n")


SEEDS = ROOT / "docs" / "figures" / "bench_skipgram_seeds.json"


def test_seeds_block_equals_the_record(bench):
    text = (ROOT / "docs" / "skipgram.md").read_text()
    block = text.split(bench.SEEDS_BEGIN, 1)[1].split(bench.SEEDS_END, 1)[0].strip("\n")
    assert block == bench.render_seeds(str(SEEDS))


def test_seeds_record_has_reproduces_setting_over_three_or_more_seeds(bench):
    rec = json.loads(SEEDS.read_text())
    n = rec["seeds"]
    assert n >= 3 and rec["settings"]["num_workers"] == 0 and rec["settings"]["pairs"] == "native"
    for which in ("gensim", "ours"):
        runs = rec["runs"][which]
        assert [r["seed"] for r in runs] == list(range(1, n + 1))
        for r in runs:
            assert all(-1 <= r[b] <= 1 for b in ("ws353", "men", "simlex999"))
    assert all("pairs=native" in r["system"] and "data workers=0" in r["system"] for r in rec["runs"]["ours"])
    s = bench.seeds_summary(rec["runs"])  # the stored summary is the runs' summary
    for b in bench.BENCHMARKS:
        assert rec["summary"]["ours"][b]["mean"] == pytest.approx(s["ours"][b]["mean"])
        assert rec["summary"]["diff"][b]["lo"] == pytest.approx(s["diff"][b]["lo"])
        assert rec["summary"]["diff"][b]["hi"] == pytest.approx(s["diff"][b]["hi"])


def test_welch_interval_is_scipys(bench):
    import statistics
    from scipy import stats
    a, b = [0.542, 0.530, 0.536, 0.529], [0.552, 0.547, 0.541]
    m, sd = bench.mean_sd(a)
    assert m == pytest.approx(statistics.mean(a)) and sd == pytest.approx(statistics.stdev(a))
    w = bench.welch(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert w["diff"] == pytest.approx(m - statistics.mean(b))
    assert (w["lo"], w["hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    same = bench.welch([0.5, 0.5], [0.5, 0.5])  # no spread: a zero-width interval, not a division by zero
    assert (same["lo"], same["hi"]) == (0.0, 0.0)


def test_render_seeds_rewrites_only_its_block(bench, tmp_path):
    import subprocess
    import sys
    rec = json.loads(SEEDS.read_text())
    rec["runs"]["ours"] = [{**r, "ws353": r["ws353"] - 0.5} for r in rec["runs"]["ours"]]  # a gap far beyond noise
    (tmp_path / "s.json").write_text(json.dumps(rec))
    doc = tmp_path / "skipgram.md"
    head = f"intro\n{bench.BEGIN}\none-run\n{bench.END}\nmid\n"
    doc.write_text(f"{head}{bench.SEEDS_BEGIN}\nold\n{bench.SEEDS_END}\nrest\n")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_skipgram.py"), "--render",
                    str(tmp_path / "s.json"), "--doc", str(doc)], check=True, capture_output=True)
    out = doc.read_text()
    assert out.startswith(head) and out.endswith("rest\n")
    assert "old" not in out and "outside for WS353" in out and "ours - gensim (Welch 95% CI)" in out
