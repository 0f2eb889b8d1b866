"""The shard reading pipeline: listing, rank/worker split, decoding, bad samples, shard completion."""
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmlightning.errors import UserError
from mmlightning.images.read_shards import (ShardDataModule, ShardStream, assign_shards, batch_samples, list_shards,
                                            read_classes, read_shard)
from mmlightning.images.shard_urls import shard_refs, url_name


def test_list_shards_forms(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=3, per_shard=2)
    paths, manifest = list_shards(d)
    assert [p.name for p in paths] == [f"synth-{i:06d}.tar" for i in range(3)] and manifest["source"] == "synth"
    assert list_shards(str(d / "synth-00000[01].tar"))[0] == paths[:2]
    assert list_shards(str(d / "synth-{000001..000002}.tar"))[0] == paths[1:]
    assert list_shards([str(paths[2])])[0] == [paths[2]]
    paths[1].unlink()
    with pytest.raises(UserError, match="missing"):
        list_shards(d)
    with pytest.raises(UserError, match="no WebDataset shards"):
        list_shards(tmp_path / "nothing")
    with pytest.raises(UserError, match="remote shard"):
        list_shards(f"pipe:cat {paths[0]}")


def test_urls_are_named_by_their_tar_and_duplicates_read_once(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=2, per_shard=2)
    assert url_name("pipe:aws s3 cp s3://b/x/shards-000003.tar -") == "shards-000003.tar"
    assert url_name("https://h:8/a/b.tar?x=1") == "b.tar"
    refs, _ = shard_refs([str(d), str(d / "synth-000000.tar"), str(d / "synth-000000.tar")])
    assert [r.name for r in refs] == ["synth-000000.tar", "synth-000001.tar"]
    # the same name from two places: named by the whole URL, both read
    refs, _ = shard_refs([str(d / "synth-000000.tar"), f"pipe:cat {d / 'synth-000000.tar'}"])
    assert len(refs) == 2 and refs[1].name.startswith("pipe:")


def test_assign_shards_is_a_partition():
    shards = list(range(11))
    parts = [assign_shards(shards, r, 2, w, 3) for r in range(2) for w in range(3)]
    assert sorted(x for p in parts for x in p) == shards


def test_batches_carry_keys_words_and_shard_completion(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=3, per_shard=5)
    paths, _ = list_shards(d)
    batches = list(batch_samples(paths, "imagenet", batch_size=4))
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == 15 and len(set(keys)) == 15
    assert all(b["images"].shape[1:] == (3, 224, 224) for b in batches if b["keys"])
    done = [s for b in batches for s in b["shards_done"]]
    assert done == [p.name for p in paths] and all(b["preprocess"] == "imagenet" for b in batches)
    seen = []
    for b in batches:  # a shard is reported done only once all its samples were delivered
        seen += b["keys"]
        for s in b["shards_done"]:
            i = int(s.split("-")[1].split(".")[0])
            assert all(f"s{i}_{j:03d}" in seen for j in range(5))
    assert batches[0]["words"][0] == ["cat", "dog"] and batches[0]["labels"].tolist() == [-1] * 4


def test_bad_samples_are_skipped_counted_listed(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=2, per_shard=4, bad=True)
    paths, _ = list_shards(d)
    batches = list(batch_samples(paths, "imagenet", batch_size=3))
    skipped = [s for b in batches for s in b["skipped"]]
    reasons = {s["key"]: s["reason"] for s in skipped}
    assert reasons["bad_empty"].startswith("empty")
    assert "not a decodable image" in reasons["bad_notimage"]
    assert reasons["bad_noimage"].startswith("no image member")
    assert reasons["bad_json"].startswith("bad .json")
    assert reasons["bad_nowords"] == "no words in .json"
    assert any("truncated or corrupt tar" in s["reason"] for s in skipped)
    keys = [k for b in batches for k in b["keys"]]
    assert all(not k.startswith("bad") for k in keys) and sum(k.startswith("s0_") for k in keys) == 4
    assert [s for b in batches for s in b["shards_done"]] == [p.name for p in paths]


def test_truncated_tar_keeps_every_sample_before_the_cut(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=1, per_shard=6)
    tar = d / "synth-000000.tar"
    with tarfile.open(tar) as t:
        members = t.getmembers()
    cut = members[8].offset + 100  # inside the 5th sample's image: samples 0..3 are intact
    tar.write_bytes(tar.read_bytes()[:cut])
    problems = []
    keys = [s["__key__"] for s in read_shard(tar, problems)]
    assert keys[:4] == [f"s0_{i:03d}" for i in range(4)] and len(problems) == 1
    batches = list(batch_samples([tar], "imagenet", batch_size=8))
    assert [k for b in batches for k in b["keys"]] == [f"s0_{i:03d}" for i in range(4)]
    cut = members[7].offset_data + 10  # inside the 4th sample's image data: samples 0..2 are intact
    tar.write_bytes(tar.read_bytes()[:cut])
    problems = []
    keys = [s["__key__"] for s in read_shard(tar, problems)]
    assert keys == [f"s0_{i:03d}" for i in range(4)]  # s0_003 keeps its .json, its image was cut
    assert any("truncated or corrupt tar" in p["reason"] for p in problems)
    batches = list(batch_samples([tar], "imagenet", batch_size=8))
    assert [k for b in batches for k in b["keys"]] == [f"s0_{i:03d}" for i in range(3)]  # s0_003 has no image


def test_an_image_over_the_pixel_limit_is_a_counted_skip(tmp_path, monkeypatch, make_shards):
    import mmlightning.images.batching as batching

    d = make_shards(tmp_path / "s", n_shards=1, per_shard=3)
    monkeypatch.setattr(batching, "MAX_PIXELS", 50 * 50)  # the synthetic images are 40..100 px a side
    batches = list(batch_samples(list_shards(d)[0], "imagenet", batch_size=8))
    over = [s for b in batches for s in b["skipped"] if "over the limit" in s["reason"]]
    assert over and len(over) + sum(len(b["keys"]) for b in batches) == 3


def test_stream_in_workers_reads_every_sample_once(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=5, per_shard=3)
    refs, _ = shard_refs(d)
    keys, done = [], []
    for rank in range(2):
        dl = DataLoader(ShardStream(refs, "esp", 2, rank=rank, world_size=2), batch_size=None, num_workers=2)
        for b in dl:
            keys += b["keys"]
            done += b["shards_done"]
    assert sorted(keys) == sorted(f"s{s}_{i:03d}" for s in range(5) for i in range(3))
    assert sorted(done) == sorted(r.name for r in refs)


def test_labels_for_training(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=1, per_shard=2)
    classes = read_classes(["n01", "n02"])
    batches = list(batch_samples(list_shards(d)[0], "imagenet", 4, classes=classes, require_words=False))
    assert sum(len(b["keys"]) for b in batches) == 0  # label null is not among the classes
    assert all("not among the 2 classes" in s["reason"] for b in batches for s in b["skipped"])
    (tmp_path / "c.txt").write_text("# wnids\nn01 cat\nn02\n")
    assert read_classes(str(tmp_path / "c.txt")) == {"n01": 0, "n02": 1}
    with pytest.raises(UserError):
        read_classes(["a", "a"])


def test_a_manifest_path_means_its_folder(tmp_path, make_shards):
    out = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    by_dir = list_shards(str(out))
    by_manifest = list_shards(str(out / "manifest.json"))
    assert by_manifest[0] == by_dir[0] and len(by_dir[0]) == 2 and by_manifest[1] == by_dir[1]


@pytest.mark.parametrize("kwargs, match", [({"batch_size": 0}, "batch_size"), ({"batch_size": -3}, "batch_size"),
                                           ({"num_workers": -1}, "num_workers"), ({"decode": "gpu"}, "decode"),
                                           ({"preprocess": "nope"}, "unknown preprocessing scheme"),
                                           ({"preprocess": "gray", "decode": "device"}, "no version of scheme")])
def test_bad_data_settings_fail_at_construction(kwargs, match):
    with pytest.raises(UserError, match=match):
        ShardDataModule("x", **kwargs)


def test_predict_needs_a_named_scheme(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=1, per_shard=2)
    with pytest.raises(UserError, match="^preprocess: name the preprocessing scheme"):
        ShardDataModule(str(d), 2, 0).predict_dataloader()


# ------------------------------------------------------------------------------------ issue 22
def _tar(path, samples):
    with tarfile.open(path, "w") as t:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


def _png():
    b = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(b, format="PNG")
    return b.getvalue()


def test_deeply_nested_or_odd_json_is_a_counted_skip(tmp_path):
    """Issue 22.14: a .json nesting 200,000 levels raised RecursionError and killed the whole run."""
    deep = b"[" * 200_000 + b"]" * 200_000
    tar = _tar(tmp_path / "a.tar", [("deep", {"png": _png(), "json": b'{"words": ' + deep + b"}"}),
                                    ("deep2", {"png": _png(), "json": deep}),
                                    ("oddwords", {"png": _png(), "json": b'{"words": 5}'}),
                                    ("good", {"png": _png(), "json": b'{"words": ["cat"]}'})])
    batches = list(batch_samples([tar], "imagenet", batch_size=4))
    reasons = {s["key"]: s["reason"] for b in batches for s in b["skipped"]}
    assert [k for b in batches for k in b["keys"]] == ["good"]
    assert reasons["deep"].startswith("bad .json") and reasons["deep2"].startswith("bad .json")
    assert reasons["oddwords"].startswith("bad .json")
    assert [s for b in batches for s in b["shards_done"]] == ["a.tar"]


def _manifest(folder, shards):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"format": "mmlightning-shards/1", "shards": shards}))
    return folder


def test_a_deeply_nested_manifest_is_one_line(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "manifest.json").write_bytes(b'{"shards": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    with pytest.raises(UserError, match="manifest.json:1: not a shard manifest"):
        shard_refs(d)


@pytest.mark.parametrize("name", ["../outside.tar", "/abs/outside.tar", "sub/../../outside.tar", ""])
def test_manifest_entries_outside_the_folder_are_refused(tmp_path, name):
    """Issue 22 (minor): manifest entries with absolute or ../ names were read from outside the shard folder."""
    _tar(tmp_path / "outside.tar", [("x", {"png": _png(), "json": b'{"words": ["cat"]}'})])
    d = _manifest(tmp_path / "s", [{"name": name.replace("/abs", str(tmp_path))}])
    with pytest.raises(UserError, match="manifest.json: shard name .* must name a file inside"):
        shard_refs(d)


class FakeStrategy:
    """Rank `rank` of a simulated DDP group: broadcast returns what rank 0 sent (recorded in `sent`)."""

    root_device = torch.device("cpu")

    def __init__(self, rank, sent):
        self.rank, self.sent = rank, sent

    def broadcast(self, obj, src=0):
        if self.rank == 0:
            self.sent.append(obj)
        return self.sent[-1]

    def barrier(self, *a):
        pass


def fake_trainer(rank, world, sent):
    from types import SimpleNamespace

    return SimpleNamespace(global_rank=rank, world_size=world, is_global_zero=rank == 0,
                           strategy=FakeStrategy(rank, sent))


def test_an_idle_rank_is_named_in_a_warning(tmp_path, make_shards):
    """Issue 22 (minor): two processes over one shard left rank 1 idle without a word."""
    import logging

    d = make_shards(tmp_path / "s", n_shards=1, per_shard=2)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("mmlightning").addHandler(handler)
    try:
        sent = []
        for rank in (0, 1):
            dm = ShardDataModule(str(d), 2, 0, preprocess="imagenet")
            dm.trainer = fake_trainer(rank, 2, sent)
            dm.predict_dataloader()
    finally:
        logging.getLogger("mmlightning").removeHandler(handler)
    idle = [r.getMessage() for r in records if "no shard to read" in r.getMessage()]
    assert len(idle) == 1 and "rank 1 of 2" in idle[0]


def test_finished_shards_are_rank_zeros_on_every_rank(tmp_path, make_shards):
    """Issue 22.18: with an output folder per node, each rank trusted its own folder's finished shards."""
    from mmlightning.features.aggregates import Aggregate, save_aggregates

    d = make_shards(tmp_path / "s", n_shards=4, per_shard=1)
    refs, _ = shard_refs(d)
    fps = {r.name: r.fingerprint for r in refs}
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    save_aggregates(node0 / "aggregates.pt", Aggregate(2), {"shards_done": list(fps), "shard_fingerprints": fps})
    one = [refs[1].name, refs[3].name]  # rank 1's part of the first run, left in its own folder
    save_aggregates(node1 / "parts" / "p-rank1.pt", Aggregate(2),
                    {"shards_done": one, "shard_fingerprints": {n: fps[n] for n in one}})
    sent, todo = [], []
    for rank, folder in ((0, node0), (1, node1)):
        dm = ShardDataModule(str(d), 2, 0, preprocess="imagenet", skip_done_in=str(folder))
        dm.trainer = fake_trainer(rank, 2, sent)
        todo.append([r.name for r in dm.todo()[0]])
    assert todo == [[], []]
