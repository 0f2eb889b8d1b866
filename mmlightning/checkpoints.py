"""Checkpoints from anyone, read without running code: `torch.load(weights_only=True)` and one-line errors.

    ckpt = load_weights("run.ckpt")    # dict of tensors and plain data (str, int, float, list, dict, ...)

A checkpoint is a pickle; `weights_only=True` only rebuilds tensors and plain containers, so a file that
needs any other class or function (code) is refused unrun, naming the first such global. This project's
own checkpoints (`fit`: Lightning's state, hyper-parameters, optimizer and scheduler states) are plain.
"""
from __future__ import annotations

import re
from pathlib import Path

from mmlightning.errors import UserError

REFUSED = "Weights only load failed"


def load_weights(path: str | Path, what: str = "checkpoint"):
    """`torch.load(path, map_location="cpu", weights_only=True)`; UserError (one line) if absent, unreadable or
    holding anything beyond plain data."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        code = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if code:
            raise UserError(f"{path}: refused: the {what} holds Python objects beyond plain data ({code.group(1)}); "
                            f"it is read with torch.load(weights_only=True), which never runs code from it") from None
        raise UserError(f"{path}: not a readable {what} ({type(e).__name__}: {_reason(str(e))})") from None


def _reason(msg: str) -> str:
    """The line of torch's (long, multi-line) error that says what is wrong."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    if REFUSED in msg:  # torch's advice first, the unpickler's complaint last
        lines = [ln for ln in lines if not ln.startswith("Check the documentation")][-1:]
    return lines[0] if lines else ""
