"""decode="device": JPEG bytes decoded by torchvision.io.decode_jpeg and preprocessed on the model's device
(the CPU here) give the PIL path's tensors and aggregates within the documented tolerance."""
import io
import json

import pytest
import torch
import webdataset as wds
from PIL import Image

from mmlightning.features.aggregates import load_aggregates
from mmlightning.features.extract import run_extraction
from mmlightning.images.batching import batch_images
from mmlightning.images.read_shards import batch_samples, list_shards

PIXEL_TOL = 1.0  # 0..255 scale: torch's antialiased bilinear vs PIL's, both rounded to 8 bits


@pytest.mark.parametrize("scheme", ["imagenet", "esp", "efficientnet", "torchvision_fit"])
def test_device_tensors_equal_pil_tensors(tmp_path, make_shards, scheme):
    d = make_shards(tmp_path / "s", n_shards=2, per_shard=5, fmt="jpg")
    paths, _ = list_shards(d)
    pil = list(batch_samples(paths, scheme, batch_size=4))
    dev = list(batch_samples(paths, scheme, batch_size=4, decode="device"))
    assert all(b["on_device"].all() and b["images"].numel() == 0 for b in dev if b["keys"])
    scale = {"imagenet": 1.0, "esp": 1.0, "efficientnet": 1 / 128, "torchvision_fit": 1 / (255 * 0.224)}[scheme]
    worst = 0.0
    for p, q in zip(pil, dev):
        assert p["keys"] == q["keys"] and p["shards_done"] == q["shards_done"]
        if p["keys"]:
            images, keep, failed = batch_images(q, torch.device("cpu"))
            assert keep.all() and not failed and images.shape == p["images"].shape
            worst = max(worst, float((images - p["images"]).abs().max()))
    assert worst <= PIXEL_TOL * scale + 1e-5


def test_device_aggregates_equal_pil_aggregates(tmp_path, make_shards, tiny_backbone):
    d = make_shards(tmp_path / "s", n_shards=2, per_shard=6, fmt="jpg")
    a_pil, m_pil = load_aggregates(run_extraction(d, tmp_path / "pil", batch_size=4, num_workers=0,
                                                  **tiny_backbone) / "aggregates.pt")
    a_dev, m_dev = load_aggregates(run_extraction(d, tmp_path / "dev", batch_size=4, num_workers=0, decode="device",
                                                  **tiny_backbone) / "aggregates.pt")
    assert m_dev["images"] == m_pil["images"] == 12 and a_dev.words == a_pil.words
    assert torch.equal(a_dev.count, a_pil.count)
    rel = float((a_dev.mean() - a_pil.mean()).abs().max() / a_pil.mean().abs().max())
    assert rel < 0.02  # measured 0.7% on these shards (docs/FORMATS.md)


def test_mixed_batches_and_broken_jpegs(tmp_path, make_shards):
    d = make_shards(tmp_path / "s", n_shards=1, per_shard=3)  # PNGs: the PIL path
    good, noisy = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(good, format="JPEG")
    Image.effect_noise((64, 48), 60).convert("RGB").save(noisy, format="JPEG")
    cut = noisy.getvalue()[: len(noisy.getvalue()) * 2 // 3]  # header intact, scan data cut
    meta = json.dumps({"words": ["cat"]}).encode()
    with wds.TarWriter(str(d / "synth-000001.tar")) as w:
        w.write({"__key__": "j_good", "jpg": good.getvalue(), "json": meta})
        w.write({"__key__": "j_cut", "jpg": cut, "json": meta})
    paths = [d / "synth-000000.tar", d / "synth-000001.tar"]
    batches = [b for b in batch_samples(paths, "imagenet", batch_size=5, decode="device") if b["keys"]]
    b = batches[0]
    assert b["on_device"].tolist() == [False, False, False, True, True] and b["images"].shape[0] == 3
    images, keep, failed = batch_images(b, torch.device("cpu"))
    assert images.shape == (4, 3, 224, 224) and keep.tolist() == [True] * 4 + [False]
    assert failed[0]["key"] == "j_cut" and "not a decodable image" in failed[0]["reason"]
    assert torch.allclose(images[3], torch.tensor([10.0, 200.0, 30.0]).view(3, 1, 1) - 128, atol=3)
