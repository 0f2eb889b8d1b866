"""Checks that run before the first stage, so that a bad path or a missing GPU fails in seconds, in one line.

`check_inputs(cfg)`: every corpus path, source root (and its layout: an ESP root must hold images and
tags), word list, benchmark and checkpoint exists; the accelerator asked for is there.
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


def check_accelerator(accelerator: str, devices) -> None:
    """`gpu` / `cuda` / `mps` without such a device, or more devices than there are: one-line UserError."""
    import torch

    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"accelerator: {accelerator} asked for, but no CUDA device is available here; "
                            f"use accelerator: auto (or cpu) and devices: 1")
        have = torch.cuda.device_count()
        if isinstance(devices, int) and devices > have:
            raise UserError(f"devices: {devices} asked for, but this machine has {have} CUDA device(s); "
                            f"use devices: {have} or auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UserError("accelerator: mps asked for, but MPS is not available here; use accelerator: auto or cpu")


def check_sources(cfg) -> None:
    """Each source root exists and has the source's layout (the source's own constructor checks it)."""
    from mmlightning.images.sources import open_source

    for name, src in cfg.sources.items():
        if src.root is not None and not Path(src.root).exists():
            raise UserError(f"sources.{name}.root: {src.root}: no such folder; fill in the path of the "
                            f"{src.source} data")
        try:
            open_source(src.source, src.root, **(src.options or {}))
        except UserError as e:
            raise UserError(f"sources.{name}: {e}") from None
        if src.words is not None and ("/" in src.words or src.words.endswith(".txt")) \
                and not Path(src.words).is_file():
            raise UserError(f"sources.{name}.words: {src.words}: no such file")


def check_inputs(cfg) -> None:
    """Corpus, sources, benchmarks, checkpoints and the accelerator, before any stage runs."""
    from mmlightning.benchmarks import load_benchmark
    from mmlightning.pipeline.table import corpus_files

    corpus_files(cfg)  # a missing corpus file or an alias that is not installed: UserError
    check_sources(cfg)
    for bench in cfg.benchmarks:
        load_benchmark(bench)
    for key, value in (cfg.backbone_kwargs or {}).items():
        if key in CHECKPOINT_KEYS and isinstance(value, str) and not Path(value).is_file():
            raise UserError(f"backbone_kwargs.{key}: {value}: no such file; fill in the path of the "
                            f"{cfg.backbone} checkpoint (e.g. from `fit --config configs/cnn1512.yaml`)")
    check_accelerator(cfg.accelerator, cfg.devices)


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
