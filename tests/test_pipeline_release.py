"""The skip-gram stage's relatedness callback, the release folder, and n/a bootstrap CIs on a handful of pairs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.evaluation.relatedness import MIN_BOOT_PAIRS, bootstrap_ci, paired_difference, score_cosines
from mmlightning.pipeline.release import write_release
RECORD = ".release-record.json"
from pipeline_world import first_run, make_world


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return first_run(tmp_path_factory)


def test_relatedness_callback_does_not_change_the_vectors(tmp_path):
    from mmlightning.evaluation.callback import RelatednessCallback
    from test_skipgram import run_sg

    world = make_world(tmp_path / "world")
    kw = dict(corpus=str(world / "corpus.txt"), epochs=2, dim=8, min_count=1, num_workers=0, seed=0,
              cache_dir=tmp_path / "cache", progress_bar=False, compile=False)
    plain = run_sg(tmp_path / "plain", **kw)
    scored = run_sg(tmp_path / "scored", callbacks=[RelatednessCallback([str(world / "bench.txt")])], **kw)
    assert plain.read_bytes() == scored.read_bytes()
    metrics = (tmp_path / "scored" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "relatedness/bench" in metrics.splitlines()[0]


def _inputs(first):
    ck = first[1] / "ck"
    extract = next(ck.glob("extract-pics-*"))
    ex = {"aggregates": extract / "aggregates.pt", "mean": extract / "mean.txt", "max": extract / "max.txt"}
    return ex, str(next(ck.glob("skipgram-*/vectors.txt")))


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


SETTINGS = {"backbone": "b", "layer": None}


def test_release_holds_only_this_runs_files(first, tmp_path):
    ex, vectors = _inputs(first)
    rel = tmp_path / "release"
    write_release(rel, vectors, {"pics": ex, "gone": ex}, alpha=0.5, settings=SETTINGS)
    assert (rel / "pics" / "multimodal_alpha0.5.txt").is_file() and (rel / "gone" / "mean.txt").is_file()
    card = write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings=SETTINGS)
    assert _files(rel) == [RECORD, "CARD.json", "CARD.md", "pics/max.txt", "pics/mean.txt",
                           "pics/multimodal_alpha0.7.txt"]
    assert not (rel / "gone").exists()
    assert json.loads((rel / "CARD.json").read_text())["files"] == json.loads(json.dumps(card["files"]))


def test_release_never_deletes_files_it_did_not_write(first, tmp_path):
    ex, vectors = _inputs(first)
    rel = tmp_path / "release"
    write_release(rel, vectors, {"pics": ex}, alpha=0.5, settings=SETTINGS)
    (rel / "notes.md").write_text("my notes")
    (rel / "mythesis").mkdir()
    (rel / "mythesis" / "chapter1.tex").write_text("\\chapter{One}")
    before = {f: (rel / f).read_bytes() for f in _files(rel)}
    with pytest.raises(UserError, match=r"mythesis/chapter1.tex, notes.md .*not written by reproduce") as e:
        write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings=SETTINGS)
    assert "\n" not in str(e.value)
    assert {f: (rel / f).read_bytes() for f in _files(rel)} == before  # nothing written, nothing removed
    (rel / "notes.md").unlink()
    shutil.rmtree(rel / "mythesis")
    (rel / "pics" / "multimodal_alpha0.5.txt").write_text("edited by hand")  # its own file, changed since
    with pytest.raises(UserError, match=r"pics/multimodal_alpha0.5.txt \(changed since"):
        write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings=SETTINGS)
    assert (rel / "pics" / "multimodal_alpha0.5.txt").read_text() == "edited by hand"


def test_a_release_killed_midway_is_not_taken_for_your_files(first, tmp_path):
    ex, vectors = _inputs(first)
    rel = tmp_path / "release"
    write_release(rel, vectors, {"pics": ex}, alpha=0.5, settings=SETTINGS)
    (rel / "pics" / ".multimodal_alpha0.7.txt.0123456789ab.atomic.tmp").write_text("half")  # what a kill leaves
    write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings=SETTINGS)
    assert not any(p.name.endswith(".tmp") for p in rel.rglob("*"))


def test_a_release_of_an_older_version_is_adopted_by_its_card(first, tmp_path):
    """Written before the record existed: its CARD.json names its files, which are its own."""
    ex, vectors = _inputs(first)
    rel = tmp_path / "release"
    write_release(rel, vectors, {"pics": ex}, alpha=0.5, settings=SETTINGS)
    (rel / RECORD).unlink()
    write_release(rel, vectors, {"pics": ex}, alpha=0.7, settings=SETTINGS)
    assert "pics/multimodal_alpha0.5.txt" not in _files(rel) and "pics/multimodal_alpha0.7.txt" in _files(rel)


def test_release_refuses_a_source_name_that_leaves_its_folder(first, tmp_path):
    """Defence in depth behind the config's check: no path built from a source name escapes the release."""
    ex, vectors = _inputs(first)
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
