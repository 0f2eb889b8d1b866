"""Bag-of-visual-words baseline: dense SIFT, a mini-batch k-means codebook, one histogram per image.

    python -m mmlightning bovw-codebook --config configs/bovw_codebook.yaml
    python -m mmlightning predict --config configs/extract_bovw.yaml

    from mmlightning.bovw import fit_codebook
    codebook = fit_codebook(["checkpoints/shards/tuxpaint"], "checkpoints/bovw/tuxpaint/codebook.pt", k=100)
    run_extraction(shards, out_dir, backbone="bovw", backbone_kwargs={"codebook": str(codebook)})

The paper's baseline (VLFeat DSIFT, 100 k-means words, one 100-bin histogram per image), rebuilt as:

1. Preprocessing, scheme "gray" (registered in `mmlightning.preprocess`): RGB (transparency on
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
5. Backbone "bovw" (`mmlightning.backbones`): preprocess "gray", feature_dim K, forward maps
   (B, 1, H, W) -> (B, K) histograms; the extraction pipeline aggregates them per word (mean, max).
   It runs on the CPU whatever the device, parallel over the images of a batch (`num_threads`, each
   thread with single-threaded OpenCV and torch: nested thread pools crawl on a small, busy CPU). Its
   `layer` is "bovw-k<K>-<centroid hash>", so resuming an extraction with another codebook is refused.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from mmlightning.atomic import atomic_path
from mmlightning.backbones import FeatureBackbone, register_backbone
from mmlightning.errors import UserError
from mmlightning.preprocess import centre_square, register_scheme, to_rgb

CODEBOOK_FORMAT = "mmlightning-bovw-codebook/1"
GRAY_SIZE = 256  # side of the "gray" scheme's square images
SPATIAL_BINS = 4  # OpenCV's SIFT descriptor has a fixed 4 x 4 spatial grid (SIFT_DESCR_WIDTH)
DESCRIPTOR_DIM = SPATIAL_BINS * SPATIAL_BINS * 8
_OPENCV_BIN_FACTOR = 1.5  # OpenCV: spatial bin width = SIFT_DESCR_SCL_FCTR (3) * KeyPoint.size / 2
_OPENCV_INIT_SIGMA = 0.5  # OpenCV assumes the input is already blurred by this much (SIFT_INIT_SIGMA)


# ---------------------------------------------------------------------------------- preprocessing
@register_scheme("gray")
def gray(img: Image.Image) -> torch.Tensor:
    """BOVW scheme: largest centred square -> 256 x 256 -> greyscale; (1, 256, 256) float32, 0..255."""
    img = centre_square(to_rgb(img))
    if img.size != (GRAY_SIZE, GRAY_SIZE):
        img = img.resize((GRAY_SIZE, GRAY_SIZE), Image.BILINEAR)
    a = np.asarray(img.convert("L"), dtype=np.uint8)  # (256, 256)
    return torch.from_numpy(a.copy()).float().unsqueeze(0)  # (1, 256, 256)


# ------------------------------------------------------------------------------------- dense SIFT
@dataclass(frozen=True)
class DenseSift:
    """Dense SIFT settings (VLFeat names): patch = 4 x 4 bins of `bin_size` px, one every `step` px."""

    bin_size: int = 4
    step: int = 8
    magnif: float = 6.0
    min_contrast: float = 0.5

    def __post_init__(self):
        if self.bin_size < 1 or self.step < 1:
            raise UserError(f"dense SIFT: bin_size ({self.bin_size}) and step ({self.step}) must be >= 1")
        if self.magnif < 0 or self.min_contrast < 0:
            raise UserError(f"dense SIFT: magnif ({self.magnif}) and min_contrast ({self.min_contrast}) must be >= 0")

    @property
    def patch_size(self) -> int:
        return SPATIAL_BINS * self.bin_size

    @property
    def smoothing(self) -> float:
        """Gaussian sigma applied before the gradients (VLFeat vl_phow: bin_size / magnif)."""
        return self.bin_size / self.magnif if self.magnif > 0 else 0.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return dense_sift(image, self)


def grid_centres(height: int, width: int, patch_size: int, step: int) -> np.ndarray:
    """Integer patch centres (x, y) of a dense grid whose patches lie inside the image; (N, 2) int.

    The first patch starts at pixel 0 (centre patch_size // 2); rows vary slowest. Empty if the image is
    smaller than one patch.
    """
    half = patch_size // 2
    xs = np.arange(half, width - (patch_size - half) + 1, step)
    ys = np.arange(half, height - (patch_size - half) + 1, step)
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx) each
    return np.stack([gx.ravel(), gy.ravel()], axis=1)  # (ny * nx, 2)


@lru_cache(maxsize=16)
def _keypoints(height: int, width: int, patch_size: int, step: int, bin_size: int) -> tuple:
    size = bin_size / _OPENCV_BIN_FACTOR  # OpenCV's bin width is 1.5 * size: this makes it bin_size
    return tuple(cv2.KeyPoint(float(x), float(y), size, 0.0)
                 for x, y in grid_centres(height, width, patch_size, step))


@lru_cache(maxsize=8)
def _sift(smoothing: float) -> cv2.SIFT:
    # OpenCV blurs its base image by sqrt(sigma^2 - 0.5^2): this sigma makes the net blur `smoothing`.
    return cv2.SIFT_create(sigma=float(np.sqrt(smoothing ** 2 + _OPENCV_INIT_SIGMA ** 2)))


def patch_contrast(image: np.ndarray, centres: np.ndarray, patch_size: int, smoothing: float) -> np.ndarray:
    """Mean gradient magnitude (grey levels / px) of the smoothed image over each patch; (N,) float32."""
    f = image.astype(np.float32)  # (H, W)
    if smoothing > 0:
        f = cv2.GaussianBlur(f, (0, 0), smoothing)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1) * 0.5  # central differences
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1) * 0.5
    mean_mag = cv2.boxFilter(cv2.magnitude(gx, gy), -1, (patch_size, patch_size),
                             normalize=True, borderType=cv2.BORDER_REFLECT)  # (H, W)
    return mean_mag[centres[:, 1], centres[:, 0]]


def dense_sift(image: np.ndarray, config: DenseSift = DenseSift()) -> np.ndarray:
    """Dense SIFT of a greyscale uint8 image (H, W) -> (N, 128) float32 descriptors on the 0..255 scale.

    Descriptor i belongs to `grid_centres(H, W, config.patch_size, config.step)[i]`; dimensions are
    ordered (spatial row, spatial column, orientation) as OpenCV lays them out.
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"dense_sift wants a (H, W) uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape
    kps = _keypoints(h, w, config.patch_size, config.step, config.bin_size)
    if not kps:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32)
    out_kps, desc = _sift(config.smoothing).compute(image, kps)  # desc: (N, 128) float32
    if desc is None or len(out_kps) != len(kps):  # OpenCV must keep every provided keypoint, in order
        raise RuntimeError(f"OpenCV SIFT returned {len(out_kps)} of {len(kps)} dense keypoints")
    if config.min_contrast > 0:
        centres = grid_centres(h, w, config.patch_size, config.step)
        flat = patch_contrast(image, centres, config.patch_size, config.smoothing) < config.min_contrast
        desc[flat] = 0.0
    return desc


# ------------------------------------------------------------------------------ k-means, histograms
@contextmanager
def torch_single_threaded() -> Iterator[None]:
    """Run torch ops single-threaded inside the block: the small matrices here lose more to waking a
    thread team on a busy CPU than they gain (parallelism, where wanted, is over images instead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean) of each row: (N, D), (K, D) -> (N,) int64."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
    d = centroids.pow(2).sum(1)[None, :] - 2.0 * (x @ centroids.T)  # (N, K)
    return d.argmin(1)


def bovw_histogram(descriptors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L1-normalised histogram of nearest centroids: (N, D), (K, D) -> (K,) (all zeros when N = 0)."""
    k = centroids.shape[0]
    if descriptors.shape[0] == 0:
        return torch.zeros(k, dtype=centroids.dtype)
    counts = torch.bincount(nearest_centroid(descriptors, centroids), minlength=k).to(centroids.dtype)
    return counts / counts.sum()  # (K,)


def kmeans_pp_init(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): (N, D) -> (k, D) distinct rows of x."""
    n = x.shape[0]
    first = int(rng.integers(n))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1).double()  # (N,) distance to the nearest chosen centre
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:
            raise UserError(f"bovw codebook: the descriptor sample has fewer than k={k} distinct descriptors; "
                            "lower k or sample more images")
        i = int(rng.choice(n, p=(d2 / total).numpy()))
        centres.append(x[i])
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1).double())
    return torch.stack(centres)  # (k, D)


def minibatch_kmeans(x: np.ndarray | torch.Tensor, k: int = 100, batch_size: int = 1024,
                     iterations: int = 300, seed: int = 0, init_size: int = 20000) -> torch.Tensor:
    """Mini-batch k-means (Sculley 2010) on rows of x (N, D) -> centroids (k, D) float32; deterministic.

    Each iteration draws `batch_size` rows, assigns them to their nearest centroid, and moves every
    centroid to the running mean of all rows ever assigned to it (per-centre learning rate 1 / count;
    the per-sample updates of one batch, done at once, give the same running mean).
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))  # (N, D)
    n = x.shape[0]
    if n < k:
        raise UserError(f"bovw codebook: {n} descriptors sampled, fewer than k={k}; sample more images or lower k")
    rng = np.random.default_rng(seed)
    with torch_single_threaded():
        init_rows = rng.choice(n, size=min(n, init_size), replace=False)
        centroids = kmeans_pp_init(x[torch.from_numpy(init_rows)], k, rng).clone()  # (k, D)
        counts = torch.zeros(k, dtype=torch.float64)  # (k,) rows assigned so far
        for _ in range(iterations):
            batch = x[torch.from_numpy(rng.integers(0, n, size=min(batch_size, n)))]  # (b, D)
            nearest = nearest_centroid(batch, centroids)  # (b,)
            sums = torch.zeros_like(centroids, dtype=torch.float64).index_add_(0, nearest, batch.double())  # (k, D)
            n_new = torch.bincount(nearest, minlength=k).double()  # (k,)
            hit = n_new > 0
            total = counts[hit] + n_new[hit]
            centroids[hit] = ((centroids[hit].double() * counts[hit, None] + sums[hit]) / total[:, None]).float()
            counts[hit] = total
    return centroids


def inertia(x: torch.Tensor, centroids: torch.Tensor) -> float:
    """Mean squared distance of the rows of x (N, D) to their nearest centroid."""
    nearest = nearest_centroid(x, centroids)
    return float((x - centroids[nearest]).pow(2).sum(1).mean())


# ------------------------------------------------------------------------------- reading the shards
def _entries(shards) -> list:
    return [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)


def shard_paths(shards) -> tuple[list[Path], int | None]:
    """Shard tars of shard directories (manifest order), .tar files or globs -> (paths, total samples or None).

    The total comes from the manifests; it is None when some entry has no manifest.
    """
    from mmlightning.shards import list_shards

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

    Reading and decoding are the extraction pipeline's (`mmlightning.shards`), so the same samples are
    skipped for the same reasons.
    """
    from mmlightning.shards import decode_sample, read_shard

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
                print(f"bovw: reusing codebook {output} (same settings)")
                return output
        except UserError:
            pass
        print(f"bovw: {output} was fitted with other settings; refitting")
    skipped: list[dict] = []
    desc, n_images = sample_descriptors(shards, sift, max_images, per_image, seed, skipped)
    x = torch.from_numpy(desc)  # (M, 128)
    centroids = minibatch_kmeans(x, k, batch_size, iterations, seed)  # (k, 128)
    sizes = torch.bincount(nearest_centroid(x, centroids), minlength=k)
    ckpt = {"format": CODEBOOK_FORMAT, "centroids": centroids, "config": config,
            "stats": {"images": n_images, "descriptors": int(x.shape[0]), "skipped": skipped,
                      "inertia": inertia(x, centroids), "cluster_sizes": sizes.tolist()}}
    with atomic_path(output) as tmp:
        torch.save(ckpt, tmp)
    print(f"bovw: codebook K={k} from {x.shape[0]} descriptors of {n_images} images "
          f"({len(skipped)} skipped, {int((sizes == 0).sum())} empty clusters) -> {output}")
    for s in skipped[:10]:
        print(f"bovw: skipped {s['shard']}:{s['key']}: {s['reason']}")
    if len(skipped) > 10:
        print(f"bovw: ... and {len(skipped) - 10} more (listed in the checkpoint's stats)")
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
        raise UserError("bovw-codebook: no shards given (--shards '[dir1, dir2]' or `shards:` in the config)")
    fit_codebook(shards, output, k=k, bin_size=bin_size, step=step, magnif=magnif, min_contrast=min_contrast,
                 max_images=max_images, per_image=per_image, batch_size=batch_size, iterations=iterations,
                 seed=seed, overwrite=overwrite)


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
