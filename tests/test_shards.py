"""The shard reading pipeline: listing, rank/worker split, decoding, bad samples, shard completion."""
import pytest
import torch
from torch.utils.data import DataLoader

from mmlightning.errors import UserError
from mmlightning.images.read_shards import ShardStream, assign_shards, batch_samples, list_shards, read_classes
from synthetic_shards import make_shards


def test_list_shards_forms(tmp_path):
    d = make_shards(tmp_path / "s", n_shards=3, per_shard=2)
    paths, manifest = list_shards(d)
    assert [p.name for p in paths] == [f"synth-{i:06d}.tar" for i in range(3)] and manifest["source"] == "synth"
    assert list_shards(str(d / "synth-00000[01].tar"))[0] == paths[:2]
    assert list_shards([str(paths[2])])[0] == [paths[2]]
    paths[1].unlink()
    with pytest.raises(UserError, match="missing"):
        list_shards(d)
    with pytest.raises(UserError, match="no WebDataset shards"):
        list_shards(tmp_path / "nothing")


def test_assign_shards_is_a_partition():
    shards = list(range(11))
    parts = [assign_shards(shards, r, 2, w, 3) for r in range(2) for w in range(3)]
    flat = sorted(x for p in parts for x in p)
    assert flat == shards


def test_batches_carry_keys_words_and_shard_completion(tmp_path):
    d = make_shards(tmp_path / "s", n_shards=3, per_shard=5)
    paths, _ = list_shards(d)
    batches = list(batch_samples(paths, "imagenet", batch_size=4))
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == 15 and len(set(keys)) == 15
    assert all(b["images"].shape[1:] == (3, 224, 224) for b in batches if b["keys"])
    done = [s for b in batches for s in b["shards_done"]]
    assert done == [p.name for p in paths]
    seen = []
    for b in batches:  # a shard is reported done only once all its samples were delivered
        seen += b["keys"]
        for s in b["shards_done"]:
            i = int(s.split("-")[1].split(".")[0])
            assert all(f"s{i}_{j:03d}" in seen for j in range(5))
    assert batches[0]["words"][0] == ["cat", "dog"] and batches[0]["labels"].tolist() == [-1] * 4


def test_bad_samples_are_skipped_counted_listed(tmp_path):
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


def test_stream_in_workers_reads_every_sample_once(tmp_path):
    d = make_shards(tmp_path / "s", n_shards=5, per_shard=3)
    paths, _ = list_shards(d)
    keys = []
    for rank in range(2):
        dl = DataLoader(ShardStream(paths, "esp", 2, rank=rank, world_size=2), batch_size=None, num_workers=2)
        keys += [k for b in dl for k in b["keys"]]
    assert sorted(keys) == sorted(f"s{s}_{i:03d}" for s in range(5) for i in range(3))


def test_labels_for_training(tmp_path):
    d = make_shards(tmp_path / "s", n_shards=1, per_shard=2)
    classes = read_classes(["n01", "n02"])
    batches = list(batch_samples(list_shards(d)[0], "imagenet", 4, classes=classes, require_words=False))
    assert sum(len(b["keys"]) for b in batches) == 0  # label null is not among the classes
    assert all("not among the 2 classes" in s["reason"] for b in batches for s in b["skipped"])
    (tmp_path / "c.txt").write_text("# wnids\nn01 cat\nn02\n")
    assert read_classes(str(tmp_path / "c.txt")) == {"n01": 0, "n02": 1}
    with pytest.raises(UserError):
        read_classes(["a", "a"])


def test_a_manifest_path_means_its_folder(tmp_path):
    out = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    by_dir = list_shards(str(out))
    by_manifest = list_shards(str(out / "manifest.json"))
    assert by_manifest[0] == by_dir[0] and len(by_dir[0]) == 2 and by_manifest[1] == by_dir[1]
