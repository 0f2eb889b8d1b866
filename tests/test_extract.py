"""Extraction under Lightning predict: aggregates, bad samples, per-image features, resume, DDP on CPU."""
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from mmlightning.features.aggregates import load_aggregates
from mmlightning.errors import UserError
from mmlightning.features.extract import AggregateWriter, FeatureExtractor, run_extraction
from mmlightning.images.read_shards import ShardDataModule


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_shards, tiny_backbone):
    root = tmp_path_factory.mktemp("extract")
    shards = make_shards(root / "shards", n_shards=4, per_shard=6)
    ref = run_extraction(shards, root / "ref", batch_size=4, num_workers=0, **tiny_backbone)
    return root, shards, tiny_backbone, ref


def test_single_process_aggregates(setup):
    root, shards, kwargs, ref = setup
    agg, meta = load_aggregates(ref / "aggregates.pt")
    assert meta["images"] == 24 and meta["backbone"] == "alexnet1512" and meta["layer"] == "fc7"
    assert meta["preprocess"] == "imagenet" and meta["feature_dim"] == 32
    assert meta["source"]["manifest"]["source"] == "synth" and len(meta["shards_done"]) == 4 and meta["skipped"] == []
    # words: image i of shard s counts for WORDS[(s+i)%5] (+ WORDS[(3i+1)%5] when i%3==0)
    assert int(agg.count.sum()) == 24 + 4 * 2 - sum(1 for s in range(4) for i in (0, 3)
                                                    if (s + i) % 5 == (3 * i + 1) % 5)
    assert (ref / "mean.txt").is_file() and (ref / "max.txt").is_file() and not list((ref / "parts").glob("*"))
    # fc7 is after ReLU: non-negative; max >= mean
    assert torch.all(agg.max >= 0) and torch.all(agg.max.double() >= agg.mean() - 1e-6)


def test_rerun_reuses_completed_shards(setup):
    root, shards, kwargs, ref = setup
    before = (ref / "aggregates.pt").read_bytes()
    agg0, _ = load_aggregates(ref / "aggregates.pt")
    run_extraction(shards, ref, batch_size=4, num_workers=0, **kwargs)
    agg1, meta = load_aggregates(ref / "aggregates.pt")
    assert meta["images"] == 24 and torch.equal(agg0.sum, agg1.sum) and len(before) > 0
    with pytest.raises(UserError, match="holds layer"):
        run_extraction(shards, ref, batch_size=4, num_workers=0, **{**kwargs, "layer": "fc6"})
    with pytest.raises(UserError, match="holds preprocess='imagenet', this run has 'imagenet_fit'"):
        run_extraction(shards, ref, batch_size=4, num_workers=0, preprocess="imagenet_fit", **kwargs)


def test_preprocess_override_is_applied_and_recorded(tmp_path, setup):
    root, shards, kwargs, ref = setup
    out = run_extraction(shards, tmp_path / "esp", batch_size=4, num_workers=0, preprocess="esp", **kwargs)
    agg, meta = load_aggregates(out / "aggregates.pt")
    ref_agg, _ = load_aggregates(ref / "aggregates.pt")
    assert meta["preprocess"] == "esp" and meta["images"] == 24
    assert not torch.allclose(agg.sum, ref_agg.sum)  # other geometry, other features


class Boom(pl.Callback):
    """Dies (like a killed job) right after the first shard was committed and checkpointed."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch["shards_done"]:
            raise RuntimeError("boom")


class Counter(pl.Callback):
    def __init__(self):
        self.keys = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.keys += batch["keys"]


def _trainer(out, *extra):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      callbacks=[AggregateWriter(str(out), save_every_s=0), *extra])


def _dm(shards, out=None):
    return ShardDataModule(str(shards), 4, 0, preprocess="imagenet", skip_done_in=None if out is None else str(out))


def test_resume_after_a_crash_equals_uninterrupted(setup):
    root, shards, kwargs, ref = setup
    out = root / "resumed"
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(out, Boom()).predict(FeatureExtractor(**kwargs), datamodule=_dm(shards, out),
                                      return_predictions=False)
    assert not (out / "aggregates.pt").exists() and len(list((out / "parts").glob("*.pt"))) == 1
    counter = Counter()
    _trainer(out, counter).predict(FeatureExtractor(**kwargs), datamodule=_dm(shards, out),
                                   return_predictions=False)
    assert len(counter.keys) == 18 and not any(k.startswith("s0_") for k in counter.keys)  # shard 0 reused
    a, meta = load_aggregates(out / "aggregates.pt")
    r, _ = load_aggregates(ref / "aggregates.pt")
    assert meta["images"] == 24 and a.words == r.words and torch.equal(a.count, r.count)
    assert torch.allclose(a.sum, r.sum, atol=1e-5) and torch.allclose(a.max, r.max, atol=1e-6)  # batching differs
    assert not list((out / "parts").glob("*.pt"))


def test_bad_samples_and_per_image_features(tmp_path, setup, make_shards):
    root, _, kwargs, _ = setup
    shards = make_shards(tmp_path / "bad", n_shards=2, per_shard=4, bad=True)
    out = run_extraction(shards, tmp_path / "out", batch_size=3, num_workers=0, save_features=True, **kwargs)
    agg, meta = load_aggregates(out / "aggregates.pt")
    keys = {s["key"] for s in meta["skipped"]}
    assert {"bad_empty", "bad_notimage", "bad_noimage", "bad_json", "bad_nowords"} <= keys
    assert meta["n_skipped"] == sum(s["key"] is not None for s in meta["skipped"]) >= 6  # samples, not tar problems
    assert any(s["key"] is None for s in meta["skipped"]) and len(meta["shards_done"]) == 2
    feats = [torch.load(p, weights_only=True) for p in sorted((out / "features").glob("*.pt"))]
    assert sum(len(f["keys"]) for f in feats) == meta["images"]
    rows = torch.cat([f["features"] for f in feats])
    words = [w for f in feats for w in f["words"]]
    cat = rows[[i for i, ws in enumerate(words) if "cat" in ws]].double()
    assert torch.allclose(agg.mean()[agg.index["cat"]], cat.mean(0), atol=1e-6)


def test_ddp_two_cpu_processes_equal_single_process(tmp_path, setup):
    root, shards, kwargs, ref = setup
    out = run_extraction(shards, tmp_path / "ddp", batch_size=4, num_workers=1, devices=2,
                         accelerator="cpu", strategy="ddp", **kwargs)
    a, meta = load_aggregates(out / "aggregates.pt")
    r, _ = load_aggregates(ref / "aggregates.pt")
    assert meta["world_size"] == 2 and meta["images"] == 24 and sorted(meta["shards_done"]) == sorted(
        load_aggregates(ref / "aggregates.pt")[1]["shards_done"])
    assert a.words == r.words and torch.equal(a.count, r.count)
    assert torch.allclose(a.mean(), r.mean(), atol=1e-5) and torch.allclose(a.max, r.max, atol=1e-5)
    assert torch.allclose(a.sum_normalized, r.sum_normalized, atol=1e-5)


@pytest.mark.slow
def test_killed_cli_run_resumes(tmp_path, setup, make_shards):
    """A real SIGKILL of `python -m mmlightning predict`, then a rerun: same result as uninterrupted."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    root, _, kwargs, _ = setup
    shards = make_shards(tmp_path / "many", n_shards=12, per_shard=6)
    ref = run_extraction(shards, tmp_path / "ref", batch_size=4, num_workers=0, **kwargs)
    out = tmp_path / "killed"
    config = {"model": {"class_path": "mmlightning.features.extract.FeatureExtractor", "init_args": kwargs},
              "data": {"class_path": "mmlightning.images.read_shards.ShardDataModule",
                       "init_args": {"shards": str(shards), "batch_size": 4, "num_workers": 0,
                                     "preprocess": "imagenet", "skip_done_in": str(out)}},
              "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "default_root_dir": str(out),
                          "callbacks": [{"class_path": "mmlightning.features.writer.AggregateWriter",
                                         "init_args": {"output_dir": str(out), "save_every_s": 0}}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "mmlightning", "predict", "--config", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((out / "parts").glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "aggregates.pt").exists()
    assert subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    a, meta = load_aggregates(out / "aggregates.pt")
    r, _ = load_aggregates(ref / "aggregates.pt")
    assert meta["images"] == 72 and torch.equal(a.count, r.count) and torch.allclose(a.sum, r.sum, atol=1e-5)


# ------------------------------------------------------------------------------------ issue 22
def _same_as(out, ref, images=24):
    a, meta = load_aggregates(out / "aggregates.pt")
    r, _ = load_aggregates(ref / "aggregates.pt")
    assert meta["images"] == images and a.words == r.words and torch.equal(a.count, r.count)
    assert torch.allclose(a.sum, r.sum, atol=1e-5) and torch.allclose(a.max, r.max, atol=1e-6)
    return meta


def test_per_image_features_of_same_named_shards_stay_in_the_output_folder(tmp_path, setup, make_shards):
    """Issue 22.3: two shards named alike were recorded by their path, and features/<path>.pt left the folder."""
    root, _, kwargs, _ = setup
    a = make_shards(tmp_path / "a", n_shards=1, per_shard=2, seed=1)
    b = make_shards(tmp_path / "b", n_shards=1, per_shard=3, seed=2)
    before = set(tmp_path.rglob("*"))
    out = run_extraction([str(a / "synth-000000.tar"), str(b / "synth-000000.tar")], tmp_path / "o", batch_size=4,
                         num_workers=0, save_features=True, **kwargs)
    new = set(tmp_path.rglob("*")) - before
    assert all(p == out or out in p.parents for p in new), sorted(map(str, new))
    feats = [torch.load(p, weights_only=True) for p in sorted((out / "features").glob("*.pt"))]
    assert sorted(len(f["keys"]) for f in feats) == [2, 3]
    assert all("/" not in p.name and not p.name.startswith(".") for p in (out / "features").iterdir())


@pytest.mark.parametrize("where", ["aggregates.pt", "/features/"])
def test_disk_full_is_one_line_and_the_rerun_resumes(tmp_path, setup, monkeypatch, where):
    """Issue 22.16: ENOSPC while predict wrote its outputs was a traceback."""
    import errno
    import re

    root, shards, kwargs, ref = setup
    real = torch.save

    def full(obj, f, *a, **k):
        if where in (str(f) if isinstance(f, (str, Path)) else f.name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "o"
    with pytest.raises(UserError, match=re.escape(str(out)) + r": no space left on device .*finished shards kept"):
        run_extraction(shards, out, batch_size=4, num_workers=0, save_features=True, save_every_s=0, **kwargs)
    monkeypatch.setattr(torch, "save", real)
    run_extraction(shards, out, batch_size=4, num_workers=0, save_features=True, **kwargs)
    _same_as(out, ref)
    assert len(list((out / "features").glob("*.pt"))) == 4


def _fake_trainer(rank, world, sent):
    from types import SimpleNamespace

    class Strategy:
        root_device = torch.device("cpu")

        def broadcast(self, obj, src=0):
            if rank == 0:
                sent.append(obj)
            return sent[-1]

        def barrier(self, *a):
            pass

    return SimpleNamespace(global_rank=rank, world_size=world, is_global_zero=rank == 0, strategy=Strategy())


def _tars(shards):
    return [str(p) for p in sorted(shards.glob("*.tar"))]


def test_every_rank_writer_trusts_rank_zeros_record(tmp_path, setup):
    """Issue 22.18: with a folder per node, rank 1's writer took its own leftover part as the finished shards."""
    import shutil

    root, shards, kwargs, ref = setup
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    run_extraction(_tars(shards), node0, batch_size=4, num_workers=0, **kwargs)
    run_extraction(_tars(shards)[1::2], tmp_path / "r1", batch_size=4, num_workers=0, **kwargs)
    (node1 / "parts").mkdir(parents=True)
    shutil.copy(tmp_path / "r1" / "aggregates.pt", node1 / "parts" / "run1-rank1.pt")
    sent, done = [], []
    for rank, folder in ((0, node0), (1, node1)):
        w = AggregateWriter(str(folder))
        w.setup(_fake_trainer(rank, 2, sent), FeatureExtractor(**kwargs), "predict")
        done.append(w.done_before)
        w.teardown(None, None, "predict")
    assert done[0] == done[1] and len(done[0]) == 4


def test_a_shard_already_in_the_output_is_never_merged_twice(tmp_path, setup, monkeypatch):
    """Issue 22.18: rank 0 merged what other ranks sent without checking it against what it already had."""
    import mmlightning.features.writer as writer

    root, shards, kwargs, ref = setup
    out = run_extraction(_tars(shards), tmp_path / "o", batch_size=4, num_workers=0, **kwargs)
    before = (out / "aggregates.pt").read_bytes()
    prior, meta = load_aggregates(out / "aggregates.pt")
    name = meta["shards_done"][1]
    other = {"fingerprints": {name: meta["shard_fingerprints"][name]}, "skipped": [], "images": 6,
             "scheme": "imagenet", "source": None, "failed": {}}
    monkeypatch.setattr(writer, "gather_objects", lambda own: [own, {**own, **other}])
    monkeypatch.setattr(writer, "reduce_aggregate", lambda agg, device: prior)  # rank 1 re-read a done shard
    w = AggregateWriter(str(out))
    trainer = _fake_trainer(0, 2, [])
    w.setup(trainer, FeatureExtractor(**kwargs), "predict")
    with pytest.raises(UserError, match=f"{name}.*already"):
        w.on_predict_epoch_end(trainer, FeatureExtractor(**kwargs))
    w.teardown(None, None, "predict")
    assert (out / "aggregates.pt").read_bytes() == before


def test_a_part_overlapping_the_record_is_skipped_and_its_shards_read_again(tmp_path, setup, caplog):
    """A part whose shards are partly in aggregates.pt already is never merged (was: a dead end)."""
    import shutil

    root, shards, kwargs, ref = setup
    tars = _tars(shards)
    out = run_extraction(tars[:3], tmp_path / "o", batch_size=4, num_workers=0, **kwargs)
    run_extraction(tars[2:], tmp_path / "p", batch_size=4, num_workers=0, **kwargs)
    (out / "parts").mkdir(exist_ok=True)
    shutil.copy(tmp_path / "p" / "aggregates.pt", out / "parts" / "x-rank1.pt")
    run_extraction(tars, out, batch_size=4, num_workers=0, **kwargs)
    meta = _same_as(out, ref)
    assert len(meta["shards_done"]) == 4 and not list((out / "parts").glob("*.pt"))
