"""Command line of mmlightning.

    python -m mmlightning --help
    python -m mmlightning fit --config configs/skipgram.yaml --trainer.max_epochs 3
    python -m mmlightning predict --config configs/extract.yaml
    python -m mmlightning evaluate --linguistic v.txt --visual.tuxpaint/cnn-mean mean.txt
    python -m mmlightning reproduce --config configs/reproduce.yaml

`fit`, `validate`, `test` and `predict` are a LightningCLI: the YAML picks the LightningModule and
LightningDataModule by `class_path`. The pipeline subcommands are typed functions exposed through
jsonargparse, so their docstrings are their `--help` and any of them reads `--config FILE.yaml`.
A `UserError` anywhere becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Callable

from mmlightning.errors import UserError

TRAINER_COMMANDS = {
    "fit": "Train a model: skip-gram (configs/skipgram.yaml) or the 1512-way CNN (configs/cnn1512.yaml).",
    "validate": "Run the validation loop of a model (e.g. relatedness of a skip-gram checkpoint).",
    "test": "Run the test loop of a model.",
    "predict": "Extract per-word visual features over WebDataset shards (configs/extract.yaml).",
}

# name -> ("module:function", one-line help). Modules are imported only when their command runs.
PIPELINE_COMMANDS = {
    "evaluate": ("mmlightning.evaluation.systems:evaluate",
                 "Score linguistic / visual / multi-modal vectors on relatedness benchmarks (Table 1, Fig. 4, Table 2)."),
    "export": ("mmlightning.text.export:export",
               "Re-export word2vec text vectors from a skip-gram checkpoint."),
    "shard": ("mmlightning.images.write_shards:shard",
              "Select up to N images per word from an image source and write WebDataset shards + manifest."),
    "bovw-codebook": ("mmlightning.features.bovw:fit_codebook_command",
                      "Fit the bag-of-visual-words k-means codebook on dense SIFT from shards."),
    "reproduce": ("mmlightning.pipeline.reproduce:reproduce",
                  "Run the paper's experiment end to end (text, images, features, evaluation, release)."),
}


def _usage() -> str:
    lines = ["usage: python -m mmlightning <command> [--config FILE.yaml] [--key value ...]", "",
             "Trainer commands (LightningCLI):"]
    lines += [f"  {k:<14} {v}" for k, v in TRAINER_COMMANDS.items()]
    lines += ["", "Pipeline commands:"]
    lines += [f"  {k:<14} {v[1]}" for k, v in PIPELINE_COMMANDS.items()]
    lines += ["", "`python -m mmlightning <command> --help` lists a command's options."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_lightning(args: list[str]):
    """The LightningCLI for fit/validate/test/predict; model and data classes come from the config."""
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    sys.argv = ["python -m mmlightning", *args]  # LightningCLI reads sys.argv (passing args too warns)
    return LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "python -m mmlightning"},
    )


def run_pipeline(name: str, args: list[str]):
    """Parse `args` for pipeline command `name` (its function's signature) and call it."""
    from jsonargparse import CLI

    func = _resolve(PIPELINE_COMMANDS[name][0])
    summary = (func.__doc__ or "").strip().split("\n\n")[0]  # the Args: section becomes per-option help
    return CLI(func, args=args, prog=f"python -m mmlightning {name}", description=summary)


class _RankZero(logging.Filter):
    """Under DDP only global rank 0 logs (the launcher sets RANK in every process it starts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return os.environ.get("RANK", "0") == "0" or record.levelno >= logging.WARNING


def setup_logging(level: int = logging.INFO) -> None:
    """Library modules log to `logging.getLogger(__name__)`; the CLI shows their messages on stderr, rank 0 only."""
    logger = logging.getLogger("mmlightning")
    if not any(getattr(h, "_mmlightning", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_RankZero())
        handler._mmlightning = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _user_error_in(exc: BaseException) -> UserError | None:
    """The UserError that caused `exc` (through __cause__ / __context__), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd = argv[0]
    try:
        if cmd in TRAINER_COMMANDS:
            run_lightning(argv)
        elif cmd in PIPELINE_COMMANDS:
            run_pipeline(cmd, argv[1:])
        else:
            print(f"python -m mmlightning: error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
            return 2
    except UserError as e:
        print(f"mmlightning {cmd}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # jsonargparse wraps a constructor's UserError (bad init_args) in its own errors
        cause = _user_error_in(e)
        if cause is None:
            raise
        print(f"mmlightning {cmd}: error: {cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmlightning {cmd}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
