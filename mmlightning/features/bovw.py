"""Bag-of-visual-words baseline: dense SIFT, a mini-batch k-means codebook, one histogram per image.

    python -m mmlightning bovw-codebook --config configs/bovw_codebook.yaml
    python -m mmlightning predict --config configs/extract_bovw.yaml

    from mmlightning.features.bovw import fit_codebook
    codebook = fit_codebook(["checkpoints/shards/tuxpaint"], "checkpoints/bovw/tuxpaint/codebook.pt", k=100)
    run_extraction(shards, out_dir, backbone="bovw", backbone_kwargs={"codebook": str(codebook)})

The paper's baseline (VLFeat DSIFT, 100 k-means words, one 100-bin histogram per image), rebuilt as
(dense SIFT in `mmlightning.features.sift`, k-means in `mmlightning.features.kmeans`, the codebook and
the backbone here):

1. Preprocessing, scheme "gray" (in `mmlightning.images.preprocess`): RGB (transparency on
   white) -> largest centred square -> 256 x 256 (bilinear) -> greyscale (ITU-R 601 luma);
   a (1, 256, 256) float32 tensor on the 0..255 scale.
2. Dense SIFT with VLFeat's geometry: a descriptor covers a 4 x 4 grid of spatial bins of `bin_size`
   pixels (default 4, so a 16-pixel patch), 8 orientations (128 dims), on a regular grid with `step`
   pixels between patch centres (default 8: 31 x 31 = 961 descriptors on 256 x 256). The image is
   smoothed with sigma = bin_size / magnif (VLFeat's vl_phow; magnif 6). OpenCV's SIFT descriptor does
   the work on dense keypoints: its spatial bin width is 3 * KeyPoint.size / 2 (`SIFT_DESCR_SCL_FCTR`
   times the keypoint's radius), so we pass size = 2 * bin_size / 3; a keypoint of size 16 would read a
   ~100-pixel window instead. Keypoints sit on integer pixels (OpenCV rounds them): the patch of the
   centre (cx, cy) spans cx - 2 * bin_size .. cx + 2 * bin_size, and trilinear binning lets a pixel up to
   one bin beyond that contribute with a small weight (plus the smoothing radius). Descriptors are
   L2-normalised, clipped at 0.2, renormalised and scaled to 0..255 (as VLFeat and OpenCV do); patches
   whose mean gradient magnitude is below `min_contrast` grey levels per pixel get the zero descriptor
   (VLFeat's contrast threshold: flat or nearly flat backgrounds become one "flat" visual word).
   Left different from VLFeat, harmless to a codebook: OpenCV weights pixels with a Gaussian window
   (sigma = half the patch; vl_phow's fast mode uses a flat one) and measures angles with y up.
3. Codebook: mini-batch k-means (Sculley 2010), k-means++ seeding, fitted on a seeded sample of
   descriptors (a seeded subset of images from the shards, a seeded subset of each image's
   descriptors), saved with `torch.save` as a plain dict:
   `{"format": "mmlightning-bovw-codebook/1", "centroids": float32 (K, 128), "config": {...},
     "stats": {"images", "descriptors", "skipped", "inertia", "cluster_sizes"}}`.
4. Histogram: each descriptor votes for its nearest centroid (squared Euclidean distance); the K-bin
   histogram is L1-normalised (sums to 1).
5. Backbone "bovw" (`mmlightning.features.backbones`): preprocess "gray", feature_dim K, forward maps
   (B, 1, H, W) -> (B, K) histograms; the extraction pipeline aggregates them per word (mean, max).
   It runs on the CPU whatever the device, parallel over the images of a batch (`num_threads`, each
   thread with single-threaded OpenCV and torch: nested thread pools crawl on a small, busy CPU). Its
   `layer` is "bovw-k<K>-<centroid hash>", so resuming an extraction with another codebook is refused.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from mmlightning.errors import UserError
from mmlightning.features.aggregates import save_torch
from mmlightning.features.backbones import FeatureBackbone, register_backbone
from mmlightning.features.kmeans import bovw_histogram, inertia, minibatch_kmeans, nearest_centroid, torch_single_threaded
from mmlightning.features.sift import DenseSift, dense_sift
from mmlightning.images.preprocess import gray

CODEBOOK_FORMAT = "mmlightning-bovw-codebook/1"
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- reading the shards
def _entries(shards) -> list:
    return [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)


def shard_paths(shards) -> tuple[list[Path], int | None]:
    """Shard tars of shard directories (manifest order), .tar files or globs -> (paths, total samples or None).

    The total comes from the manifests; it is None when some entry has no manifest.
    """
    from mmlightning.images.read_shards import list_shards

    paths, total = [], 0
    for entry in _entries(shards):
        found, manifest = list_shards(str(entry))
        paths += found
        if manifest is None or total is None:
            total = None
        else:
            total += sum(int(s.get("samples", 0)) for s in manifest["shards"])
    if not paths:
        raise UserError("bovw: no shards given")
    return paths, total


def _selected(key: str, seed: int, fraction: float) -> bool:
    """Seeded, order-independent Bernoulli choice of a sample by its key."""
    return zlib.crc32(f"{seed}:{key}".encode()) / 2 ** 32 < fraction


def iter_shard_images(paths: Sequence[Path], seed: int = 0, fraction: float = 1.0,
                      skipped: list | None = None) -> Iterator[tuple[str, Image.Image]]:
    """(key, PIL image) for a seeded `fraction` of the samples of the shards; bad samples go to `skipped`.

    Reading and decoding are the extraction pipeline's (`mmlightning.images.read_shards`), so the same samples are
    skipped for the same reasons.
    """
    from mmlightning.images.read_shards import decode_sample, read_shard

    problems = [] if skipped is None else skipped
    for tar in paths:
        for raw in read_shard(Path(tar), problems):
            key = raw["__key__"]
            if not _selected(key, seed, fraction):
                continue
            img, _, reason = decode_sample(raw)
            if img is None:
                problems.append({"shard": Path(tar).name, "key": key, "reason": reason})
                continue
            yield key, img


def image_descriptors(key: str, img: Image.Image, sift: DenseSift, per_image: int, seed: int) -> np.ndarray:
    """Up to `per_image` dense SIFT descriptors of one image, chosen by a generator seeded with (seed, key)."""
    desc = dense_sift(gray(img)[0].to(torch.uint8).numpy(), sift)  # (N, 128)
    if len(desc) > per_image:
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        desc = desc[np.sort(rng.choice(len(desc), size=per_image, replace=False))]
    return desc  # (min(N, per_image), 128)


def sample_descriptors(shards, sift: DenseSift = DenseSift(), max_images: int = 2000, per_image: int = 100,
                       seed: int = 0, skipped: list | None = None, num_threads: int | None = None
                       ) -> tuple[np.ndarray, int]:
    """A seeded sample of dense SIFT descriptors from the shards -> ((M, 128) float32, images used).

    About `max_images` images are picked by a seeded hash of their key (all of them if the manifests
    count fewer), then `per_image` descriptors of each (`image_descriptors`): the sample does not depend
    on shard order, on how the shards are split, or on `num_threads` (images processed in parallel).
    """
    from tqdm.auto import tqdm

    paths, total = shard_paths(shards)  # a missing shard is a UserError before any work starts
    fraction = 1.0 if total is None or total <= max_images else max_images / total
    threads = max(1, num_threads or min(torch.get_num_threads(), os.cpu_count() or 1))
    images = iter_shard_images(paths, seed, fraction, skipped)
    chunks: list[np.ndarray] = []
    cv2.setNumThreads(1)  # parallel over images, not inside OpenCV
    with ThreadPoolExecutor(threads) as pool, \
            tqdm(desc="bovw: descriptors", total=None if total is None else min(total, max_images), unit="img") as bar:
        while batch := list(itertools.islice(images, 8 * threads)):  # bounded: never all images in memory
            chunks += pool.map(lambda item: image_descriptors(*item, sift, per_image, seed), batch)
            bar.update(len(batch))
    if not chunks:
        raise UserError(f"bovw: no readable images in {', '.join(map(str, _entries(shards)))}")
    return np.concatenate(chunks), len(chunks)


# ---------------------------------------------------------------------------------------- codebook
def fit_codebook(shards: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike, k: int = 100,
                 bin_size: int = 4, step: int = 8, magnif: float = 6.0, min_contrast: float = 0.5,
                 max_images: int = 2000, per_image: int = 100, batch_size: int = 1024,
                 iterations: int = 300, seed: int = 0, overwrite: bool = False) -> Path:
    """Fit the k-means codebook on dense SIFT from the shards and save it to `output`; returns the path.

    An existing codebook fitted with the same settings on the same shards is reused (not refitted)
    unless `overwrite`; one with other settings is refitted and replaced.
    """
    output = Path(output)
    sift = DenseSift(bin_size=bin_size, step=step, magnif=magnif, min_contrast=min_contrast)
    config = {"k": k, "sift": asdict(sift), "max_images": max_images, "per_image": per_image,
              "batch_size": batch_size, "iterations": iterations, "seed": seed,
              "shards": [str(s) for s in _entries(shards)]}
    if output.exists() and not overwrite:
        try:
            if load_codebook(output)["config"] == config:
                log.info("bovw: reusing codebook %s (same settings)", output)
                return output
        except UserError:
            pass
        shard_paths(shards)  # missing shards: the one-line error comes before anything is logged
        log.info("bovw: %s was fitted with other settings; refitting", output)
    skipped: list[dict] = []
    desc, n_images = sample_descriptors(shards, sift, max_images, per_image, seed, skipped)
    x = torch.from_numpy(desc)  # (M, 128)
    centroids = minibatch_kmeans(x, k, batch_size, iterations, seed)  # (k, 128)
    sizes = torch.bincount(nearest_centroid(x, centroids), minlength=k)
    ckpt = {"format": CODEBOOK_FORMAT, "centroids": centroids, "config": config,
            "stats": {"images": n_images, "descriptors": int(x.shape[0]), "skipped": skipped,
                      "inertia": inertia(x, centroids), "cluster_sizes": sizes.tolist()}}
    save_torch(ckpt, output)
    for s in skipped[:10]:
        log.warning("bovw: skipped %s:%s: %s", s["shard"], s["key"], s["reason"])
    if len(skipped) > 10:
        log.warning("bovw: ... and %d more (listed in the checkpoint's stats)", len(skipped) - 10)
    return output


def fit_codebook_command(shards: Optional[list[str]] = None, output: str = "checkpoints/bovw/codebook.pt", k: int = 100,
                         bin_size: int = 4, step: int = 8, magnif: float = 6.0, min_contrast: float = 0.5,
                         max_images: int = 2000, per_image: int = 100, batch_size: int = 1024,
                         iterations: int = 300, seed: int = 0, overwrite: bool = False) -> None:
    """Fit the bag-of-visual-words k-means codebook on dense SIFT descriptors sampled from shards.

    Args:
        shards: Shard directories (with manifest.json) and/or shard .tar files to sample images from.
        output: Where to save the codebook checkpoint (a torch.save'd dict); reused if the settings match.
        k: Number of visual words (k-means clusters); the paper uses 100.
        bin_size: Side of a SIFT spatial bin in pixels; a descriptor covers 4 x 4 bins.
        step: Pixels between dense SIFT patch centres.
        magnif: Smoothing sigma before the gradients is bin_size / magnif (VLFeat's vl_phow); 0: none.
        min_contrast: Patches with a lower mean gradient magnitude (grey levels/px) get a zero descriptor.
        max_images: About how many images (seeded choice by key) to sample descriptors from.
        per_image: Descriptors sampled per image (seeded).
        batch_size: Mini-batch size of the k-means.
        iterations: Number of mini-batches of the k-means.
        seed: Seed of the image choice, the descriptor choice and the k-means.
        overwrite: Refit even if a codebook with the same settings exists.
    """
    if not shards:
        raise UserError("no shards given (a list of shard folders)", argument="shards")
    path = fit_codebook(shards, output, k=k, bin_size=bin_size, step=step, magnif=magnif,
                        min_contrast=min_contrast, max_images=max_images, per_image=per_image,
                        batch_size=batch_size, iterations=iterations, seed=seed, overwrite=overwrite)
    stats = load_codebook(path)["stats"]
    sizes = stats["cluster_sizes"]
    print(f"bovw: codebook K={len(sizes)} from {stats['descriptors']} descriptors of {stats['images']} images "
          f"({len(stats['skipped'])} skipped, {sizes.count(0)} empty clusters) -> {path}")


def load_codebook(path: str | os.PathLike) -> dict:
    """Load a codebook checkpoint written by `fit_codebook` (missing or foreign file -> UserError)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such codebook; fit one with `python -m mmlightning bovw-codebook`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable codebook checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CODEBOOK_FORMAT:
        raise UserError(f"{path}: not a BOVW codebook (expected format {CODEBOOK_FORMAT})")
    return ckpt


# ---------------------------------------------------------------------------------------- backbone
class BovwBackbone(FeatureBackbone):
    """Dense SIFT + nearest-centroid histograms: (B, 1, H, W) grey 0..255 -> (B, K), rows sum to 1.

    Runs on the CPU (OpenCV) whatever the input's device; the images of a batch are spread over
    `num_threads` threads (default: torch's intra-op thread count), each single-threaded.
    """

    preprocess = "gray"

    def __init__(self, centroids: torch.Tensor, sift: DenseSift = DenseSift(), num_threads: int | None = None,
                 codebook: str | None = None):
        super().__init__()
        self.codebook = codebook  # where the centroids came from (recorded in the aggregates' meta)
        self.register_buffer("centroids", centroids.float().cpu(), persistent=False)  # (K, 128)
        self.sift = sift
        self.feature_dim = int(centroids.shape[0])
        # "layer" names the codebook by content, so a resumed extraction refuses aggregates of another one
        digest = hashlib.sha1(centroids.float().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
        self.layer = f"bovw-k{self.feature_dim}-{digest}"
        self.num_threads = max(1, num_threads or min(torch.get_num_threads(), os.cpu_count() or 1))

    def describe(self) -> dict:
        return {**super().describe(), "codebook": self.codebook, "sift": asdict(self.sift)}

    def _encode(self, image: np.ndarray) -> torch.Tensor:  # (H, W) uint8 -> (K,)
        return bovw_histogram(torch.from_numpy(dense_sift(image, self.sift)), self.centroids.cpu())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, K)
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"bovw wants (B, 1, H, W) greyscale batches (scheme 'gray'), got {tuple(x.shape)}")
        images = x[:, 0].detach().round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # (B, H, W)
        # Parallel over images: OpenCV and torch single-threaded inside each of `num_threads` Python threads
        # (both release the GIL). Nested thread pools oversubscribe a small, busy CPU badly.
        cv2.setNumThreads(1)
        with torch_single_threaded():
            if self.num_threads > 1 and len(images) > 1:
                with ThreadPoolExecutor(self.num_threads) as pool:  # new threads pick up 1 torch thread
                    hists = list(pool.map(self._encode, images))
            else:
                hists = [self._encode(im) for im in images]
        return torch.stack(hists).to(device=x.device, dtype=torch.float32)  # (B, K)


@register_backbone("bovw")
def bovw(codebook: str, num_threads: int | None = None) -> BovwBackbone:
    """The BOVW backbone from a codebook checkpoint (its dense SIFT settings come with it)."""
    ckpt = load_codebook(codebook)
    return BovwBackbone(ckpt["centroids"], DenseSift(**ckpt["config"]["sift"]), num_threads, str(codebook))
