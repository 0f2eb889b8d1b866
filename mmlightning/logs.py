"""Where the library's log records go when a command runs: stderr, one line each, rank 0 only.

    setup_logging()          # python -m mmlightning ...: the library's INFO messages on stderr
    quiet_third_party()      # and without Lightning's tips

Shared by the CLI (`mmlightning.cli.main`) and the worker processes of a parallel `reproduce`
(`mmlightning.pipeline.parallel`), which label each line with their stage. Importing the library sets up
nothing: a Python user keeps their own logging and warning filters.
"""
from __future__ import annotations

import logging
import os
import sys


class _RankZero(logging.Filter):
    """Under DDP only global rank 0 logs (the launcher sets RANK in every process it starts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return os.environ.get("RANK", "0") == "0" or record.levelno >= logging.WARNING


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (not the stream of the first call)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # (not setStream: it flushes the old stream, which may be closed)
        super().emit(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Library modules log to `logging.getLogger(__name__)`; the CLI shows their messages on stderr, rank 0 only."""
    logger = logging.getLogger("mmlightning")
    if not any(getattr(h, "_mmlightning", False) for h in logger.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_RankZero())
        handler._mmlightning = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips ("\N{ELECTRIC LIGHT BULB} Tip: ..."); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def quiet_third_party() -> None:
    """Drop Lightning's tips and one torch deprecation it triggers; keep every other message.

    Called by `main` only: importing the library leaves the user's logging and warning filters alone.
    """
    import warnings

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
