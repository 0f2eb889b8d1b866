"""Preflight: a bad path or a missing accelerator fails in one line before the first stage runs."""
from __future__ import annotations

import pytest
import torch

from mmlightning.cli import main
from mmlightning.errors import UserError
from mmlightning.pipeline.reproduce import reproduce
from pipeline_world import make_world, tiny_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("preflight") / "world")


def esp_root(tmp_path):
    bad = tmp_path / "esp"
    (bad / "pictures").mkdir(parents=True)  # neither images/ nor labels/
    return {"esp": {"source": "esp", "root": str(bad)}}


CASES = {
    "corpus": (lambda w, t: {"corpus": [str(w / "corpus.txt"), str(t / "bnc" / "missing.xml")]},
               "missing.xml: corpus file not found"),
    "source root": (lambda w, t: {"sources": {"pics": {"source": "folder", "root": str(t / "no-such-images")}}},
                    "sources.pics.root:"),
    "esp root": (lambda w, t: {"sources": esp_root(t)}, "sources.esp:"),
    "checkpoint": (lambda w, t: {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(t / "cnn.ckpt")}},
                   "backbone_kwargs.checkpoint:"),
    "benchmark": (lambda w, t: {"benchmarks": [str(w / "bench.txt"), "ws999"]}, "ws999"),
    "words": (lambda w, t: {"sources": {"pics": {"source": "folder", "root": str(w / "images"),
                                                 "words": str(t / "words.txt")}}}, "sources.pics.words:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_in_one_line_before_any_stage(case, world, tmp_path):
    over, message = CASES[case]
    with pytest.raises(UserError) as e:
        reproduce(**tiny_settings(world, tmp_path, **over(world, tmp_path)))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ck").exists() and not (tmp_path / "rep").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_without_cuda_fails_in_one_line_through_the_cli(world, tmp_path, capsys):
    s = tiny_settings(world, tmp_path)
    rc = main(["reproduce", "--checkpoints", s["checkpoints"], "--reports", s["reports"],
               "--corpus", str(world / "corpus.txt"), "--benchmarks", f"[{world / 'bench.txt'}]",
               "--sources", '{"pics": {"source": "folder", "root": "%s"}}' % (world / "images"),
               "--accelerator", "gpu", "--devices", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no CUDA device is available" in err
    assert not (tmp_path / "ck").exists()
