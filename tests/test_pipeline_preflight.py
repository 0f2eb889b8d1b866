"""Preflight: a bad path or a missing accelerator fails in one line before the first stage runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmlightning.cli import main
from mmlightning.errors import UserError
from mmlightning.pipeline.reproduce import reproduce
from pipeline_world import make_world, tiny_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("preflight") / "world")


def esp_root(tmp_path):
    bad = tmp_path / "esp"
    (bad / "pictures").mkdir(parents=True)  # neither images/ nor labels/
    return {"esp": {"source": "esp", "root": str(bad)}}


def imagenet_root(tmp_path, *, synsets=True, hierarchy=("words.txt",)):
    root = tmp_path / "imagenet"
    (root / "train" / ("n02084071" if synsets else "dogs")).mkdir(parents=True)
    for name in hierarchy:
        (root / name).write_text("n02084071\tdog\n" if name == "words.txt" else "n00001740 n02084071\n")
    return {"imagenet": {"source": "imagenet", "root": str(root)}}


def bad_checkpoint(tmp_path, content: bytes):
    path = tmp_path / "cnn.ckpt"
    path.write_bytes(content)
    return {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(path)}}


def foreign_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"net.fc.weight": torch.zeros(2, 2)}, "hyper_parameters": {}}, path)
    return {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(path)}}


def empty_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    return {"sources": {"pics": {"source": "folder", "root": str(tmp_path / "pics")}}}


CASES = {
    "corpus": (lambda w, t: {"corpus": [str(w / "corpus.txt"), str(t / "bnc" / "missing.xml")]},
               "missing.xml: corpus file not found"),
    "source root": (lambda w, t: {"sources": {"pics": {"source": "folder", "root": str(t / "no-such-images")}}},
                    "sources.pics.root:"),
    "esp root": (lambda w, t: {"sources": esp_root(t)}, "sources.esp:"),
    "checkpoint": (lambda w, t: {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(t / "cnn.ckpt")}},
                   "backbone_kwargs.checkpoint:"),
    "corpus placeholder": (lambda w, t: {"corpus": ["/path/to/text8", str(w / "corpus.txt")]},
                           "corpus[0]: /path/to/text8 is the config's FILL IN placeholder; replace it with the path "
                           "of text8 (http://mattmahoney.net/dc/text8.zip"),
    "text8 missing": (lambda w, t: {"corpus": [str(t / "data" / "text8")]},
                      f"text8 not found; download http://mattmahoney.net/dc/text8.zip, unzip it and put the file"),
    "imagenet placeholder": (lambda w, t: {"sources": {"imagenet": {"source": "imagenet", "root": "/path/to/imagenet"}}},
                             "sources.imagenet.root: /path/to/imagenet is the config's FILL IN placeholder"),
    "imagenet without synsets": (lambda w, t: {"sources": imagenet_root(t, synsets=False)},
                                 "no <wnid>/ folder or <wnid>.tar archive in it"),
    "imagenet half hierarchy": (lambda w, t: {"sources": imagenet_root(t)}, "wordnet.is_a.txt: no such file"),
    "folder without words": (lambda w, t: empty_folder(t), "pics: no <word>/ sub-folder in it"),
    "checkpoint not a checkpoint": (lambda w, t: bad_checkpoint(t, b"not a checkpoint\n"),
                                    "cnn.ckpt: not a readable alexnet1512 checkpoint"),
    "checkpoint of another net": (lambda w, t: foreign_checkpoint(t), "other.ckpt: does not fit AlexNet1512"),
    "devices beyond the cores": (lambda w, t: {"accelerator": "cpu", "devices": 4096},
                                 "devices: 4096 asked for, but accelerator: cpu runs on the CPU here"),
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


def test_a_good_checkpoint_passes_and_a_bad_layer_fails_before_any_stage(world, tmp_path):
    from standins import build_checkpoint

    ckpt = build_checkpoint(tmp_path / "cnn1512" / "last.ckpt")
    from mmlightning.pipeline.config import ReproduceConfig
    from mmlightning.pipeline.preflight import check_checkpoints

    good = ReproduceConfig(**tiny_settings(world, tmp_path, backbone="alexnet1512", layer="fc7",
                                           backbone_kwargs={"checkpoint": str(ckpt)}))
    check_checkpoints(good)
    with pytest.raises(UserError) as e:
        reproduce(**tiny_settings(world, tmp_path, backbone="alexnet1512", layer="fc9",
                                  backbone_kwargs={"checkpoint": str(ckpt)}))
    assert "has no layer 'fc9'" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ck").exists()


def test_more_gpus_than_there_are_fails_in_one_line(monkeypatch):
    from mmlightning.pipeline.preflight import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for accelerator in ("gpu", "auto"):
        with pytest.raises(UserError, match="devices: 4 asked for, but this machine has 2 CUDA device"):
            check_accelerator(accelerator, 4)
    check_accelerator("gpu", 2)
    check_accelerator("auto", "auto")


def test_the_shipped_paper_config_names_its_first_fill_in_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["reproduce", "--config", str(CONFIGS / "reproduce_paper.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "corpus[0]: /path/to/text8 is the config's FILL IN placeholder" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_wordnet_fails_before_any_stage(world, tmp_path, monkeypatch):
    from mmlightning.images import wordnet

    monkeypatch.setattr(wordnet, "_nltk_has_wordnet", lambda: False)
    monkeypatch.setenv("MMLIGHTNING_WORDNET_DIR", str(tmp_path / "no-wordnet"))
    with pytest.raises(UserError) as e:
        reproduce(**tiny_settings(world, tmp_path))
    assert "WordNet 3.0 not found" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ck").exists()
