"""reports/index.html: tables, Figure 4, Table 2 with image strips read from the shards; a page per source.

The slow test renders the tiny world's report and opens it in headless Chromium (Debian `chromium`):
no console error, the images are in the DOM, and a screenshot is taken (into the test's tmp_path: the suite never
rewrites the tracked docs/figures/report_screenshot.png; to refresh that figure, run the test with
MMLIGHTNING_UPDATE_SCREENSHOT=1).
"""
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmlightning.datasets import Benchmark
from mmlightning.evaluation.html import image_index, markdown_to_html, write_html_report
from mmlightning.evaluation.systems import evaluate_systems
from mmlightning.features.aggregates import Aggregate, save_aggregates
from mmlightning.vectors import KeyedVectors

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["cat", "dog", "car", "bus", "sun", "moon"]


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


def _shards(folder: Path) -> Path:
    """One tar of 2 images per word except 'moon', plus a corrupt image; and its manifest.json."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / "shard-000000.tar", "w") as tf:
        items = [(f"{i:04d}_{w}", w, _png((40 * i % 255, 80, 120))) for i, w in enumerate(WORDS[:5] * 2)]
        items.append(("9999_bad", "cat", b"not a png"))
        for key, w, data in items:
            for name, blob in ((f"{key}.png", data), (f"{key}.json", json.dumps({"words": [w.upper()]}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    (folder / "manifest.json").write_text(json.dumps({"shards": [{"name": "shard-000000.tar"}]}))
    return folder / "manifest.json"


def _result():
    rng = np.random.default_rng(0)
    pairs = tuple((a, b, float(rng.random())) for i, a in enumerate(WORDS) for b in WORDS[i + 1:])
    ling = KeyedVectors(WORDS, rng.normal(size=(6, 5)))
    vis = KeyedVectors(WORDS[:5], rng.normal(size=(5, 3)))
    return evaluate_systems(ling, {"pics/cnn-mean": vis}, [Benchmark("toy", pairs)], n_boot=0)


def test_index_and_source_pages(tmp_path):
    manifest = _shards(tmp_path / "shards")
    idx = image_index(manifest, ["Cat", "moon"], per_word=6)
    assert sorted(idx) == ["cat"] and len(idx["cat"]) == 3          # words matched case-insensitively
    agg = Aggregate(2)
    agg.update(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), [["cat"], ["cat"], ["dog"]])
    save_aggregates(tmp_path / "aggregates.pt", agg)
    out = tmp_path / "rep"
    out.mkdir()
    paths = write_html_report(_result(), out, {"pics": str(manifest)}, {"pics": str(tmp_path / "aggregates.pt")})
    page = paths["index"].read_text()
    assert "Table 1" in page and "Table 2" in page and "<table>" in page and 'href="source-pics.html"' in page
    assert page.count("data:image/jpeg;base64,") >= 4                 # strips of Table 2's words
    assert "no images" in page                                         # moon has none
    src = paths["source:pics"].read_text()
    assert "<td>cat</td><td>2</td><td>1.000</td>" in src and "<td>dog</td><td>1</td><td>n/a</td>" in src
    assert src.count("<img") == 10                                     # 5 words x 2 images, the bad one skipped


def test_markdown_subset():
    h = markdown_to_html("### T\n\n| a | b |\n|---|---|\n| **x** | `y` |\n\n- one\n- two\n\ntext <b>")
    assert "<h3>T</h3>" in h and "<th>a</th>" in h and "<td><b>x</b></td>" in h and "<code>y</code>" in h
    assert "<ul><li>one</li><li>two</li></ul>" in h and "text &lt;b&gt;" in h


@pytest.mark.slow
def test_tiny_world_report_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from pipeline_world import make_world, run_tiny

    world = make_world(tmp_path / "world")
    run_tiny(world, tmp_path / "out")
    index = tmp_path / "out" / "rep" / "index.html"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(flags + ["--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('src="data:image/jpeg;base64,') >= 8 and "Figure 4" in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                                  "--window-size=1200,2000", index.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    small = tmp_path / "report_screenshot.png"
    Image.open(shot).convert("RGB").quantize(colors=128).save(small, optimize=True)
    assert 0 < small.stat().st_size < 300_000
    if os.environ.get("MMLIGHTNING_UPDATE_SCREENSHOT") == "1":  # on request only: the figure of the docs
        shutil.copyfile(small, ROOT / "docs" / "figures" / "report_screenshot.png")
