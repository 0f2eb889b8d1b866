"""Dense SIFT with VLFeat's geometry, on OpenCV's SIFT descriptor (the BOVW baseline's first step).

    desc = dense_sift(gray_uint8_image)            # (N, 128) float32, 0..255
    DenseSift(bin_size=4, step=8)(image)           # the same, settings as an object

See `mmlightning.features.bovw` for how the geometry maps onto OpenCV (bin width, smoothing, contrast).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from mmlightning.errors import UserError

SPATIAL_BINS = 4  # OpenCV's SIFT descriptor has a fixed 4 x 4 spatial grid (SIFT_DESCR_WIDTH)
DESCRIPTOR_DIM = SPATIAL_BINS * SPATIAL_BINS * 8
_OPENCV_BIN_FACTOR = 1.5  # OpenCV: spatial bin width = SIFT_DESCR_SCL_FCTR (3) * KeyPoint.size / 2
_OPENCV_INIT_SIGMA = 0.5  # OpenCV assumes the input is already blurred by this much (SIFT_INIT_SIGMA)


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
