"""Image preprocessing schemes by name: a PIL image in, a (C, H, W) float32 tensor out.

    fn = get_scheme("imagenet")          # the paper's ImageNet scheme
    x = fn(Image.open("cat.jpg"))        # (3, 224, 224) float32, pixel values - 128

Schemes (all produce 224 x 224, channels in RGB order, values on the 0..255 pixel scale unless noted):
- "imagenet" (paper, ImageNet images): largest centred square -> resample to 256 x 256 -> crop 16 px
  off each border (224 x 224) -> subtract 128.
- "esp" (paper, ESP Game images): rescale to fit inside 224 x 224 keeping the aspect ratio, centre in
  the 224 x 224 field with zero (black) padding, then subtract 128 (so the padding reads -128, in the
  order the paper states the steps).
- "efficientnet": the "imagenet" geometry, then (pixel - 127) / 128 (EfficientNet-Lite's TF-Lite
  normalisation; the 224/256 centre crop is its evaluation crop).
- "torchvision": the "imagenet" geometry (= resize shorter side to 256, centre crop 224), then
  (pixel / 255 - mean) / std with the ImageNet mean and std that torchvision's weights expect.
- "<norm>_esp" and "<norm>_fit" for <norm> in efficientnet, torchvision: the ESP geometry (fit inside
  224 x 224, centred) with that normalisation, padded black ("_esp", the paper's ESP Game scheme for a
  backbone that is not the paper's net) or white ("_fit": for cut-outs and clip art, whose transparency
  is composited on white, so the padding is more of the same background). "imagenet_fit" is the paper's
  pixel - 128 with white padding. A source picks its scheme with `preprocess:` (configs/reproduce*.yaml).

Every scheme first converts to RGB (`to_rgb`): greyscale, CMYK, palette and alpha images all become
3-channel RGB, alpha composited on white. Other modules add schemes with `@register_scheme("name")`
. Schemes are pure functions and run in data-loader workers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

from mmlightning.errors import UserError

Scheme = Callable[[Image.Image], torch.Tensor]
_SCHEMES: dict[str, Scheme] = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_scheme(name: str):
    """Decorator: register `fn(PIL.Image) -> Tensor` as preprocessing scheme `name`."""

    def deco(fn: Scheme) -> Scheme:
        _SCHEMES[name] = fn
        return fn

    return deco


def available_schemes() -> list[str]:
    return sorted(_SCHEMES)


def get_scheme(name: str) -> Scheme:
    """The scheme registered as `name`; unknown -> UserError."""
    if name not in _SCHEMES:
        raise UserError(f"unknown preprocessing scheme {name!r}; known: {', '.join(available_schemes())}")
    return _SCHEMES[name]


# ---------------------------------------------------------------------------------------- colour
def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency (RGBA, LA, palette with transparency) composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":  # palette: keep its transparency, if any, as alpha
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a * 255.0 / peak, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, F, ...


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 on the 0..255 scale."""
    a = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float()


# -------------------------------------------------------------------------------------- geometry
def centre_square(img: Image.Image) -> Image.Image:
    """The largest centred square of `img` (side = the shorter side)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def imagenet_geometry(img: Image.Image, resize: int = 256, crop: int = 224) -> Image.Image:
    """Largest centred square -> `resize` x `resize` (bilinear) -> centre crop `crop` x `crop`."""
    img = centre_square(to_rgb(img))
    if img.size != (resize, resize):
        img = img.resize((resize, resize), Image.BILINEAR)
    m = (resize - crop) // 2
    return img.crop((m, m, m + crop, m + crop))


def fit_and_pad(img: Image.Image, size: int = 224, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Rescale to fit inside size x size keeping the aspect ratio; centre on a `fill` (black) field."""
    img = to_rgb(img)
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    field = Image.new("RGB", (size, size), fill)
    field.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return field


# --------------------------------------------------------------------------------------- schemes
_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)

# (3, H, W) pixels on the 0..255 scale -> the network's input range, one per weight family
_NORMALISE = {"imagenet": lambda x: x - 128.0,                      # the paper's nets
              "efficientnet": lambda x: (x - 127.0) / 128.0,        # EfficientNet-Lite (TF-Lite), about [-1, 1]
              "torchvision": lambda x: (x / 255.0 - _MEAN) / _STD}  # torchvision's ImageNet weights


@register_scheme("imagenet")
def imagenet(img: Image.Image) -> torch.Tensor:
    """The paper's ImageNet scheme: (3, 224, 224), pixel - 128."""
    return _NORMALISE["imagenet"](to_tensor(imagenet_geometry(img)))


@register_scheme("esp")
def esp(img: Image.Image) -> torch.Tensor:
    """The paper's ESP Game scheme: fit inside 224 x 224, centre, zero pad; (3, 224, 224), pixel - 128."""
    return _NORMALISE["imagenet"](to_tensor(fit_and_pad(img)))


@register_scheme("efficientnet")
def efficientnet(img: Image.Image) -> torch.Tensor:
    """EfficientNet-Lite: imagenet geometry, (pixel - 127) / 128; (3, 224, 224) in about [-1, 1]."""
    return _NORMALISE["efficientnet"](to_tensor(imagenet_geometry(img)))


@register_scheme("torchvision")
def torchvision_scheme(img: Image.Image) -> torch.Tensor:
    """torchvision's ImageNet weights: imagenet geometry, (pixel / 255 - mean) / std; (3, 224, 224)."""
    return _NORMALISE["torchvision"](to_tensor(imagenet_geometry(img)))


# ESP geometry (fit and pad) with each normalisation: "<norm>_esp" pads black, "<norm>_fit" pads white
def _fit_scheme(norm: str, fill: tuple[int, int, int]) -> Scheme:
    def scheme(img: Image.Image) -> torch.Tensor:  # (3, 224, 224)
        return _NORMALISE[norm](to_tensor(fit_and_pad(img, fill=fill)))

    return scheme


for _norm in _NORMALISE:
    if _norm != "imagenet":  # "esp" itself is imagenet_esp
        register_scheme(f"{_norm}_esp")(_fit_scheme(_norm, (0, 0, 0)))
    register_scheme(f"{_norm}_fit")(_fit_scheme(_norm, (255, 255, 255)))


@register_scheme("imagenet_train")
def imagenet_train(img: Image.Image) -> torch.Tensor:
    """Training augmentation for the paper's CNN: square -> 256 x 256, random 224 crop, random h-flip, - 128."""
    img = centre_square(to_rgb(img))
    if img.size != (256, 256):
        img = img.resize((256, 256), Image.BILINEAR)
    left, top = (int(v) for v in torch.randint(0, 256 - 224 + 1, (2,)))
    img = img.crop((left, top, left + 224, top + 224))
    if torch.rand(()) < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return _NORMALISE["imagenet"](to_tensor(img))


GRAY_SIZE = 256  # side of the "gray" scheme's square images


@register_scheme("gray")
def gray(img: Image.Image) -> torch.Tensor:
    """BOVW scheme: largest centred square -> 256 x 256 -> greyscale; (1, 256, 256) float32, 0..255."""
    img = centre_square(to_rgb(img))
    if img.size != (GRAY_SIZE, GRAY_SIZE):
        img = img.resize((GRAY_SIZE, GRAY_SIZE), Image.BILINEAR)
    a = np.asarray(img.convert("L"), dtype=np.uint8)  # (256, 256)
    return torch.from_numpy(a.copy()).float().unsqueeze(0)  # (1, 256, 256)


# ------------------------------------------------------------------------- decoding on the device
# A scheme's device version: (geometry, normalisation, padding fill). "square" = imagenet_geometry,
# "fit" = fit_and_pad. Schemes missing here (gray, imagenet_train) always run through PIL.
_DEVICE = {"imagenet": ("square", "imagenet", 0), "efficientnet": ("square", "efficientnet", 0),
           "torchvision": ("square", "torchvision", 0), "esp": ("fit", "imagenet", 0)}
for _norm in _NORMALISE:
    if _norm != "imagenet":
        _DEVICE[f"{_norm}_esp"] = ("fit", _norm, 0)
    _DEVICE[f"{_norm}_fit"] = ("fit", _norm, 255)


def device_supported(name: str) -> bool:
    """Whether scheme `name` has a device version (decode="device" in the shard data module)."""
    return name in _DEVICE


def _resize_u8(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, h, w) float on the 0..255 scale, rounded like PIL's 8-bit bilinear resize."""
    y = torch.nn.functional.interpolate(x.unsqueeze(0).float(), size=(h, w), mode="bilinear",
                                        align_corners=False, antialias=True)[0]
    return y.round_().clamp_(0, 255)


def geometry_on_device(x: torch.Tensor, geometry: str, fill: int = 0, resize: int = 256, crop: int = 224
                       ) -> torch.Tensor:
    """One decoded (3, H, W) uint8 image -> (3, crop, crop) float, 0..255: the PIL geometry, on x's device."""
    _, h, w = x.shape
    if geometry == "square":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        x = x[:, top:top + s, left:left + s]
        y = _resize_u8(x, resize, resize) if s != resize else x.float()
        m = (resize - crop) // 2
        return y[:, m:m + crop, m:m + crop]
    scale = crop / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    y = _resize_u8(x, nh, nw) if (nw, nh) != (w, h) else x.float()
    field = torch.full((3, crop, crop), float(fill), device=x.device)
    top, left = (crop - nh) // 2, (crop - nw) // 2
    field[:, top:top + nh, left:left + nw] = y
    return field


def normalise_on_device(x: torch.Tensor, norm: str) -> torch.Tensor:
    """(B, 3, H, W) pixels 0..255 -> the network's input range (device-safe `_NORMALISE`)."""
    if norm == "torchvision":
        return (x / 255.0 - _MEAN.to(x.device)) / _STD.to(x.device)
    return _NORMALISE[norm](x)


def decode_on_device(encoded: list[torch.Tensor], scheme: str, device: torch.device
                     ) -> tuple[torch.Tensor, list[str | None]]:
    """JPEG byte tensors -> ((B_ok, 3, 224, 224) float32 on `device`, per input None or why it failed).

    Decoding is torchvision.io.decode_jpeg, batched (nvJPEG on a CUDA device, libjpeg-turbo on the CPU);
    geometry and normalisation follow scheme `scheme` on the device. Resampling is torch's antialiased
    bilinear (rounded to 8 bits like PIL), so the result differs slightly from the PIL path: measured on
    the synthetic shards (tests/test_webdataset_decode.py) at most 2 pixel levels (0..255 scale) before
    normalisation; docs/FORMATS.md gives the measured tolerance.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    geometry, norm, fill = _DEVICE[scheme]
    device = torch.device(device)
    try:
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        errors: list[str | None] = [None] * len(encoded)
    except RuntimeError:  # one bad image fails the whole batch: decode one by one to find it
        images, errors = [], []
        for e in encoded:
            try:
                images.append(decode_jpeg(e, mode=ImageReadMode.RGB, device=device))
                errors.append(None)
            except RuntimeError as exn:
                images.append(None)
                errors.append(f"not a decodable image (decode_jpeg: {str(exn).splitlines()[0]})")
    out = [geometry_on_device(im.to(device), geometry, fill) for im in images if im is not None]
    if not out:
        return torch.zeros(0, 3, 224, 224, device=device), errors
    return normalise_on_device(torch.stack(out), norm), errors  # (B_ok, 3, 224, 224)
