"""The `reproduce` main job on a tiny synthetic world: reports, release, reuse, --force, changed settings.

One full run (module fixture) is shared; every other scenario copies its finished checkpoints folder
into its own tmp_path, so the scenarios are independent and each recomputes only what it must.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmlightning.cli import main
from mmlightning.errors import UserError
from mmlightning.pipeline.stages import dependants, force_closure, plan
from mmlightning.pipeline.table import STAGES
from pipeline_world import ANIMALS, PAIRS, VEHICLES, cached_statuses, first_run, run_tiny, scores, statuses
from cli_helpers import assert_user_error, random_rows, run, vectors_text


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """(world, out, summary) of one complete tiny run (shared by the pipeline tests)."""
    return first_run(tmp_path_factory)


def copy_of(first, tmp_path) -> Path:
    """A private copy of the first run's checkpoints: `tmp_path/ck`."""
    shutil.copytree(first[1] / "ck", tmp_path / "ck", symlinks=True)  # the latest links stay links (as cp -r)
    return tmp_path


def test_end_to_end_reports_release_and_relatedness_curve(first):
    world, out, summary = first
    assert statuses(summary) == {"skipgram": "ran", "shard:pics": "ran", "extract:pics": "ran", "bovw:pics": "ran",
                                 "suite": "ran", "protocol": "ran", "evaluate": "ran", "release": "ran"}
    rep = json.loads((out / "rep" / "evaluation.json").read_text())
    cells = rep["table1"]["bench"]["full"]
    assert set(cells) >= {"linguistic", "visual:pics/cnn-mean", "visual:pics/cnn-max", "visual:pics/bovw",
                          "multimodal:pics/cnn-mean"}
    assert cells["visual:pics/cnn-mean"]["pairs_used"] == len(PAIRS)  # every word has 2 images
    assert (out / "rep" / "figure4_alpha.png").stat().st_size > 0
    card = json.loads((out / "rep" / "release" / "CARD.json").read_text())
    from gensim.models import KeyedVectors as GKV

    mm = GKV.load_word2vec_format(card["files"]["pics"]["multimodal"])
    assert set(mm.index_to_key) == set(ANIMALS + VEHICLES)
    assert mm.vector_size == 16 + 1280
    mean = GKV.load_word2vec_format(card["files"]["pics"]["visual_mean"])
    assert len(mean) == 8 and card["files"]["pics"]["labels_with_images"] == 8
    card_md = (out / "rep" / "release" / "CARD.md").read_text()
    assert "| pics | folder, N=2 | efficientnet | 8 | 16 | 8 | 1280 |" in card_md
    # the skip-gram stage ran the relatedness callback: one score per epoch in its metrics.csv
    metrics = next((out / "ck").glob("skipgram-*/logs/version_0/metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    assert "relatedness/bench" in rows[0] and "relatedness/bench_pairs_used" in rows[0]
    scored = [r for r in rows if r["relatedness/bench"]]
    assert len(scored) == 1 and float(scored[0]["relatedness/bench_pairs_used"]) == len(PAIRS)


def test_rerun_reuses_every_stage_and_gives_the_same_numbers(first, tmp_path):
    world, out, _ = first
    again = run_tiny(world, copy_of(first, tmp_path))
    assert set(cached_statuses(again).values()) == {"reused"}
    assert scores(tmp_path / "rep") == scores(out / "rep")  # same inputs, same seed: same numbers


def test_force_recomputes_the_stage_and_its_dependants_only(first, tmp_path):
    world, out, _ = first
    forced = run_tiny(world, copy_of(first, tmp_path), force=["bovw"])
    assert cached_statuses(forced) == {"skipgram": "reused", "shard:pics": "reused", "extract:pics": "reused",
                                       "bovw:pics": "ran"}
    assert scores(tmp_path / "rep")["table1"] == scores(out / "rep")["table1"]  # recomputed bit for bit


def test_files_of_yours_in_the_release_folder_stop_the_run_before_any_stage(first, tmp_path):
    world, out, _ = first
    copy_of(first, tmp_path)
    shutil.copytree(out / "rep", tmp_path / "rep")
    (tmp_path / "rep" / "release" / "notes.md").write_text("my notes")
    done = next((tmp_path / "ck").glob("skipgram-*/record.json"))
    ck_before = (sorted(p.name for p in (tmp_path / "ck").iterdir()), done.stat().st_mtime_ns)
    with pytest.raises(UserError, match=r"release: notes.md .*not written by reproduce"):
        run_tiny(world, tmp_path, force=["skipgram"])
    assert (tmp_path / "rep" / "release" / "notes.md").read_text() == "my notes"
    assert (sorted(p.name for p in (tmp_path / "ck").iterdir()), done.stat().st_mtime_ns) == ck_before  # no stage ran


def test_a_second_run_on_the_same_checkpoints_stops_before_its_first_stage(first, tmp_path):
    from mmlightning.folder_lock import FolderLock

    with FolderLock(tmp_path / "ck", "reproduce (the first run)"):
        with pytest.raises(UserError, match=r"ck/.lock: reproduce \(the first run\) .*is writing this folder") as e:
            run_tiny(first[0], tmp_path)
    assert "\n" not in str(e.value)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == [".lock"]  # no stage began


@pytest.mark.slow  # recomputes shard, extract and bovw (~11 s on 2 cores)
def test_changed_setting_recomputes_its_stage_and_the_stages_reading_it(first, tmp_path):
    world, _, _ = first
    changed = run_tiny(world, copy_of(first, tmp_path),
                       sources={"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 1}})
    assert cached_statuses(changed) == {"skipgram": "reused", "shard:pics": "ran", "extract:pics": "ran",
                                        "bovw:pics": "ran"}


@pytest.mark.slow  # re-extracts with another scheme (~13 s on 2 cores)
def test_preprocess_scheme_re_extracts_the_cnn_features_only(first, tmp_path):
    world, _, _ = first
    fit = run_tiny(world, copy_of(first, tmp_path), sources={"pics": {
        "source": "folder", "root": str(world / "images"), "n_per_word": 2, "preprocess": "efficientnet_fit"}})
    assert cached_statuses(fit) == {"skipgram": "reused", "shard:pics": "reused", "extract:pics": "ran",
                                    "bovw:pics": "reused"}
    card = json.loads((tmp_path / "rep" / "release" / "CARD.json").read_text())
    assert card["files"]["pics"]["preprocess"] == "efficientnet_fit"
    means = [(json.loads((d / "record.json").read_text())["settings"]["settings"], (d / "mean.txt").read_text())
             for d in (tmp_path / "ck").glob("extract-pics-*")]
    assert sorted(s.get("preprocess", "") for s, _ in means) == ["", "efficientnet_fit"]  # both cached
    assert means[0][1] != means[1][1]


def test_force_closure_and_dependants_come_from_the_table(first, tmp_path):
    assert dependants(STAGES, ["shard"]) == {"shard", "extract", "bovw", "mmskipgram", "suite", "protocol",
                                             "evaluate", "release"}
    assert dependants(STAGES, ["skipgram"]) == {"skipgram", "suite", "protocol", "evaluate", "release"}
    assert dependants(STAGES, ["mmskipgram"]) == {"mmskipgram", "evaluate"}
    assert dependants(STAGES, ["bovw"]) == {"bovw", "suite", "evaluate"}
    from mmlightning.pipeline.config import ReproduceConfig
    from mmlightning.pipeline.fingerprint import Fingerprints
    from pipeline_world import tiny_settings

    cfg = ReproduceConfig(**tiny_settings(first[0], tmp_path, sources={
        "a": {"source": "folder", "root": str(first[0] / "images")},
        "b": {"source": "folder", "root": str(first[0] / "images")}}))
    planned = plan(cfg, STAGES, tmp_path / "ck", Fingerprints())
    assert [p.label for p in planned] == ["skipgram", "shard:a", "extract:a", "bovw:a", "shard:b", "extract:b",
                                          "bovw:b", "suite", "protocol", "evaluate", "release"]
    assert force_closure(planned, ["shard"]) == {"shard:a", "extract:a", "bovw:a", "shard:b", "extract:b",
                                                 "bovw:b", "suite", "protocol", "evaluate", "release"}
    assert force_closure(planned, ["extract"]) == {"extract:a", "extract:b", "suite", "protocol", "evaluate",
                                                   "release"}


def test_cli_reports_bad_settings_in_one_line(tmp_path, capsys):
    for args, msg in [(["--sources", '{"x": {"n_per_word": 3}}'], "sources.x"),
                      (["--sources", '{"x": {"source": "tuxpaint", "preprocess": "nope"}}'],
                       "unknown preprocessing scheme 'nope'"),
                      (["--skipgram.epochs", "0"], "skipgram.epochs"),
                      (["--alpha", "1.5"], "alpha"),
                      (["--force", "[nope]"], "unknown stage(s) nope"),
                      (["--sources", '{"../../esc": {"source": "folder", "root": "x"}}'], "not a plain name")]:
        rc = main(["reproduce", "--checkpoints", str(tmp_path / "ck"), *args])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and msg in err, (args, err)
    assert not any(tmp_path.iterdir())  # refused before any stage ran


def test_latest_links_name_each_stage_and_the_run_says_where_things_are(first, tmp_path, capsys):
    world, out, summary = first
    ck = out / "ck"
    for stage in ("skipgram", "shard-pics", "extract-pics", "bovw-pics"):
        link = ck / "latest" / stage
        assert link.is_symlink() and not Path(link.readlink()).is_absolute()
        assert link.resolve() == next(ck.glob(f"{stage}-*")).resolve()
    assert (ck / "latest" / "skipgram" / "vectors.txt").is_file() and (ck / "latest" / "extract-pics" / "mean.txt").is_file()
    assert sorted(p.name for p in ck.iterdir() if p.is_symlink()) == []   # the single commands' names stay free
    # a rerun from a copy elsewhere keeps relative links valid and prints where the outputs are
    work = copy_of(first, tmp_path)
    (work / "ck" / "latest" / "skipgram").unlink()
    (work / "ck" / "latest" / "skipgram").mkdir()          # a user's own folder under the link's name is left alone
    capsys.readouterr()
    run_tiny(world, work)
    printed = capsys.readouterr().out
    assert (work / "ck" / "latest" / "skipgram").is_dir() and not (work / "ck" / "latest" / "skipgram").is_symlink()
    assert (work / "ck" / "latest" / "extract-pics").resolve().parent == (work / "ck").resolve()
    tail = printed[printed.index("reproduce: done in"):].splitlines()
    assert [line.split()[0] for line in tail[1:]] == ["visual", "release", "report"]  # "skipgram" is the user's folder
    assert str(work / "ck" / "latest" / "extract-pics" / "mean.txt") in tail[1] and str(work / "rep" / "release") in tail[2]


# ---------------------------------------------------------------- bad input through the CLI (issue 11)
# 2. reproduce --checkpoints <folder elsewhere> reuses that folder's outputs, not ./checkpoints of the cwd.
def reproduce_config(tmp_path: Path, world: Path, backbone: dict, checkpoints: str, reports: str) -> Path:
    cfg = {"checkpoints": checkpoints, "reports": reports, "corpus": [str(world / "corpus.txt")],
           "skipgram": {"epochs": 1, "dim": 8, "min_count": 1, "compile": False, "progress_bar": False},
           "sources": {"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 1}},
           "benchmarks": [str(world / "bench.txt")], "bovw": False, "n_boot": 0, "batch_size": 4,
           "accelerator": "cpu", **backbone}
    path = tmp_path / f"reproduce-{len(list(tmp_path.glob('reproduce-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_item02_reproduce_from_another_folder_reuses_the_given_checkpoints(tmp_path, world, backbone, capsys,
                                                                          monkeypatch):
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    monkeypatch.chdir(first)
    code, out, err = run(["reproduce", "--config", reproduce_config(tmp_path, world, backbone, "checkpoints", "rep")],
                         capsys)
    assert code == 0, err[-3000:]
    ref = json.loads((first / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    # another folder whose ./checkpoints holds a skip-gram stage of the same key, with other vectors
    sg = next((first / "checkpoints").glob("skipgram-*"))
    fake = other / "checkpoints" / sg.name
    fake.mkdir(parents=True)
    (fake / "vectors.txt").write_bytes(vectors_text(random_rows(["cat", "dog"], d=8, seed=5)))
    monkeypatch.chdir(other)
    code, out, err = run(["reproduce", "--config",
                          reproduce_config(tmp_path, world, backbone, str(first / "checkpoints"), "rep")], capsys)
    assert code == 0, err[-3000:]
    got = json.loads((other / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert (got["pairs_used"], got["rho"]) == (ref["pairs_used"], ref["rho"])


def test_item10_reproduce_checkpoints_under_a_file(tmp_path, world, backbone, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = reproduce_config(tmp_path, world, backbone, str(blocker / "ck"), str(tmp_path / "rep"))
    code, _, err = run(["reproduce", "--config", cfg], capsys)
    assert_user_error(code, err, "reproduce", str(blocker))


def test_reproduce_unknown_force_stage(tmp_path, capsys):
    code, _, err = run(["reproduce", "--checkpoints", tmp_path / "ck", "--force", "[nope]"], capsys)
    assert_user_error(code, err, "reproduce", "nope")
    assert not (tmp_path / "ck").exists()


def test_reproduce_source_without_kind(tmp_path, capsys):
    code, _, err = run(["reproduce", "--checkpoints", tmp_path / "ck", "--sources", '{"x": {"n_per_word": 3}}'],
                       capsys)
    assert_user_error(code, err, "reproduce", "sources.x")


def test_the_skipgram_stage_folder_holds_the_stages_record_only(first):
    stage = next((first[1] / "ck").glob("skipgram-*"))
    assert sorted(p.name for p in stage.glob("*.json")) == ["record.json"]
    assert json.loads((stage / "record.json").read_text())["state"] == "done"


def test_the_suite_scores_every_shipped_set_apart_from_table1(first):
    from mmlightning.datasets import expand_names

    rep = json.loads((first[1] / "rep" / "evaluation.json").read_text())
    assert list(rep["table1"]) == ["bench"] and set(rep["alpha_sweep"]) == {"alphas", "bench"}  # the paper's part
    suite = rep["suite"]
    assert set(suite["table1"]) | set(suite["categorisation"]) == set(expand_names(["all"]))
    assert all(set(cells) == {"full"} for cells in suite["table1"].values())
    assert {"linguistic", "multimodal:pics/cnn-mean"} <= set(suite["categorisation"]["bless"])
    md = (first[1] / "rep" / "evaluation.md").read_text()
    assert "Every set x every system" in md and "Concept categorisation" in md


def test_mmskipgram_stage_trains_each_variant_on_the_mean_visual_vectors(first, tmp_path):
    from mmlightning.vectors import load_vectors

    world = first[0]
    work = copy_of(first, tmp_path)
    summary = run_tiny(world, work, mmskipgram=["A", "B"])
    assert cached_statuses(summary) == {"skipgram": "reused", "shard:pics": "reused", "extract:pics": "reused",
                                        "bovw:pics": "reused", "mmskipgram:A": "ran", "mmskipgram:B": "ran"}
    text = load_vectors(next((work / "ck").glob("skipgram-*")) / "vectors.txt")
    for v in ("A", "B"):   # one stage per variant (they can train at once)
        stage = next((work / "ck").glob(f"mmskipgram-{v}-*"))
        visual = load_vectors(stage / "visual_mean.txt")
        assert len(visual) == 8 and np.allclose(np.linalg.norm(visual.vectors, axis=1), 1.0, atol=1e-5)
        mm = load_vectors(stage / f"mmskipgram-{v}" / "vectors.txt")
        assert mm.index_to_key == text.index_to_key and not np.allclose(mm.vectors, text.vectors)
    rep = json.loads((work / "rep" / "evaluation.json").read_text())
    assert "skipped" in rep["grounding"]   # the toy vocabulary has too few pictured MEN words: said, not hidden
    again = run_tiny(world, work, mmskipgram=["A", "B"])
    assert statuses(again)["mmskipgram:A"] == statuses(again)["mmskipgram:B"] == "reused"
