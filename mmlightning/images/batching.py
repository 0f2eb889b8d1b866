"""Raw shard samples -> batches: decode, preprocess, collate, and the in-band bookkeeping of each batch.

A batch (what `batch_stage` yields, built inside the data-loader workers) is a dict:
    images       (B_pil, C, H, W) float32   samples preprocessed in the worker (PIL)
    encoded      (N,) uint8, encoded_sizes (B_dev,) int64   JPEG bytes left for the model's device
    on_device    (B,) bool                  which samples are in `encoded` (order kept within each group)
    keys [B], words [B][*], shards [B], labels (B,) int64 (-1: none)
    shards_done  [shard names whose last sample is in this batch or before]
    fingerprints {name: content fingerprint} of the shards in shards_done
    shards_failed [shard names whose stream failed: not done, their samples must be dropped]
    skipped      [{shard, key, reason}]       samples (and tar problems) skipped since the last batch
    preprocess   the scheme applied (or to apply on the device)
    source       {shards, manifest}: what the batches come from (recorded by the writer)
"""
from __future__ import annotations

import io
import json
import random
import warnings
from typing import Iterable, Iterator

import torch
from PIL import Image
from torch.utils.data import get_worker_info

from mmlightning.images.preprocess import decode_on_device, device_supported, get_scheme
from mmlightning.images.sources.imageio import MAX_PIXELS

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "gif", "tif", "tiff")


def decode_sample(raw: dict, max_pixels: int | None = None, lazy_jpeg: bool = False
                  ) -> tuple[Image.Image | bytes | None, dict | None, str | None]:
    """(image, json meta, None) for a good sample, else (None, None, reason it is skipped).

    Images over `max_pixels` (default: MAX_PIXELS, the limit `shard` applies) are refused before decoding. With `lazy_jpeg`, an
    RGB or greyscale JPEG is only checked (header) and returned as its bytes, for decoding on the device.
    """
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    ext = next((e for e in IMAGE_EXTS if e in raw), None)
    if ext is None:
        return None, None, f"no image member (has {', '.join(sorted(k for k in raw if not k.startswith('__')))})"
    data = raw[ext]
    if not data:
        return None, None, f"empty .{ext}"
    try:
        meta = json.loads(raw["json"]) if "json" in raw else {}
        if not isinstance(meta, dict):
            raise ValueError("not an object")
        words = meta.get("words", meta.get("word", []))
        if not isinstance(words, (str, list)) or not all(isinstance(w, str) for w in words):
            raise ValueError("words must be a string or a list of strings")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nesting too deep
        return None, None, f"bad .json ({type(e).__name__}: {str(e)[:200]})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette/EXIF chatter from PIL
            img = Image.open(io.BytesIO(data))  # reads the header only
            if img.width < 1 or img.height < 1:
                return None, None, "zero-size image"
            if img.width * img.height > max_pixels:
                return None, None, f"{img.width}x{img.height} pixels, over the limit of {max_pixels}"
            if lazy_jpeg and img.format == "JPEG" and img.mode in ("RGB", "L"):
                return bytes(data), meta, None
            img.load()  # decode now: truncated files fail here, not later
    except Exception as e:  # PIL raises many types for bad data
        return None, None, f"not a decodable image ({type(e).__name__}: {e})"
    return img, meta, None


def sample_words(meta: dict) -> list[str]:
    """The words a sample counts for: `words` (list) or a single `word`."""
    words = meta.get("words", meta.get("word", []))
    if isinstance(words, str):
        words = [words]
    return [str(w) for w in words if str(w).strip()]


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack; inside a data-loader worker straight into shared memory (as torch's default_collate
    does), so sending the batch costs no second copy and the worker's heap does not balloon."""
    if get_worker_info() is None:
        return torch.stack(images)
    out = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype).share_memory_()
    return torch.stack(images, out=out)


def collate(samples: list[dict], done: list[tuple[str, str]], failed: list[str], skipped: list[dict],
            scheme: str, source: dict | None) -> dict:
    """Stack preprocessed samples into one batch dict (see the module docstring)."""
    pil = [s["image"] for s in samples if "image" in s]
    enc = [s["encoded"] for s in samples if "encoded" in s]
    return {
        "images": _stack(pil) if pil else torch.zeros(0),  # (B_pil, C, H, W)
        "encoded": torch.frombuffer(bytearray(b"".join(enc)), dtype=torch.uint8) if enc else torch.zeros(0, dtype=torch.uint8),
        "encoded_sizes": torch.tensor([len(e) for e in enc], dtype=torch.int64),  # (B_dev,)
        "on_device": torch.tensor(["encoded" in s for s in samples], dtype=torch.bool),  # (B,)
        "keys": [s["key"] for s in samples],
        "words": [s["words"] for s in samples],
        "shards": [s["shard"] for s in samples],
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),  # (B,)
        "shards_done": [name for name, _ in done],
        "fingerprints": dict(done),
        "shards_failed": list(failed),
        "skipped": list(skipped),
        "preprocess": scheme,
        "source": source,
    }


def _prepare(raw: dict, fn, classes, require_words: bool, lazy_jpeg: bool) -> tuple[dict | None, str | None]:
    """One raw sample -> (sample dict, None) or (None, reason it is skipped)."""
    img, meta, reason = decode_sample(raw, lazy_jpeg=lazy_jpeg)
    words = sample_words(meta) if meta is not None else []
    label = -1
    if reason is None and require_words and not words:
        reason = "no words in .json"
    if reason is None and classes is not None:
        label = classes.get(str(meta.get("label")), -1)
        if label < 0:
            reason = f"label {meta.get('label')!r} not among the {len(classes)} classes"
    if reason is not None:
        return None, reason
    sample = {"key": raw["__key__"], "words": words, "shard": raw["__shard__"], "label": label}
    if isinstance(img, bytes):
        sample["encoded"] = img
        return sample, None
    try:
        sample["image"] = fn(img)  # (C, H, W)
    except Exception as e:  # a broken image can still fail in convert/resize
        return None, f"preprocessing failed ({type(e).__name__}: {e})"
    return sample, None


def batch_stage(items: Iterable[dict], scheme: str, batch_size: int, classes: dict[str, int] | None = None,
                require_words: bool = True, shuffle_buffer: int = 0, decode: str = "pil",
                source: dict | None = None) -> Iterator[dict]:
    """Raw samples and end-of-shard markers (read_shards.tar_samples) -> batch dicts (module docstring).

    A shard is listed in `shards_done` of the batch holding its last sample (or of the next batch, or of
    a final empty batch, when its tail was skipped). With `classes`, samples need a known `label`.
    `shuffle_buffer` > 0 shuffles samples within a window (training), which delays shard completion.
    """
    fn = get_scheme(scheme)
    lazy = decode == "device" and device_supported(scheme)
    buf: list[dict] = []
    pending: list[tuple[int, str, str]] = []  # (samples accepted when the shard ended, name, fingerprint)
    failed: list[str] = []
    skipped: list[dict] = []
    seen = 0  # samples accepted so far
    batches = 0

    def flush(n: int) -> dict:
        nonlocal buf
        out, buf = buf[:n], buf[n:]
        emitted = seen - len(buf)
        done = [(name, fp) for pos, name, fp in pending if pos <= emitted]
        pending[:] = [p for p in pending if p[0] > emitted]
        batch = collate(out, done, failed, skipped, scheme, source)
        skipped.clear()
        failed.clear()
        return batch

    for raw in items:
        if "__end__" in raw:
            skipped.extend(raw["__problems__"])
            if raw["__failed__"]:  # its samples still buffered are dropped; the writer drops those sent
                failed.append(raw["__end__"])
                kept = [s for s in buf if s["shard"] != raw["__end__"]]
                seen -= len(buf) - len(kept)
                buf = kept
            else:
                pending.append((seen, raw["__end__"], raw["__fingerprint__"]))
            continue
        sample, reason = _prepare(raw, fn, classes, require_words, lazy)
        if reason is not None:
            skipped.append({"shard": raw["__shard__"], "key": raw["__key__"], "reason": reason})
            continue
        if shuffle_buffer > 0:
            buf.insert(random.randint(0, len(buf)), sample)
        else:
            buf.append(sample)
        seen += 1
        if len(buf) >= batch_size + shuffle_buffer:
            batches += 1
            yield flush(batch_size)
    while buf:
        batches += 1
        yield flush(batch_size)
    if pending or skipped or failed or not batches:
        yield flush(0)  # an empty batch that only reports the last shards done / skipped samples (and the
        # scheme and source, even when there was nothing to read: the writer checks them on a resume)


def batch_count(samples: int, batch_size: int) -> int:
    """The batches `batch_stage` yields (no shuffle buffer) for `samples` accepted samples: the full batches,
    then the last partial one or, when they fill whole batches (or there are none), the final report batch.
    Given a manifest's count, skipped samples and failed shards make it an over-estimate."""
    return samples // batch_size + 1


def pad_batches(batches: Iterable[dict], want: int | None, scheme: str, source: dict | None) -> Iterator[dict]:
    """`batches`, then empty ones up to `want` (a reader's `batch_count` over its manifest counts), so that a
    count that skipped samples made too high still ends the progress bar full; never fewer than `batches`."""
    n = 0
    for n, batch in enumerate(batches, 1):
        yield batch
    for _ in range((want or 0) - n):
        yield collate([], [], [], [], scheme, source)


def batch_images(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """A batch's images on `device` in sample order, decoding its JPEG bytes there (decode="device").

    Returns ((B_ok, C, H, W) float32, (B,) bool: which samples are in it, skipped entries for the JPEGs
    that failed to decode).
    """
    n = len(batch["keys"])
    on = batch.get("on_device")
    if on is None or not bool(on.any()):
        return batch["images"].to(device), torch.ones(n, dtype=torch.bool), []
    on = on.cpu()
    encoded = list(torch.split(batch["encoded"].cpu(), batch["encoded_sizes"].cpu().tolist()))
    decoded, errors = decode_on_device(encoded, batch["preprocess"], device)  # (B_dev_ok, 3, 224, 224)
    keep = torch.ones(n, dtype=torch.bool)
    failed = []
    for pos, err in zip(on.nonzero().flatten().tolist(), errors):
        if err is not None:
            keep[pos] = False
            failed.append({"shard": batch["shards"][pos], "key": batch["keys"][pos], "reason": err})
    full = torch.empty((n, *decoded.shape[1:]), device=device)  # (B, 3, 224, 224)
    if bool((~on).any()):
        full[(~on).to(device)] = batch["images"].to(device)
    full[(on & keep).to(device)] = decoded
    return full[keep.to(device)], keep, failed
