"""Findable outputs and visible progress (issue 23): predict's bar has a total where the manifests count the
samples (and a wrong count never cuts the data short), predict ends with one summary line and leaves no
lock file or empty parts/ folder, shard's bar counts the images."""
import json
import re

import pytest
import pytorch_lightning as pl
import torch

from mmlightning.features.extract import FeatureExtractor
from mmlightning.features.writer import AggregateWriter
from mmlightning.images import read_shards
from mmlightning.images.read_shards import ShardDataModule, batch_samples
from mmlightning.images.shard_urls import shard_refs


def _module(folder, batch_size, num_workers, rank=0, world=1, **kw):
    dm = ShardDataModule(str(folder), batch_size=batch_size, num_workers=num_workers, preprocess="imagenet", **kw)
    dm._rank = lambda: (rank, world)  # a simulated rank of a DDP run (the data module asks the trainer otherwise)
    return dm


@pytest.mark.parametrize("world,workers,batch_size", [(1, 0, 2), (1, 2, 7), (2, 2, 2), (2, 0, 7), (2, 3, 3)])
def test_expected_batches_are_the_batches_each_rank_reads(make_shards, tmp_path, world, workers, batch_size):
    folder = make_shards(tmp_path / "s", n_shards=5, per_shard=7)
    for rank in range(world):
        dl = _module(folder, batch_size, workers, rank, world).predict_dataloader()
        assert dl.dataset.expected_batches(dl.num_workers) == sum(1 for _ in dl)


def test_skipped_samples_are_made_up_by_empty_batches(make_shards, tmp_path):
    folder = make_shards(tmp_path / "s", n_shards=4, per_shard=6, bad=True)  # 5 bad samples, a truncated shard
    for rank in range(2):
        dl = _module(folder, 2, 2, rank, 2).predict_dataloader()
        batches = list(dl)
        assert dl.dataset.expected_batches(dl.num_workers) == len(batches)
        assert not batches[-1]["keys"] and batches[-1]["preprocess"] == "imagenet"


def test_finished_shards_are_not_counted(make_shards, tmp_path, monkeypatch):
    folder = make_shards(tmp_path / "s", n_shards=3, per_shard=5)
    refs, _ = shard_refs(str(folder))
    monkeypatch.setattr(read_shards, "finished_shards", lambda _: {refs[1].name: refs[1].fingerprint})
    dl = _module(folder, 2, 0, skip_done_in=str(tmp_path / "out")).predict_dataloader()
    assert [r.name for r in dl.dataset.refs] == [refs[0].name, refs[2].name] and dl.dataset.samples == [5, 5]
    assert dl.dataset.expected_batches(0) == 2 * (5 // 2 + 1) == sum(1 for _ in dl)


def test_unknown_counts_give_no_total(make_shards, tmp_path):
    folder = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    tars = sorted(str(p) for p in folder.glob("*.tar"))
    dl = _module(tars[0], 2, 0).predict_dataloader()  # a tar without its manifest
    assert dl.dataset.expected_batches(0) is None
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["shards"][1]["samples"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert _module(folder, 2, 0).predict_dataloader().dataset.expected_batches(0) is None


class Watch(pl.Callback):
    """Records the progress bar's total and the batches predict_step saw."""

    def __init__(self):
        self.totals, self.batches = set(), 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.totals.add(trainer.progress_bar_callback.predict_progress_bar.total)
        self.batches += 1


def _predict(folder, out, tiny_backbone, batch_size=2, num_workers=0):
    watch = Watch()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_model_summary=False,
                         default_root_dir=str(out), callbacks=[AggregateWriter(str(out)), watch])
    dm = _module(folder, batch_size, num_workers, skip_done_in=str(out))
    trainer.predict(FeatureExtractor(**tiny_backbone), datamodule=dm, return_predictions=False)
    return watch, torch.load(out / "aggregates.pt", weights_only=True)["meta"]


def _good_images(folder) -> int:
    refs, _ = shard_refs(str(folder))
    return sum(len(b["keys"]) for b in batch_samples(refs, "imagenet", 4))


def test_the_bar_has_the_total_and_the_run_reads_every_batch(make_shards, tmp_path, tiny_backbone):
    folder = make_shards(tmp_path / "s", n_shards=3, per_shard=5)
    watch, meta = _predict(folder, tmp_path / "out", tiny_backbone, num_workers=2)
    assert watch.totals == {watch.batches} and watch.batches == 3 * (5 // 2 + 1)  # one shard per worker...
    assert meta["images"] == 15


@pytest.mark.parametrize("claimed", ["over", "under"])
def test_a_wrong_count_never_cuts_the_data_short(make_shards, tmp_path, tiny_backbone, claimed):
    """Bad samples and a truncated shard make the manifest's counts an over-estimate (empty batches fill
    it: the bar ends full); a manifest that undercounts (it is not trusted) an under-estimate: either way
    every sample is read."""
    folder = make_shards(tmp_path / "s", n_shards=3, per_shard=6, bad=True)
    if claimed == "under":
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["shards"]:
            entry["samples"] = 1
        (folder / "manifest.json").write_text(json.dumps(manifest))
    watch, meta = _predict(folder, tmp_path / "out", tiny_backbone)
    total = watch.totals.pop()
    assert (total == watch.batches) if claimed == "over" else (total == 3 // 2 + 1 < watch.batches)
    assert meta["images"] == _good_images(folder) > 0 and len(meta["shards_done"]) == 3


def test_predict_ends_with_one_summary_line(make_shards, tmp_path, tiny_backbone, capsys):
    folder = make_shards(tmp_path / "s", n_shards=3, per_shard=4, bad=True)
    out = tmp_path / "out"
    _, meta = _predict(folder, out, tiny_backbone)
    lines = [ln for ln in capsys.readouterr().out.replace("\r", "\n").splitlines() if ln.startswith("predict: ")]
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"predict: {meta['images']} images read \({meta['images']} in all\), {meta['words']} words, "
                        rf"{meta['n_skipped']} skipped samples, 3 shards done \(3 in all\), 0 missing -> "
                        rf"{re.escape(str(out))} \(\d+\.\d s\)", lines[0]), lines[0]
    assert meta["n_skipped"] == 5 and meta["images"] > 0
    _predict(folder, out, tiny_backbone)  # a rerun: nothing left to read
    lines = [ln for ln in capsys.readouterr().out.replace("\r", "\n").splitlines() if ln.startswith("predict: ")]
    assert len(lines) == 1 and lines[0].startswith(f"predict: 0 images read ({meta['images']} in all)")
    assert "0 skipped samples, 0 shards done (3 in all), 0 missing" in lines[0]


# ------------------------------------------------------------------------ no lock file, no empty parts/
def test_predict_leaves_no_lock_file_and_no_empty_parts_folder(make_shards, tmp_path, tiny_backbone):
    folder = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    out = tmp_path / "out"
    _predict(folder, out, tiny_backbone)
    assert sorted(p.name for p in out.iterdir()) == ["aggregates.pt", "max.txt", "mean.txt"]


def test_a_removed_lock_file_is_not_a_lock(tmp_path, monkeypatch):
    """A waiter that opened the lock file just before its holder deleted it must not lock the deleted file:
    it would hold a lock nobody else sees, and a third run would take the new file beside it."""
    import os

    from mmlightning.errors import UserError
    from mmlightning.folder_lock import FolderLock

    first = FolderLock(tmp_path, "first", remove=True).acquire()
    stale = os.open(tmp_path / ".lock", os.O_RDWR)  # what the waiter opened
    first.release()
    assert not (tmp_path / ".lock").exists()
    real_open, opened = os.open, []

    def open_stale_first(*args, **kwargs):
        opened.append(args[0])
        return stale if len(opened) == 1 else real_open(*args, **kwargs)

    monkeypatch.setattr(os, "open", open_stale_first)
    waiter = FolderLock(tmp_path, "the waiter", remove=True).acquire()
    monkeypatch.undo()
    assert len(opened) == 2 and "the waiter" in (tmp_path / ".lock").read_text()
    with pytest.raises(UserError, match="the waiter .*is writing this folder"):
        FolderLock(tmp_path, "third", orphan_wait_s=0).acquire()
    waiter.release()
    with FolderLock(tmp_path, "third", remove=True):
        assert (tmp_path / ".lock").is_file()
    assert not (tmp_path / ".lock").exists()


def test_a_forked_child_never_releases_its_parents_lock(tmp_path):
    import os

    from mmlightning.errors import UserError
    from mmlightning.folder_lock import FolderLock

    lock = FolderLock(tmp_path, "parent", remove=True).acquire()
    pid = os.fork()
    if pid == 0:  # a data-loader worker that drops its copy of the writer
        lock.release()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert (tmp_path / ".lock").is_file()
    with pytest.raises(UserError, match="parent .*is writing this folder"):
        FolderLock(tmp_path, "other", orphan_wait_s=0).acquire()
    lock.release()
    assert not (tmp_path / ".lock").exists()
    FolderLock(tmp_path, "keeps its file").acquire().release()  # the default (shard, reproduce) keeps the file
    assert (tmp_path / ".lock").is_file()


# ------------------------------------------------------------------------------------- shard's bar
@pytest.fixture
def esp_source(tmp_path):
    """An ESP-layout source: 5 small images (one undecodable) tagged with benchmark words."""
    from PIL import Image

    root = tmp_path / "esp"
    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    for i, tags in enumerate(["dog", "cat", "cat\nsky", "sky", "dog"]):
        (root / "labels" / f"{i}.png.desc").write_text(tags)
        Image.new("RGB", (8, 6), (40 * i, 10, 10)).save(root / "images" / f"{i}.png")
    (root / "images" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # planned, then skipped
    words = tmp_path / "words.txt"
    words.write_text("dog\ncat\nsky\n")
    bench = tmp_path / "bench.txt"
    bench.write_text("dog cat 5\ncat sky 3\n")
    return dict(root=str(root), words=str(words), benchmarks=[str(bench)], samples_per_shard=2, workers=1)


class Bars:
    """A tqdm stand-in that records each bar's total, initial and final count."""

    def __init__(self):
        self.seen = []
        bars = self

        class Bar:
            def __init__(self, total=None, initial=0, **kwargs):
                self.record = {"total": total, "initial": initial, "n": initial}
                bars.seen.append(self.record)

            def update(self, n=1):
                self.record["n"] += n

            def close(self):
                self.record["closed"] = True

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

        self.Bar = Bar


def test_shard_bar_counts_the_planned_images_and_starts_at_the_finished_ones(esp_source, tmp_path, monkeypatch):
    import tqdm

    import mmlightning.images.write_shards as write_shards

    bars = Bars()
    monkeypatch.setattr(tqdm, "tqdm", bars.Bar)
    write_shards.shard("esp", str(tmp_path / "a"), **esp_source)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert bars.seen == [{"total": 5, "initial": 0, "n": 5, "closed": True}] and manifest["samples"] == 4

    real_write, calls = write_shards._write_tar, []

    def dies_on_second_shard(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(write_shards, "_write_tar", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        write_shards.shard("esp", str(tmp_path / "b"), **esp_source)
    monkeypatch.setattr(write_shards, "_write_tar", real_write)
    bars.seen.clear()
    write_shards.shard("esp", str(tmp_path / "b"), **esp_source)  # resumes after the first shard
    assert bars.seen == [{"total": 5, "initial": 2, "n": 5, "closed": True}]


def test_shard_shows_the_bar(esp_source, tmp_path, capsys):
    from mmlightning.images.write_shards import shard

    shard("esp", str(tmp_path / "a"), **esp_source)
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "shard: 100%" in err and "5/5" in err
