"""Reading one selected image as a small RGB picture, whatever it is stored as.

    img = load_image(ref, max_side=512)   # PIL RGB, longest side <= 512, transparency on white
    data, ext = encode_image(img, like=ref.path)   # (bytes, "jpg" | "png")

Handles plain files, members of tar archives (`archive.tar::member`), SVGs (rendered with
`rsvg-convert` from Debian's librsvg2-bin straight at the target size) and huge rasters: a raster over
`max_pixels` is rendered from its `fallback_svg` when there is one, else refused, before any pixel is
decoded, so that no image ever takes gigabytes. Only regular files are read (a FIFO or device named like
an image is refused without opening it for a blocking read), and at most `max_bytes` of them (default
64 MiB; for a tar member, its size in the archive). Every failure is an `ImageError` with a short reason,
which the caller records as a skipped sample.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import warnings
from pathlib import Path

from PIL import Image

from mmlightning.images import preprocess
from mmlightning.images.sources.base import MAX_IMAGE_BYTES, ImageRef, NotReadable, file_problem, mib, read_regular

__all__ = ["MAX_IMAGE_BYTES", "ImageError", "encode_image", "load_image", "read_bytes", "render_svg"]

MAX_PIXELS = 40_000_000   # larger rasters are rendered from SVG or skipped
RENDER_TIMEOUT_S = 60
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


class ImageError(Exception):
    """An image that cannot be used (undecodable, too large, unreadable); the message is the reason."""


def read_bytes(path: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file or of a tar member written as `archive.tar::member`, at most `max_bytes`."""
    try:
        if "::" in path:
            archive, member = path.split("::", 1)
            problem = file_problem(archive)
            if problem:
                raise ImageError(f"{archive}: {problem}")
            with tarfile.open(archive) as tar:
                info = tar.getmember(member)
                if info.size > max_bytes:
                    raise ImageError(f"{info.size} bytes, larger than the {mib(max_bytes)} cap")
                fh = tar.extractfile(info)
                if fh is None:
                    raise ImageError(f"{member} is not a file in {archive}")
                data = fh.read(max_bytes + 1)  # a link member's target can be larger than its header says
                if len(data) > max_bytes:
                    raise ImageError(f"larger than the {mib(max_bytes)} cap")
                return data
        return read_regular(path, max_bytes)
    except NotReadable as e:
        raise ImageError(str(e)) from None
    except (OSError, tarfile.TarError, KeyError) as e:
        raise ImageError(f"unreadable: {e}") from None


def render_svg(svg: str, max_side: int, max_bytes: int = MAX_IMAGE_BYTES) -> Image.Image:
    """Render an SVG so that it fits in max_side x max_side (aspect kept), with rsvg-convert.

    The SVG must be a regular file of at most `max_bytes` (checked before rsvg-convert opens it).
    """
    problem = file_problem(svg)
    if problem:
        raise ImageError(problem)
    if (size := Path(svg).stat().st_size) > max_bytes:
        raise ImageError(f"{size} bytes, larger than the {mib(max_bytes)} cap")
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise ImageError("SVG needs rsvg-convert (apt-get install librsvg2-bin)")
    try:
        out = subprocess.run([exe, "-a", "-w", str(max_side), "-h", str(max_side), svg],
                             capture_output=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ImageError(f"rsvg-convert took over {RENDER_TIMEOUT_S} s") from None
    if out.returncode != 0 or not out.stdout:
        msg = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ImageError(f"rsvg-convert failed: {msg[-1] if msg else 'no output'}")
    return _decode(out.stdout, max_side, MAX_PIXELS)


def _decode(data: bytes, max_side: int, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"too large ({w}x{h} = {w * h / 1e6:.0f} megapixels)")
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale directly
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageError(f"too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError("cannot decode image: not a known image format") from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from None
    return to_rgb(img, max_side)


def to_rgb(img: Image.Image, max_side: int) -> Image.Image:
    """RGB with any transparency composited on white, longest side capped at max_side."""
    img = preprocess.to_rgb(img)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img


def load_image(ref: ImageRef, max_side: int = 512, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_IMAGE_BYTES) -> Image.Image:
    """The image of `ref` as RGB, longest side <= max_side; raises ImageError with the reason."""
    if ref.path.lower().endswith(".svg"):
        return render_svg(ref.path, max_side, max_bytes)
    data = read_bytes(ref.path, max_bytes)
    try:
        return _decode(data, max_side, max_pixels)
    except ImageError as e:
        if ref.fallback_svg and str(e).startswith("too large"):
            return render_svg(ref.fallback_svg, max_side, max_bytes)
        raise


def encode_image(img: Image.Image, like: str) -> tuple[bytes, str]:
    """Encode as JPEG (quality 90) when the original was a JPEG, else PNG; returns (bytes, extension)."""
    buf = io.BytesIO()
    if like.lower().endswith(JPEG_SUFFIXES):
        img.save(buf, format="JPEG", quality=90)
        return buf.getvalue(), "jpg"
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue(), "png"
