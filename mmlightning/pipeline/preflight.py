"""Checks that run before the first stage, so that a bad path or a missing GPU fails in seconds, in one line.

`check_inputs(cfg)`, in this order, each failure a one-line UserError naming the config key:
- corpus: every path exists (a path still reading `/path/to/...` is the config's FILL IN placeholder; a
  missing text8 says where to get it and where to put it); aliases (gcide, text8) are installed;
- WordNet 3.0 is there (every image source lemmatises with it);
- sources: every root exists and has its source's layout (ImageNet: `train/<wnid>/` folders or
  `train/<wnid>.tar` archives, and both hierarchy files or neither; ESP Game: one of its layouts;
  folder: `<word>/` sub-folders), word lists exist;
- benchmarks load;
- the CNN checkpoint named in `backbone_kwargs` exists and is a checkpoint of that backbone (loaded once);
- the accelerator asked for is there, with at least `devices` devices (CPU: cores).
`check_writable(folder, what)`: a folder that must receive output can be written (not under a file,
not read-only), tried by writing a probe file.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mmlightning.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("checkpoint", "weights", "codebook", "path", "ckpt_path")
PLACEHOLDER = "/path/to/"
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
WHAT = {"imagenet": "ImageNet (the folder holding train/<wnid>/, wordnet.is_a.txt and words.txt)",
        "esp": "ESP Game (ESPGame100k: originals/ + labels/; ESP-ImageSet: images/ + LABELS/)",
        "folder": "image folder (<word>/<images>)"}


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _placeholder(where: str, value: str, what: str) -> None:
    """A path still holding the shipped config's placeholder: say so, and what goes there."""
    if str(value).startswith(PLACEHOLDER):
        raise UserError(f"{where}: {value} is the config's FILL IN placeholder; replace it with the path of {what}")


def check_accelerator(accelerator: str, devices) -> None:
    """`gpu` / `cuda` / `mps` without such a device, or more devices than there are: one-line UserError."""
    import torch

    n = devices if isinstance(devices, int) else None
    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise UserError(f"accelerator: {accelerator} asked for, but no CUDA device is available here; "
                        f"use accelerator: auto (or cpu) and devices: 1")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UserError("accelerator: mps asked for, but MPS is not available here; use accelerator: auto or cpu")
    if n is None:
        return
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda):
        have = torch.cuda.device_count()
        if n > have:
            raise UserError(f"devices: {n} asked for, but this machine has {have} CUDA device(s); "
                            f"use devices: {have} or auto")
    elif accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        if n > 1:
            raise UserError(f"devices: {n} asked for, but MPS has one device; use devices: 1")
    elif n > _cpu_cores():
        raise UserError(f"devices: {n} asked for, but accelerator: {accelerator} runs on the CPU here and this "
                        f"machine has {_cpu_cores()} core(s); use devices: 1 (or auto), or run where there are "
                        f"{n} GPUs")


def check_corpus(cfg) -> None:
    """Every corpus path exists (placeholders and a missing text8 get their own message); aliases installed."""
    from mmlightning.pipeline.table import corpus_files

    for i, entry in enumerate(cfg.corpus_list):
        where, value = f"corpus[{i}]", str(entry)
        if value in ("gcide", "text8"):
            continue
        if Path(value).name == "text8":
            _placeholder(where, value, f"text8 ({TEXT8_URL}, unzipped: one file named text8)")
            if not Path(value).expanduser().is_file():
                raise UserError(f"{where}: {value}: text8 not found; download {TEXT8_URL}, unzip it and put the "
                                f"file there (or give its path)")
        _placeholder(where, value, "a corpus file or folder (e.g. the BNC XML edition's Texts/ folder)")
    try:
        corpus_files(cfg)  # a missing corpus file, an empty folder or an alias that is not installed
    except UserError as e:
        raise UserError(f"corpus: {e}") from None


def check_sources(cfg) -> None:
    """Each source root exists and has the source's layout (the source's own constructor checks it)."""
    from mmlightning.images.sources import open_source
    from mmlightning.images.wordnet import ensure_wordnet

    ensure_wordnet()  # every source compares words by WordNet lemma
    for name, src in cfg.sources.items():
        what = WHAT.get(src.source, f"the {src.source} data")
        if src.root is not None:
            _placeholder(f"sources.{name}.root", src.root, what)
            if not Path(src.root).exists():
                raise UserError(f"sources.{name}.root: {src.root}: no such folder; fill in the path of the {what}")
        try:
            open_source(src.source, src.root, **(src.options or {}))
        except UserError as e:
            raise UserError(f"sources.{name}: {e}") from None
        if src.words is not None and ("/" in src.words or src.words.endswith(".txt")) \
                and not Path(src.words).is_file():
            raise UserError(f"sources.{name}.words: {src.words}: no such file")


def check_checkpoints(cfg) -> None:
    """A checkpoint named in backbone_kwargs exists and builds the backbone (so a wrong file fails now)."""
    kwargs = dict(cfg.backbone_kwargs or {})
    named = [(k, v) for k, v in kwargs.items() if k in CHECKPOINT_KEYS and isinstance(v, str)]
    for key, value in named:
        hint = f"the {cfg.backbone} checkpoint (e.g. from `fit --config configs/cnn1512.yaml`)"
        _placeholder(f"backbone_kwargs.{key}", value, hint)
        if not Path(value).is_file():
            raise UserError(f"backbone_kwargs.{key}: {value}: no such file; fill in the path of {hint}")
    if not named:
        return
    from mmlightning.features.backbones import build_backbone

    if cfg.layer is not None:
        kwargs["layer"] = cfg.layer
    try:
        build_backbone(cfg.backbone, **kwargs)
    except UserError as e:
        raise UserError(f"backbone_kwargs: {e}") from None
    except Exception as e:  # noqa: BLE001 - a file that is not a checkpoint: any unpickling error
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"backbone_kwargs.{named[0][0]}: {named[0][1]}: not a {cfg.backbone} checkpoint "
                        f"({type(e).__name__}: {first})") from None


def check_inputs(cfg) -> None:
    """Corpus, sources, benchmarks, checkpoints and the accelerator, before any stage runs."""
    from mmlightning.datasets import load_benchmark

    check_accelerator(cfg.accelerator, cfg.devices)
    check_corpus(cfg)
    check_sources(cfg)
    for bench in cfg.benchmarks:
        load_benchmark(bench)
    check_checkpoints(cfg)


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Create `folder` if needed and write a probe file in it; one-line UserError when that fails."""
    path = Path(folder)
    probe = path / f".write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{path}: cannot write {what} here ({e.strerror or e}); make it writable or "
                        f"choose another folder") from None
