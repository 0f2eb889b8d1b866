"""Speed of the BOVW baseline: our dense SIFT + histogram vs a plain-numpy per-patch loop, and vs the CNN.

    .venv/bin/python benchmarks/bench_bovw.py                      # 64 Tux Paint stamps
    .venv/bin/python benchmarks/bench_bovw.py --images 128 --baseline_images 8

Same real images (Tux Paint stamps, /usr/share/tuxpaint/stamps) for every contender, preprocessing done
beforehand and not timed (it runs in data-loader workers in the real pipeline):
- ours: `mmlightning.features.bovw.BovwBackbone` (OpenCV SIFT descriptors on dense keypoints, 16-px patches,
  step 8 on 256 x 256, nearest of K = 100 centroids, L1 histogram), with 1 thread and with 2 threads;
- baseline: the same descriptor layout computed the way older dense-SIFT scripts do it: numpy
  gradients, then a Python loop over patches, each binning its pixels into a 4 x 4 x 8 histogram
  (Gaussian window, bilinear in orientation), normalise / clip 0.2 / renormalise; then a numpy
  nearest-centroid histogram;
- CNN: the extraction path's default backbone, efficientnet_lite0 forward (pooled 1280-dim), batch 32.
Each rate is the best of a few repeats, in wall seconds and in CPU seconds of this process (the latter
barely changes when the machine is shared). Prints images/s of each and the ratios ours / baseline (target >= 10x) and BOVW / CNN.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mmlightning.features.bovw import BovwBackbone  # noqa: E402
from mmlightning.features.kmeans import minibatch_kmeans  # noqa: E402
from mmlightning.features.sift import DenseSift, dense_sift  # noqa: E402
from mmlightning.images.preprocess import gray  # noqa: E402

STAMPS = "/usr/share/tuxpaint/stamps"


# ------------------------------------------------------------------------- the plain-numpy baseline
def numpy_dense_sift_loop(image: np.ndarray, bin_size: int = 4, step: int = 8) -> np.ndarray:
    """Dense SIFT the old way: a Python loop over patches; (H, W) uint8 -> (N, 128) float32."""
    f = image.astype(np.float32)
    gy, gx = np.gradient(f)  # (H, W) each
    mag = np.hypot(gx, gy)
    ori = np.mod(np.arctan2(-gy, gx), 2 * np.pi)  # 0 .. 2 pi, counterclockwise with y up (as OpenCV)
    patch = 4 * bin_size
    yy, xx = np.mgrid[0:patch, 0:patch] + 0.5
    window = np.exp(-((xx - patch / 2) ** 2 + (yy - patch / 2) ** 2) / (2 * (patch / 2) ** 2))
    sbin = (yy // bin_size).astype(int) * 4 + (xx // bin_size).astype(int)  # spatial bin of each pixel
    out = []
    h, w = image.shape
    for y0 in range(0, h - patch + 1, step):
        for x0 in range(0, w - patch + 1, step):
            m = mag[y0:y0 + patch, x0:x0 + patch] * window
            o = ori[y0:y0 + patch, x0:x0 + patch] / (2 * np.pi) * 8
            o0 = np.floor(o).astype(int) % 8
            frac = o - np.floor(o)
            hist = np.zeros((16, 8), np.float32)
            np.add.at(hist, (sbin, o0), m * (1 - frac))
            np.add.at(hist, (sbin, (o0 + 1) % 8), m * frac)
            d = hist.ravel()
            d /= max(np.linalg.norm(d), 1e-12)
            d = np.minimum(d, 0.2)
            d /= max(np.linalg.norm(d), 1e-12)
            out.append(np.minimum(d * 512, 255))
    return np.asarray(out, np.float32)


def numpy_histogram(desc: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = ((desc[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)  # (N, K)
    h = np.bincount(d.argmin(1), minlength=len(centroids)).astype(np.float32)
    return h / h.sum()


# ----------------------------------------------------------------------------------------- helpers
def rate(fn, n_images: int, repeat: int = 3, warmup: bool = True) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) of fn(), which processes
    n_images; best of `repeat`. CPU seconds barely depend on what else runs on a shared machine."""
    if warmup:
        fn()
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return n_images / wall, n_images / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="images for ours and the CNN")
    ap.add_argument("--baseline_images", type=int, default=8, help="images for the slow numpy baseline")
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()

    paths = sorted(glob.glob(f"{STAMPS}/**/*.png", recursive=True))
    if not paths:
        sys.exit(f"no PNG stamps under {STAMPS}: apt-get install tuxpaint-stamps-default")
    rng = np.random.default_rng(0)
    paths = [paths[i] for i in rng.choice(len(paths), size=min(args.images, len(paths)), replace=False)]
    pil = [Image.open(p) for p in paths]
    for im in pil:
        im.load()
    grey = torch.stack([gray(im) for im in pil])  # (B, 1, 256, 256), not timed (data-loader work)
    grey_u8 = grey[:, 0].to(torch.uint8).numpy()
    n, nb = len(pil), min(args.baseline_images, len(pil))
    print(f"{n} Tux Paint stamps, 256 x 256 grey; torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}")

    sift = DenseSift()
    sample = np.concatenate([dense_sift(g, sift) for g in grey_u8])
    centroids = minibatch_kmeans(sample, k=args.k, iterations=50, seed=0)  # (K, 128)
    print(f"descriptors per image {len(sample) // n}, codebook K={args.k}")

    results = {}
    for threads in (1, 2):
        cv2.setNumThreads(threads)
        bb = BovwBackbone(centroids, sift, num_threads=threads)
        results[f"ours ({threads} thread{'s' if threads > 1 else ''})"] = rate(lambda: [
            bb(grey[i:i + 32]) for i in range(0, n, 32)], n)

    c_np = centroids.numpy()
    results["baseline numpy loop (1 thread)"] = rate(
        lambda: [numpy_histogram(numpy_dense_sift_loop(g), c_np) for g in grey_u8[:nb]], nb, repeat=2, warmup=False)

    from mmlightning.features.backbones import build_backbone
    from mmlightning.images.preprocess import get_scheme

    cnn = build_backbone("efficientnet_lite0").eval()
    x = torch.stack([get_scheme("efficientnet")(im) for im in pil])  # (B, 3, 224, 224)
    with torch.inference_mode():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[f"CNN efficientnet_lite0 ({threads} thread{'s' if threads > 1 else ''})"] = rate(
                lambda: [cnn(x[i:i + 32]) for i in range(0, n, 32)], n)

    a = np.concatenate([dense_sift(g, DenseSift(min_contrast=0)) for g in grey_u8[:4]])
    b = np.concatenate([numpy_dense_sift_loop(g) for g in grey_u8[:4]])
    keep = (np.linalg.norm(a, axis=1) > 0) & (np.linalg.norm(b, axis=1) > 0)
    cos = (a[keep] * b[keep]).sum(1) / np.linalg.norm(a[keep], axis=1) / np.linalg.norm(b[keep], axis=1)
    print(f"same descriptors? median cosine ours vs numpy loop: {np.median(cos):.3f} over {keep.sum()} patches")
    print(f"{'':<40} {'images/s':>9} {'images/CPU-s':>13}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<40} {wall:9.1f} {cpu:13.1f}")
    r = {name: wall for name, (wall, _) in results.items()}
    rc = {name: cpu for name, (_, cpu) in results.items()}
    base, cnn1, cnn2 = "baseline numpy loop (1 thread)", "CNN efficientnet_lite0 (1 thread)", "CNN efficientnet_lite0 (2 threads)"
    print(f"speed-up ours / numpy loop, 1 thread:  {r['ours (1 thread)'] / r[base]:6.1f}x wall, "
          f"{rc['ours (1 thread)'] / rc[base]:6.1f}x CPU")
    print(f"speed-up ours / numpy loop, 2 threads: {r['ours (2 threads)'] / r[base]:6.1f}x wall")
    print(f"BOVW / CNN, 1 thread:  {r['ours (1 thread)'] / r[cnn1]:6.2f}x wall, {rc['ours (1 thread)'] / rc[cnn1]:6.2f}x CPU")
    print(f"BOVW / CNN, 2 threads: {r['ours (2 threads)'] / r[cnn2]:6.2f}x wall")


if __name__ == "__main__":
    main()
