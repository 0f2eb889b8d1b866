"""A tiny synthetic world for `reproduce`: 8 words in two visual topics, a 300-line corpus, a 10-pair benchmark.

    world = make_world(tmp_path / "world")
    summary = run_tiny(world, tmp_path / "out")          # every stage, about 15 s on 2 cores
    statuses(summary) == {"skipgram": "ran", "shard:pics": "ran", ...}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# two visual "topics": animals are reddish blobs, vehicles bluish stripes
ANIMALS = ["cat", "dog", "horse", "cow"]
VEHICLES = ["car", "bus", "truck", "train"]
PAIRS = [("cat", "dog", 9.0), ("horse", "cow", 8.5), ("car", "bus", 8.8), ("truck", "train", 8.0),
         ("cat", "car", 1.0), ("dog", "bus", 1.5), ("cow", "truck", 2.0), ("horse", "train", 2.5),
         ("cat", "horse", 7.5), ("car", "train", 7.0)]


def make_world(root: Path) -> Path:
    """images/<word>/<word><i>.png (3 per word), corpus.txt, bench.txt under `root`."""
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


def tiny_settings(world: Path, out: Path, **over) -> dict:
    """`reproduce` settings of the tiny job writing into `out/ck` and `out/rep`."""
    kw = dict(checkpoints=str(out / "ck"), reports=str(out / "rep"), corpus=[str(world / "corpus.txt")],
              skipgram={"epochs": 1, "dim": 16, "min_count": 1, "compile": False, "progress_bar": False,
                        "relatedness": [str(world / "bench.txt")]},
              sources={"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 2}},
              benchmarks=[str(world / "bench.txt")], bovw_k=4, bovw_max_images=16, n_boot=20,
              batch_size=8, num_workers=0, accelerator="cpu", mmskipgram=[],   # MMSkip-gram: its own test
              jobs=1)   # in-process (monkeypatches reach the stages); test_pipeline_parallel.py runs jobs=2
    kw.update(over)
    return kw


def run_tiny(world: Path, out: Path, **over) -> dict:
    from mmlightning.pipeline.reproduce import reproduce

    return reproduce(**tiny_settings(world, out, **over))


UNCACHED = ("suite", "protocol", "evaluate", "release")   # the stages recomputed every run


def statuses(summary) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in summary["stages"]}


def cached_statuses(summary) -> dict[str, str]:
    return {k: v for k, v in statuses(summary).items() if k not in UNCACHED}


def scores(reports: Path) -> dict:
    """evaluation.json without the input paths (which name the stage folders)."""
    import json

    rep = json.loads((Path(reports) / "evaluation.json").read_text())
    rep["settings"].pop("inputs", None)
    return rep


_FIRST: dict = {}


def first_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(world, out, summary) of one complete tiny run, made once per test session and shared (read only)."""
    if "run" not in _FIRST:
        root = tmp_path_factory.mktemp("tiny-reproduce")
        world = make_world(root / "world")
        _FIRST["run"] = (world, root / "first", run_tiny(world, root / "first"))
    return _FIRST["run"]
