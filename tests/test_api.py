"""The public API (`import mmlightning as mm`): the README's Python block runs as printed; records and inputs."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

import mmlightning as mm
from mmlightning.datasets import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def readme_python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has a ```python block"
    return blocks[0]


def test_readme_python_block_runs_as_printed(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    words = sorted(load_benchmark("men").words())[:60]
    mm.save_vectors(mm.as_keyed_vectors({w: rng.normal(size=8) for w in words}), tmp_path / "my_vectors.txt")
    for k, w in enumerate(words[:4]):
        (tmp_path / "my_photos" / w).mkdir(parents=True)
        for i in range(2):
            a = np.full((48, 40, 3), 40 * k + 10 * i, np.uint8)
            Image.fromarray(a).save(tmp_path / "my_photos" / w / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_block(), "README.md", "exec"), {})
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows if r and r[0] in ("men", "ws353")] == ["men", "ws353"]
    grounded = mm.load_vectors(tmp_path / "out" / "grounded.txt")
    assert len(grounded) == 60 and grounded.vector_size == 8 + 1280
    assert sorted(mm.load_vectors(tmp_path / "out" / "visual" / "features" / "mean.txt").index_to_key) == words[:4]


def test_evaluate_records_equal_scipy_on_the_pairs_in_vocabulary():
    bench = load_benchmark("ws353")
    rng = np.random.default_rng(1)
    vocab = sorted(bench.words())[: len(bench.words()) * 2 // 3]
    vecs = {w: rng.normal(size=5) for w in vocab}
    [row] = mm.evaluate(vecs, ["ws353"], n_boot=0)
    used = [(a, b, s) for a, b, s in bench.pairs if a in vecs and b in vecs]
    cos = [vecs[a] @ vecs[b] / np.linalg.norm(vecs[a]) / np.linalg.norm(vecs[b]) for a, b, _ in used]
    assert row["pairs_used"] == len(used) and row["pairs_total"] == len(bench.pairs) == 353
    assert row["rho"] == pytest.approx(spearmanr(cos, [s for *_, s in used])[0], abs=1e-4)  # float32 cosines
    assert row["oov_ratio"] == pytest.approx(1 - len(used) / 353)


def test_inputs_gensim_dict_and_ours_give_one_answer():
    from gensim.models import KeyedVectors as GensimKV

    rng = np.random.default_rng(2)
    words = sorted(load_benchmark("men").words())[:300]
    mat = rng.normal(size=(len(words), 6)).astype(np.float32)
    g = GensimKV(6)
    g.add_vectors(words, mat)
    rows = [mm.evaluate(v, ["men"], n_boot=0)[0]["rho"]
            for v in (g, dict(zip(words, mat)), mm.KeyedVectors(words, mat))]
    assert rows[0] == rows[1] == rows[2] and rows[0] is not None


def test_fuse_is_eq1_on_a_hand_example():
    text = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    visual = {"a": [2.0, 0.0, 0.0]}
    f = mm.fuse(text, visual, alpha=0.25)
    # centred text: a (0.5,-0.5), b (-0.5,0.5) -> L2 -> +-(0.7071, -0.7071); visual centred over the words
    # that have one (only a) is 0 -> L2 of 0 stays 0; b has no visual vector -> zero part
    s = 0.25 / np.sqrt(2)
    np.testing.assert_allclose(f["a"], [s, -s, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(f["b"], [-s, s, 0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("bad, needle", [({}, "empty"), ({"a": [1, 2], "b": [1]}, "different lengths"),
                                         ([1, 2], "cannot read vectors")])
def test_bad_vectors_are_one_line_errors(bad, needle):
    with pytest.raises(mm.UserError, match=needle):
        mm.evaluate(bad, ["men"])


def test_bad_alpha_is_a_user_error():
    with pytest.raises(mm.UserError, match="alpha"):
        mm.fuse({"a": [1.0]}, {"a": [1.0]}, alpha=1.5)


def test_user_error_is_a_value_error_and_a_too_deep_record_is_one(tmp_path):
    from mmlightning.resumable import ResumableOutput

    assert issubclass(mm.UserError, ValueError)
    out = ResumableOutput(tmp_path, {"a": 1}, what="test run")
    out.record_file.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="unreadable"):
        out.begin()
