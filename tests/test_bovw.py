"""Tests of the BOVW baseline: dense SIFT geometry, k-means codebook, histograms, backbone, command."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mmlightning.features import bovw
from mmlightning.images.preprocess import gray
from mmlightning.features.backbones import build_backbone
from mmlightning.features.bovw import fit_codebook, load_codebook
from mmlightning.features.kmeans import bovw_histogram, minibatch_kmeans, nearest_centroid
from mmlightning.features.sift import DenseSift, dense_sift, grid_centres
from mmlightning.errors import UserError
from cli_helpers import assert_user_error, predict_config, run, small_shards

RAW = DenseSift(min_contrast=0.0)  # no contrast threshold: every gradient shows


# ------------------------------------------------------------------------------- fixtures / helpers
def texture(seed: int, h: int = 96, w: int = 120) -> np.ndarray:
    """A smooth random greyscale texture (H, W) uint8 with plenty of gradients."""
    rng = np.random.default_rng(seed)
    a = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    a = (a - a.min()) / (a.max() - a.min()) * 255
    return a.astype(np.uint8)


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_shards(root, n_images: int = 8, per_shard: int = 3, bad_keys=()):
    """Tiny shards in the docs/FORMATS.md layout (+ manifest); keys in bad_keys get corrupt image bytes."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    shards, words = [], {}
    for s in range(0, n_images, per_shard):
        name = f"tiny-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(root / name)) as tw:
            for i in range(s, min(s + per_shard, n_images)):
                key = f"img{i:04d}"
                word = ["cat", "dog", "sun"][i % 3]
                words[word] = words.get(word, 0) + 1
                data = b"not a png" if key in bad_keys else png_bytes(texture(i, 80 + 8 * (i % 3), 100))
                meta = {"words": [word], "source": "test", "path": f"/x/{key}.png", "label": None}
                tw.write({"__key__": key, "png": data, "json": json.dumps(meta).encode()})
        shards.append({"name": name, "samples": min(per_shard, n_images - s)})
    (root / "manifest.json").write_text(json.dumps(
        {"format": "mmlightning-shards/1", "source": "test", "n_per_word": 10, "seed": 0,
         "shards": shards, "word_counts": words, "skipped": [], "coverage": {}}))
    return root


# --------------------------------------------------------------------------------- preprocessing
def test_gray_scheme_square_256_greyscale():
    rgba = np.zeros((60, 100, 4), np.uint8)
    rgba[..., 0] = 255  # pure red, opaque on the left half, transparent (-> white) on the right
    rgba[:, :50, 3] = 255
    x = gray(Image.fromarray(rgba, "RGBA"))
    assert x.shape == (1, 256, 256) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 255
    # centred square = columns 20..79: left part red (luma 76), right part white
    assert abs(float(x[0, 128, 10]) - 76) <= 1 and float(x[0, 128, 250]) == 255
    from mmlightning.images.preprocess import get_scheme
    assert get_scheme("gray") is gray


# ------------------------------------------------------------------------------------ dense SIFT
def test_grid_and_descriptor_count():
    c = grid_centres(256, 256, patch_size=16, step=8)
    assert c.shape == (31 * 31, 2)
    assert c[0].tolist() == [8, 8] and c[1].tolist() == [16, 8] and c[-1].tolist() == [248, 248]
    d = dense_sift(texture(0, 256, 256))
    assert d.shape == (961, 128) and d.dtype == np.float32
    assert d.min() >= 0 and d.max() <= 255
    assert dense_sift(np.zeros((10, 10), np.uint8)).shape == (0, 128)  # smaller than one patch
    assert dense_sift(texture(0, 64, 64), DenseSift(bin_size=8, step=4)).shape == (((64 - 32) // 4 + 1) ** 2, 128)


def _one_descriptor(img: np.ndarray, cx: int, cy: int, config: DenseSift = RAW) -> np.ndarray:
    """Descriptor of the dense patch centred at (cx, cy)."""
    c = grid_centres(*img.shape, config.patch_size, config.step)
    i = int(np.flatnonzero((c[:, 0] == cx) & (c[:, 1] == cy))[0])
    return dense_sift(img, config)[i]


@pytest.mark.parametrize("bin_size", [4, 8])
def test_patch_geometry_inside_changes_outside_does_not(bin_size):
    cfg = DenseSift(bin_size=bin_size, step=bin_size, min_contrast=0.0)
    half = 2 * bin_size  # the patch spans centre +- 2 bins
    size = 12 * bin_size
    cx = cy = 6 * bin_size
    base = np.full((size, size), 100, np.uint8)
    assert not _one_descriptor(base, cx, cy, cfg).any()  # flat: zero descriptor

    def with_blob(dx: int) -> np.ndarray:
        img = base.copy()
        img[cy - 1:cy + 2, cx + dx - 1:cx + dx + 2] = 220  # 3 x 3 bright blob
        return _one_descriptor(img, cx, cy, cfg)

    assert with_blob(half - 2).any()  # inside the patch, near its border
    # one bin beyond the patch, plus the blob's radius, gradient and smoothing reach: no influence
    assert not with_blob(half + bin_size + 1 + 1 + 3).any()


def test_naive_keypoint_size_would_read_a_much_larger_window():
    """Why the size conversion matters: KeyPoint.size = 16 makes OpenCV read far outside the patch."""
    img = np.full((160, 160), 100, np.uint8)
    img[79:82, 79 + 24:82 + 24] = 220  # blob 24 px right of the centre (80, 80): outside a 16-px patch
    sift = cv2.SIFT_create()
    _, naive = sift.compute(img, [cv2.KeyPoint(80.0, 80.0, 16.0, 0.0)])
    assert naive[0].any()
    assert not _one_descriptor(img, 80, 80).any()


def test_known_gradient_patterns_fall_in_the_expected_orientation_bins():
    """Linear ramps: all gradient energy in one orientation bin (OpenCV: angle counterclockwise, y up)."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    cases = {0: 2 * x, 4: 200 - 2 * x,  # increasing to the right: 0 deg; to the left: 180 deg
             6: 2 * y, 2: 200 - 2 * y,  # increasing downwards (y down = -90 deg in a y-up frame)
             7: x + y}  # increasing towards bottom-right: -45 deg
    for expected_bin, ramp in cases.items():
        d = _one_descriptor(ramp.astype(np.uint8), 32, 32).reshape(4, 4, 8)  # (row, col, orientation)
        per_orientation = d.sum((0, 1))
        assert per_orientation.argmax() == expected_bin
        assert per_orientation[expected_bin] > 0.99 * per_orientation.sum()
        spatial = d[..., expected_bin]  # uniform gradient: a symmetric, all-positive spatial pattern
        assert (spatial > 0).all()
        np.testing.assert_allclose(spatial, spatial[::-1, ::-1], atol=2)
        # L2-normalised then scaled to 512 (clipped at 0.2 and quantised to integers on the way)
        assert abs(np.linalg.norm(d) - 512) < 10


def test_low_contrast_patches_get_the_zero_descriptor():
    rng = np.random.default_rng(0)
    noisy_flat = (128 + rng.integers(-1, 2, (64, 64))).astype(np.uint8)  # +-1 grey level noise
    assert not dense_sift(noisy_flat, DenseSift(min_contrast=0.5)).any()
    assert dense_sift(noisy_flat, RAW).any()  # without the threshold, noise becomes full-norm descriptors
    tex = texture(3, 64, 64)
    np.testing.assert_array_equal(dense_sift(tex, DenseSift(min_contrast=0.5)), dense_sift(tex, RAW))
    with pytest.raises(UserError):
        DenseSift(step=0)


# ------------------------------------------------------------------------------ k-means, histogram
def test_nearest_centroid_and_histogram_sums():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(500, 128)).astype(np.float32))
    c = torch.from_numpy(rng.normal(size=(7, 128)).astype(np.float32))
    brute = torch.cdist(x.double(), c.double()).argmin(1)
    assert torch.equal(nearest_centroid(x, c), brute)
    h = bovw_histogram(x, c)
    assert h.shape == (7,)
    assert abs(float(h.sum()) - 1) < 1e-6 and (h >= 0).all()
    np.testing.assert_allclose(h.numpy(), np.bincount(brute.numpy(), minlength=7) / 500, atol=1e-7)
    assert float(bovw_histogram(x[:0], c).sum()) == 0


def test_minibatch_kmeans_finds_blobs_and_is_deterministic():
    rng = np.random.default_rng(1)
    means = np.array([[0, 0], [20, 0], [0, 20], [20, 20]], np.float32)
    x = np.concatenate([m + rng.normal(size=(300, 2)).astype(np.float32) for m in means])
    c1 = minibatch_kmeans(x, k=4, batch_size=64, iterations=100, seed=3)
    c2 = minibatch_kmeans(x, k=4, batch_size=64, iterations=100, seed=3)
    c3 = minibatch_kmeans(x, k=4, batch_size=64, iterations=100, seed=4)
    assert torch.equal(c1, c2)
    assert not torch.equal(c1, c3)
    dist = torch.cdist(torch.from_numpy(means), c1)  # every blob has a centroid within 0.5 of its mean
    assert (dist.min(1).values < 0.5).all()
    with pytest.raises(UserError, match="fewer than k"):
        minibatch_kmeans(x[:3], k=4)
    with pytest.raises(UserError, match="distinct"):
        minibatch_kmeans(np.ones((50, 2), np.float32), k=4)


# ------------------------------------------------------------------------------ codebook from shards
def test_fit_codebook_from_shards_deterministic_reused_and_skips_bad_samples(tmp_path, caplog):
    shards = write_shards(tmp_path / "shards", n_images=8, bad_keys={"img0005"})
    kw = dict(k=6, max_images=100, per_image=40, batch_size=64, iterations=30, seed=7)
    a = fit_codebook([str(shards)], tmp_path / "a.pt", **kw)
    b = fit_codebook([str(shards)], tmp_path / "b.pt", **kw)
    ca, cb = load_codebook(a), load_codebook(b)
    assert ca["centroids"].shape == (6, 128) and ca["centroids"].dtype == torch.float32
    assert torch.equal(ca["centroids"], cb["centroids"])
    assert ca["stats"]["images"] == 7 and ca["stats"]["descriptors"] == 7 * 40
    assert [s["key"] for s in ca["stats"]["skipped"]] == ["img0005"]
    assert sum(ca["stats"]["cluster_sizes"]) == 7 * 40
    assert ca["config"]["k"] == 6 and ca["config"]["sift"]["bin_size"] == 4

    mtime = a.stat().st_mtime_ns  # same settings: reused, not refitted
    with caplog.at_level("INFO", logger="mmlightning.features.bovw"):
        assert fit_codebook([str(shards)], a, **kw) == a and a.stat().st_mtime_ns == mtime
    assert "reusing codebook" in caplog.text
    other = load_codebook(fit_codebook([str(shards)], a, **{**kw, "seed": 8}))  # other settings: refitted
    assert other["config"]["seed"] == 8 and not torch.equal(other["centroids"], ca["centroids"])


def test_fit_codebook_samples_about_max_images_by_seeded_hash(tmp_path):
    shards = write_shards(tmp_path / "shards", n_images=12, per_shard=5)
    kw = dict(k=3, max_images=4, per_image=20, batch_size=32, iterations=5)
    s1 = load_codebook(fit_codebook([str(shards)], tmp_path / "a.pt", seed=1, **kw))["stats"]["images"]
    s1b = load_codebook(fit_codebook([str(shards)], tmp_path / "b.pt", seed=1, **kw))["stats"]["images"]
    assert s1 == s1b and 1 <= s1 < 12
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()  # whatever the file names


def test_codebook_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no WebDataset shards"):
        fit_codebook([str(tmp_path / "missing")], tmp_path / "c.pt")
    with pytest.raises(UserError, match="no such codebook"):
        load_codebook(tmp_path / "nope.pt")
    torch.save({"centroids": torch.zeros(2, 128)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a BOVW codebook"):
        load_codebook(tmp_path / "foreign.pt")


def test_bovw_codebook_command(tmp_path, capsys):
    from mmlightning.cli import main

    shards = write_shards(tmp_path / "shards", n_images=4)
    out = tmp_path / "cb.pt"
    rc = main(["bovw-codebook", "--shards", f"[{shards}]", "--output", str(out), "--k", "4",
               "--per_image", "20", "--iterations", "5", "--batch_size", "32"])
    assert rc == 0 and load_codebook(out)["centroids"].shape == (4, 128)
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("bovw: codebook K=4 from 80 descriptors of 4 images")
    assert main(["bovw-codebook", "--shards", f"[{tmp_path / 'nope'}]", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no WebDataset shards" in err[0]


# ---------------------------------------------------------------------------------------- backbone
def test_backbone_maps_gray_batches_to_histograms(tmp_path):
    shards = write_shards(tmp_path / "shards", n_images=4)
    cb = fit_codebook([str(shards)], tmp_path / "cb.pt", k=5, per_image=30, batch_size=32, iterations=10)
    bb = build_backbone("bovw", codebook=str(cb), num_threads=2)
    assert bb.preprocess == "gray" and bb.feature_dim == 5 and bb.layer.startswith("bovw-k5-")
    assert bb.describe()["codebook"] == str(cb)
    imgs = [gray(Image.fromarray(texture(i, 70, 90))) for i in range(3)]
    x = torch.stack(imgs)  # (3, 1, 256, 256)
    h = bb(x)
    assert h.shape == (3, 5) and h.dtype == torch.float32
    torch.testing.assert_close(h.sum(1), torch.ones(3))
    centroids = load_codebook(cb)["centroids"]
    for i in range(3):  # the same as the pure functions, image by image, and whatever the threading
        d = torch.from_numpy(dense_sift(imgs[i][0].to(torch.uint8).numpy()))
        torch.testing.assert_close(h[i], bovw_histogram(d, centroids))
    torch.testing.assert_close(build_backbone("bovw", codebook=str(cb), num_threads=1)(x), h)
    with pytest.raises(ValueError):
        bb(torch.zeros(2, 3, 64, 64))


# -------------------------------------------------------------------------------------- end to end
def test_end_to_end_extraction_on_tiny_shards(tmp_path):
    """Shards -> codebook -> `run_extraction(backbone="bovw")` -> per-word mean / max histograms."""
    from mmlightning.features.extract import run_extraction
    from mmlightning.vectors import load_vectors

    shards = write_shards(tmp_path / "shards", n_images=7, bad_keys={"img0004"})
    cb = fit_codebook([str(shards)], tmp_path / "cb.pt", k=6, per_image=40, batch_size=64, iterations=20)
    out = run_extraction(shards, tmp_path / "feat", backbone="bovw", backbone_kwargs={"codebook": str(cb)},
                         batch_size=3, num_workers=0, accelerator="cpu")
    agg = torch.load(out / "aggregates.pt", weights_only=False)
    assert agg["meta"]["preprocess"] == "gray" and agg["meta"]["feature_dim"] == 6
    counts = dict(zip(agg["words"], agg["count"].tolist()))
    assert counts == {"cat": 3, "dog": 1, "sun": 2}  # img0004 (a "dog") is corrupt: skipped, listed
    assert any(s["key"] == "img0004" for s in agg["meta"]["skipped"])

    centroids = load_codebook(cb)["centroids"]
    expected = {}
    for i in range(7):  # the same histograms computed directly, per word
        if i == 4:
            continue
        img = gray(Image.open(io.BytesIO(png_bytes(texture(i, 80 + 8 * (i % 3), 100)))))
        h = bovw_histogram(torch.from_numpy(dense_sift(img[0].to(torch.uint8).numpy())), centroids)
        expected.setdefault(["cat", "dog", "sun"][i % 3], []).append(h)
    for w, hs in expected.items():
        j = agg["words"].index(w)
        torch.testing.assert_close(agg["sum"][j].float() / agg["count"][j], torch.stack(hs).mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(agg["max"][j].float(), torch.stack(hs).max(0).values, atol=1e-5, rtol=0)
    mean = load_vectors(out / "mean.txt")
    assert mean.vectors.shape == (3, 6)
    np.testing.assert_allclose(mean.vectors.sum(1), 1.0, atol=1e-4)  # means of L1-normalised histograms

    # a refitted codebook is another "layer": resuming into the same output_dir is refused, not mixed
    cb2 = fit_codebook([str(shards)], tmp_path / "cb.pt", k=6, per_image=40, batch_size=64, iterations=20, seed=1)
    with pytest.raises(UserError, match="layer"):
        run_extraction(shards, out, backbone="bovw", backbone_kwargs={"codebook": str(cb2)},
                       batch_size=3, num_workers=0, accelerator="cpu")


def test_descriptor_sample_does_not_depend_on_threads(tmp_path):
    shards = write_shards(tmp_path / "shards", n_images=5)
    a, na = bovw.sample_descriptors([shards], per_image=30, num_threads=1)
    b, nb = bovw.sample_descriptors(str(shards), per_image=30, num_threads=2)
    assert na == nb == 5 and a.shape == (150, 128)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad input through the CLI (issue 11)
@pytest.mark.parametrize("case", ["torch_dict", "garbage_bytes"])
def test_predict_bovw_codebook_that_is_not_one(tmp_path, capsys, case):
    codebook = tmp_path / "codebook.pt"
    if case == "torch_dict":
        torch.save({"something": "else"}, codebook)
    else:
        codebook.write_bytes(b"PK\x03\x04 not really a zip")
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out",
                         {"backbone": "bovw", "backbone_kwargs": {"codebook": str(codebook)}})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "codebook.pt")


def test_bovw_codebook_missing_shards(tmp_path, capsys):
    code, _, err = run(["bovw-codebook", "--shards", f"[{tmp_path / 'absent'}]", "--output", tmp_path / "cb.pt"], capsys)
    assert_user_error(code, err, "bovw-codebook", "absent")
