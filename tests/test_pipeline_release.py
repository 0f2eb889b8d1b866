"""The skip-gram stage's relatedness callback, the release folder, and n/a bootstrap CIs on a handful of pairs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.evaluation.relatedness import MIN_BOOT_PAIRS, bootstrap_ci, paired_difference, score_cosines
from mmlightning.pipeline.release import write_release
from pipeline_world import first_run, make_world


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return first_run(tmp_path_factory)


def test_relatedness_callback_does_not_change_the_vectors(tmp_path):
    from mmlightning.evaluation.callback import RelatednessCallback
    from mmlightning.text.skipgram import train_skipgram

    world = make_world(tmp_path / "world")
    kw = dict(corpus=str(world / "corpus.txt"), epochs=2, dim=8, min_count=1, num_workers=0, seed=0,
              cache_dir=tmp_path / "cache", progress_bar=False, compile=False)
    plain = train_skipgram(tmp_path / "plain", **kw)
    scored = train_skipgram(tmp_path / "scored", callbacks=[RelatednessCallback([str(world / "bench.txt")])], **kw)
    assert plain.read_bytes() == scored.read_bytes()
    metrics = (tmp_path / "scored" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "relatedness/bench" in metrics.splitlines()[0]


def test_release_holds_only_this_runs_files(first, tmp_path):
    world, out, summary = first
    ck = out / "ck"
    extract = next(ck.glob("extract-pics-*"))
    ex = {"aggregates": extract / "aggregates.pt", "mean": extract / "mean.txt", "max": extract / "max.txt"}
    vectors = str(next(ck.glob("skipgram-*/vectors.txt")))
    rel = tmp_path / "release"
    write_release(rel, vectors, {"pics": ex, "gone": ex}, alpha=0.5, settings={"backbone": "b", "layer": None})
    assert (rel / "pics" / "multimodal_alpha0.5.txt").is_file() and (rel / "gone" / "mean.txt").is_file()
    (rel / "notes.txt").write_text("left by hand")
    card = write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings={"backbone": "b", "layer": None})
    files = sorted(p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file())
    assert files == ["CARD.json", "CARD.md", "pics/max.txt", "pics/mean.txt", "pics/multimodal_alpha0.7.txt"]
    assert not (rel / "gone").exists()
    assert json.loads((rel / "CARD.json").read_text())["files"] == json.loads(json.dumps(card["files"]))


def test_release_refuses_a_source_name_that_leaves_its_folder(first, tmp_path):
    """Defence in depth behind the config's check: no path built from a source name escapes the release."""
    world, out, summary = first
    ck = out / "ck"
    extract = next(ck.glob("extract-pics-*"))
    ex = {"aggregates": extract / "aggregates.pt", "mean": extract / "mean.txt", "max": extract / "max.txt"}
    vectors = str(next(ck.glob("skipgram-*/vectors.txt")))
    with pytest.raises(UserError, match="not a plain name"):
        write_release(tmp_path / "rep" / "release", vectors, {"../../esc": ex}, alpha=0.5, settings={})
    assert not (tmp_path / "esc").exists() and not list(tmp_path.rglob("mean.txt"))


def test_fewer_than_ten_pairs_give_no_bootstrap_ci():
    rng = np.random.default_rng(0)
    gold, cos = rng.random(MIN_BOOT_PAIRS - 1), rng.random(MIN_BOOT_PAIRS - 1)
    assert bootstrap_ci(gold, cos, n_boot=100) is None
    assert bootstrap_ci(np.r_[gold, 0.5], np.r_[cos, 0.5], n_boot=100) is not None
    used = np.ones(len(gold), dtype=bool)
    a = score_cosines("b", gold, cos, used, n_boot=100)
    b = score_cosines("b", gold, rng.random(len(gold)), used, n_boot=100)
    assert a.rho is not None and a.ci95 is None
    d = paired_difference(a, b, n_boot=100)
    assert d.diff is not None and d.ci95 is None and d.pairs == MIN_BOOT_PAIRS - 1
