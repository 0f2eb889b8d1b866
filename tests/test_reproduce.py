"""The `reproduce` main job on a tiny synthetic world: stage caching, --force, reports and the release."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlightning.cli import main
from mmlightning.errors import UserError
from mmlightning.pipeline.reproduce import expand_force, reproduce

# two visual "topics": animals are reddish blobs, vehicles bluish stripes
ANIMALS = ["cat", "dog", "horse", "cow"]
VEHICLES = ["car", "bus", "truck", "train"]
PAIRS = [("cat", "dog", 9.0), ("horse", "cow", 8.5), ("car", "bus", 8.8), ("truck", "train", 8.0),
         ("cat", "car", 1.0), ("dog", "bus", 1.5), ("cow", "truck", 2.0), ("horse", "train", 2.5),
         ("cat", "horse", 7.5), ("car", "train", 7.0)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    images = root / "images"
    for w in ANIMALS + VEHICLES:
        (images / w).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 60, (64, 80, 3), dtype=np.uint8)
            if w in ANIMALS:
                a[16:48, 20:60, 0] = 220
            else:
                a[::8, :, 2] = 240
            Image.fromarray(a).save(images / w / f"{w}{i}.png")
    lines = []
    for _ in range(300):
        topic = ANIMALS if rng.random() < 0.5 else VEHICLES
        lines.append(" ".join(rng.choice(topic, 12)) + " the and of")
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    (root / "bench.txt").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return root


def run(world: Path, out: Path, **over):
    kw = dict(checkpoints=str(out / "ck"), reports=str(out / "rep"), corpus=[str(world / "corpus.txt")],
              skipgram={"epochs": 1, "dim": 16, "min_count": 1, "compile": False, "progress_bar": False},
              sources={"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 2}},
              benchmarks=[str(world / "bench.txt")], bovw_k=4, bovw_max_images=16, n_boot=20,
              batch_size=8, num_workers=0, accelerator="cpu")
    kw.update(over)
    return reproduce(**kw)


def statuses(summary) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in summary["stages"]}


def test_end_to_end_then_everything_reused_then_force_and_changed_setting(world, tmp_path):
    first = run(world, tmp_path)
    st = statuses(first)
    assert st == {"skipgram": "ran", "shard:pics": "ran", "extract:pics": "ran", "bovw:pics": "ran",
                  "evaluate": "ran", "release": "ran"}
    rep = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    cells = rep["table1"]["bench"]["full"]
    assert set(cells) >= {"linguistic", "visual:pics/cnn-mean", "visual:pics/cnn-max", "visual:pics/bovw",
                          "multimodal:pics/cnn-mean"}
    assert cells["visual:pics/cnn-mean"]["pairs_used"] == len(PAIRS)  # every word has 2 images
    assert (tmp_path / "rep" / "figure4_alpha.png").stat().st_size > 0
    card = json.loads((tmp_path / "rep" / "release" / "CARD.json").read_text())
    from gensim.models import KeyedVectors as GKV
    mm = GKV.load_word2vec_format(card["files"]["pics"]["multimodal"])
    assert set(mm.index_to_key) == set(ANIMALS + VEHICLES)
    assert mm.vector_size == 16 + 1280
    mean = GKV.load_word2vec_format(card["files"]["pics"]["visual_mean"])
    assert len(mean) == 8 and card["files"]["pics"]["labels_with_images"] == 8
    card_md = (tmp_path / "rep" / "release" / "CARD.md").read_text()
    assert "| pics | folder, N=2 | efficientnet | 8 | 16 | 8 | 1280 |" in card_md

    second = run(world, tmp_path)
    assert {k: v for k, v in statuses(second).items() if k not in ("evaluate", "release")} == {
        "skipgram": "reused", "shard:pics": "reused", "extract:pics": "reused", "bovw:pics": "reused"}
    rep2 = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert rep2["table1"] == rep["table1"]  # same inputs, same seed: same numbers

    forced = run(world, tmp_path, force=["bovw"])
    st = statuses(forced)
    assert st["bovw:pics"] == "ran" and st["extract:pics"] == "reused" and st["skipgram"] == "reused"

    changed = run(world, tmp_path, sources={"pics": {"source": "folder", "root": str(world / "images"),
                                                     "n_per_word": 1}})
    st = statuses(changed)
    assert st["skipgram"] == "reused"
    assert st["shard:pics"] == st["extract:pics"] == st["bovw:pics"] == "ran"

    # a per-source preprocessing scheme re-extracts the CNN features only, and is recorded
    fit = run(world, tmp_path, sources={"pics": {"source": "folder", "root": str(world / "images"),
                                                 "n_per_word": 1, "preprocess": "efficientnet_fit"}})
    st = statuses(fit)
    assert st["shard:pics"] == st["bovw:pics"] == "reused" and st["extract:pics"] == "ran"
    card = json.loads((tmp_path / "rep" / "release" / "CARD.json").read_text())
    assert card["files"]["pics"]["preprocess"] == "efficientnet_fit"
    stages = [json.loads(m.read_text()) for m in (tmp_path / "ck").glob("extract-pics-*/stage.json")]
    fit_stage = next(s for s in stages if s["settings"].get("preprocess") == "efficientnet_fit")
    crop_stage = next(s for s in stages if s["settings"]["shards"] == fit_stage["settings"]["shards"]
                      and "preprocess" not in s["settings"])  # same shards, backbone's own scheme: still cached
    assert Path(fit_stage["outputs"]["mean"]).read_text() != Path(crop_stage["outputs"]["mean"]).read_text()


def test_force_expands_to_dependants_and_rejects_unknown_stages():
    assert expand_force(["shard"]) == {"shard", "extract", "bovw", "evaluate", "release"}
    assert expand_force(["skipgram"]) == {"skipgram", "evaluate", "release"}
    with pytest.raises(UserError, match="unknown stage"):
        expand_force(["nope"])


def test_cli_reports_bad_settings_in_one_line(tmp_path, capsys):
    rc = main(["reproduce", "--checkpoints", str(tmp_path), "--sources", '{"x": {"n_per_word": 3}}'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "sources.x" in err
    rc = main(["reproduce", "--checkpoints", str(tmp_path),
               "--sources", '{"x": {"source": "tuxpaint", "preprocess": "nope"}}'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "unknown preprocessing scheme 'nope'" in err
    assert not any(tmp_path.iterdir())  # refused before any stage ran
