"""Command line of mmlightning.

    python -m mmlightning --help
    python -m mmlightning fit --config configs/skipgram.yaml --trainer.max_epochs 3
    python -m mmlightning predict --config configs/extract.yaml
    python -m mmlightning evaluate --linguistic v.txt --visual.tuxpaint/cnn-mean mean.txt
    python -m mmlightning reproduce --config configs/reproduce.yaml
    python -m mmlightning report --evaluation reports/evaluation.json --readme README.md

`fit`, `validate`, `test` and `predict` are a LightningCLI: the YAML picks the LightningModule and
LightningDataModule by `class_path`. The pipeline subcommands are typed functions exposed through
jsonargparse, so their docstrings are their `--help` and any of them reads `--config FILE.yaml`.
A `UserError` anywhere (also when jsonargparse wraps it), or an OSError about a path of the user's
(an output folder under a file, on a read-only or full disk), becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Callable

from mmlightning.errors import UserError
from mmlightning.logs import quiet_third_party, setup_logging

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
    "report": ("mmlightning.evaluation.report.readme:report",
               "Render the README's result tables from an evaluation.json (print, rewrite or check README's block)."),
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


# predict's one output option: the folder goes to the writer, the data module's resume check and the trainer
OUTPUT_DIR_KEYS = ("--trainer.callbacks.output_dir", "--data.skip_done_in", "--trainer.default_root_dir")


def expand_output_dir(args: list[str]) -> list[str]:
    """`predict ... --output_dir DIR` as the three keys it stands for (after the config, so it wins).

    The writer (`AggregateWriter`, the last callback of configs/extract.yaml) writes there, the data module
    skips the shards finished there, and Lightning saves its config.yaml there.
    """
    if not args or args[0] != "predict":
        return args
    out, rest, i = None, [], 0
    while i < len(args):
        a = args[i]
        if a == "--output_dir":
            if i + 1 >= len(args):
                raise UserError("predict: --output_dir needs a folder")
            out, i = args[i + 1], i + 2
            continue
        if a.startswith("--output_dir="):
            out = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    if out is None:
        return args
    return rest + [x for key in OUTPUT_DIR_KEYS for x in (key, out)]


def run_lightning(args: list[str]):
    """The LightningCLI for fit/validate/test/predict; model and data classes come from the config."""
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    class CheckpointsAsData(LightningCLI):
        """`--ckpt_path` read as data (`checkpoint_as_data`) before Lightning reads it (its hyper-parameters first)."""

        def _parse_ckpt_path(self) -> None:
            if self.config.get("subcommand"):
                checkpoint_as_data(dict(self.config[self.config.subcommand]))
            super()._parse_ckpt_path()

        def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
            return checkpoint_as_data(super()._prepare_subcommand_kwargs(subcommand), check=False)

    args = expand_output_dir(args)
    argv, sys.argv = sys.argv, ["python -m mmlightning", *args]  # LightningCLI reads sys.argv (args too warns)
    try:
        return CheckpointsAsData(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "python -m mmlightning"},
        )
    finally:
        sys.argv = argv  # the caller's again (DDP launchers re-execute while the CLI runs, not after)


LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")   # checkpoints the Trainer finds itself, among its own


def checkpoint_as_data(kwargs: dict, check: bool = True) -> dict:
    """A trainer command's `ckpt_path` is somebody's file, so it is data: a local file (a remote one would be
    fetched without a timeout, and Lightning unpickles remote files in full), read with `weights_only=True`
    unless `--weights_only false` says you trust it, and (`check`) read here first, so that a bad one is a
    one-line error. Returns the command's arguments with `weights_only` set.
    """
    if kwargs.get("weights_only", False) is None:
        kwargs["weights_only"] = True
    ckpt = kwargs.get("ckpt_path")
    if not check or ckpt is None or str(ckpt) in LIGHTNING_CKPT_NAMES:
        return kwargs
    if "://" in str(ckpt):
        raise UserError(f"{ckpt}: a remote checkpoint is not read here (no timeout on its download); download it, "
                        "then pass the local file", argument="ckpt_path")
    if kwargs.get("weights_only"):
        from mmlightning.checkpoints import load_weights

        load_weights(ckpt)   # absent, unreadable or holding code: one line, nothing run
    return kwargs


def run_pipeline(name: str, args: list[str]):
    """Parse `args` for pipeline command `name` (its function's signature) and call it."""
    from jsonargparse import CLI

    func = _resolve(PIPELINE_COMMANDS[name][0])
    summary = (func.__doc__ or "").strip().split("\n\n")[0]  # the Args: section becomes per-option help
    return CLI(func, args=args, prog=f"python -m mmlightning {name}", description=summary)


# errno of an OSError that is about the user's own path (a folder under a file, read-only, full disk),
# with what the CLI prints after the path; any other OSError is a bug and keeps its traceback.
PATH_ERRORS = {
    errno.ENOTDIR: "a parent of this path is a file, not a folder; choose another path",
    errno.EEXIST: "already exists and is not a folder; choose another path",
    errno.EISDIR: "is a folder where a file is expected; choose another path",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.ENOSPC: "no space left on device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
}


def _wraps(outer: BaseException, inner: BaseException) -> bool:
    """`outer` only re-raises `inner`, repeating its message (as jsonargparse does with errors raised while it
    builds a class); an exception raised while handling another one is a different error and is not."""
    first = str(inner).strip().split("\n")[0]
    return bool(first) and first in str(outer)


def _chain(exc: BaseException):
    """`exc`, then the exceptions it only re-raises (see `_wraps`)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        inner = exc.__cause__ or exc.__context__
        exc = inner if inner is not None and _wraps(exc, inner) else None


def _blocking_file(path: str) -> str | None:
    """The nearest ancestor of `path` that exists and is not a folder (why a mkdir gave ENOTDIR), if any."""
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else str(parent)
    return None


def cli_key(e: UserError, cmd: str | None = None) -> str:
    """The command-line key of a `UserError`'s argument: `--model.lr`, `--data.sample`, `--trainer.x`, `--sources`.

    Only trainer commands group their keys by the object that owns them; a pipeline command's keys are top-level.
    """
    group = None
    if cmd in TRAINER_COMMANDS and e.owner is not None:
        import pytorch_lightning as pl

        if isinstance(e.owner, pl.LightningModule):
            group = "model"
        elif isinstance(e.owner, pl.LightningDataModule):
            group = "data"
        elif isinstance(e.owner, (pl.Trainer, pl.Callback)):
            group = "trainer"
    return f"--{group}.{e.argument}" if group else f"--{e.argument}"


def user_error_message(exc: BaseException, cmd: str | None = None) -> str | None:
    """The one-line message for a user mistake, or None for a genuine bug (which keeps its traceback).

    A `UserError` (also wrapped by jsonargparse), or an `OSError` that names a path and whose errno is in
    `PATH_ERRORS`: `<path>: <reason>; <what to do>`.
    """
    for e in _chain(exc):
        if isinstance(e, UserError):
            text = f"{cli_key(e, cmd)}: {e.message}" if e.argument else str(e)
            return " ".join(text.split("\n")).strip()
        if isinstance(e, OSError) and e.filename is not None and e.errno in PATH_ERRORS:
            path = os.fsdecode(e.filename)
            reason = PATH_ERRORS[e.errno]
            if e.errno == errno.ENOTDIR and (blocker := _blocking_file(path)):
                reason = f"{blocker} is a file, not a folder; choose another path"
            if e.filename2 is not None:
                path = f"{path} -> {os.fsdecode(e.filename2)}"
            return f"{path}: {reason}"
    return None


def check_config_files(args: list[str]) -> None:
    """Raise UserError('<file>:<line>: ...') for a `--config`/`-c` file that is missing or not YAML.

    jsonargparse would print its whole usage and a message that names "<unicode string>", not the file.
    """
    import yaml

    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except (IsADirectoryError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not a readable YAML config ({type(e).__name__})") from None
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(f"{where}: malformed YAML: {problem}") from None


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user mistake (`UserError`, or an unusable output path) is one line on stderr, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    quiet_third_party()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd = argv[0]
    try:
        check_config_files(argv[1:])
        if cmd in TRAINER_COMMANDS:
            run_lightning(argv)
        elif cmd in PIPELINE_COMMANDS:
            run_pipeline(cmd, argv[1:])
        else:
            print(f"python -m mmlightning: error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(f"mmlightning {cmd}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything that is not a user mistake is re-raised below
        message = user_error_message(e, cmd)
        if message is None:
            raise
        print(f"mmlightning {cmd}: error: {message}", file=sys.stderr)
        return 2
    return 0
