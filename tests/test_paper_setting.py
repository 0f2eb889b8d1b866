"""The paper's config, as shipped, on tiny stand-ins of the real data layouts (issue 15, "must show").

Only the paths marked FILL IN (and the output folders), the machine's settings (CPU, no kernel compile)
and the sizes are given on the command line; everything else comes from configs/reproduce_paper.yaml.
About 20 s cold and 11 s warm on 2 cores; the test builds the stand-ins, runs cold, warm, and after changing
the checkpoint's weights and adding a BNC file (~1 min on a busy box).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from standins import BNC_SENTENCES, ROOT, bnc_document, build_checkpoint, build_standins, paper_command


def run_paper(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_paper_config_end_to_end_on_real_layout_standins(tmp_path):
    paths = build_standins(tmp_path / "data")
    out = tmp_path / "out"
    cmd = paper_command(paths, out)
    first = run_paper(cmd, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "esp: ESPGame100k layout (originals/ + labels/)" in first.stderr

    reports, release = out / "reports", out / "reports" / "release"
    for name in ("evaluation.json", "evaluation.md", "figure4_alpha.png", "run_summary.json"):
        assert (reports / name).is_file(), name
    assert (release / "CARD.json").is_file()
    for source in ("imagenet", "esp"):
        assert sorted(p.name for p in (release / source).iterdir()) == \
            ["max.txt", "mean.txt", "multimodal_alpha0.5.txt"]

    summary = json.loads((reports / "run_summary.json").read_text())
    assert {s["stage"]: s["status"] for s in summary["stages"]} == {
        "skipgram": "ran", "shard:imagenet": "ran", "extract:imagenet": "ran", "bovw:imagenet": "ran",
        "shard:esp": "ran", "extract:esp": "ran", "bovw:esp": "ran", "suite": "ran", "protocol": "ran",
        "evaluate": "ran", "release": "ran"}

    manifests = {s: json.loads(next((out / "checkpoints").glob(f"shard-{s}-*/manifest.json")).read_text())
                 for s in ("imagenet", "esp")}
    for source, m in manifests.items():
        for bench in ("men", "ws353"):
            assert m["coverage"][bench]["pairs_with_images"] > 0, (source, bench, m["coverage"])
        assert m["skipped"] == [] and m["samples"] > 0  # thumbnails/ is not read
    assert manifests["esp"]["notes"]["layout"] == "ESPGame100k"
    # the ImageNet hierarchy is the shipped words.txt / wordnet.is_a.txt: tabby -> cat, Chihuahua -> dog
    words = manifests["imagenet"]["notes"]["words"]
    assert words["cat"]["synsets"] == ["n02121620"] and words["dog"]["synsets"] == ["n02084071"]
    assert manifests["imagenet"]["word_counts"]["animal"] == 3  # subtree: tabby, tiger, Chihuahua images

    ev = json.loads((reports / "evaluation.json").read_text())
    for bench in ("men", "ws353"):
        rows = ev["table1"][bench]
        for subset in ("relevant:imagenet", "relevant:esp", "relevant:all"):
            assert rows[subset]["visual:imagenet/cnn-mean"]["pairs_used"] > 0, (bench, subset)
        assert rows["full"]["linguistic"]["pairs_used"] > 0.9 * rows["full"]["linguistic"]["pairs_total"]
    card = json.loads((release / "CARD.json").read_text())
    assert card["settings"]["backbone"] == "alexnet1512" and card["settings"]["layer"] == "fc7"

    second = run_paper(cmd, tmp_path)  # warm: every cached stage reused
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((reports / "run_summary.json").read_text())
    assert {s["status"] for s in again["stages"] if s["stage"] not in ("suite", "protocol", "evaluate", "release")} \
        == {"reused"}

    # new weights at the same checkpoint path and one more BNC file: the stages reading them recompute
    build_checkpoint(paths["checkpoint"], seed=1)
    (paths["bnc"] / "A" / "A0" / "A02.xml").write_text(bnc_document("A02", BNC_SENTENCES[::-1]), encoding="utf-8")
    third = run_paper(cmd, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    status = {s["stage"]: s["status"] for s in json.loads((reports / "run_summary.json").read_text())["stages"]}
    assert status == {"skipgram": "ran", "shard:imagenet": "reused", "extract:imagenet": "ran",
                      "bovw:imagenet": "reused", "shard:esp": "reused", "extract:esp": "ran", "bovw:esp": "reused",
                      "suite": "ran", "protocol": "ran", "evaluate": "ran", "release": "ran"}
