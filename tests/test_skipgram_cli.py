"""`python -m mmlightning fit` with configs/skipgram.yaml: bad settings, last.ckpt, resuming into another output."""
import hashlib
import logging

import numpy as np
import pytest
import torch

from mmlightning import cli
from mmlightning.vectors import load_vectors
from test_skipgram import _cli_config, two_topic_corpus


@pytest.fixture
def cfg(tmp_path):
    corpus = two_topic_corpus(tmp_path / "c.txt", 200)
    yield _cli_config(tmp_path, corpus)
    logging.getLogger("mmlightning").handlers.clear()  # cli.main adds a stderr handler


def fit(cfg, *args) -> int:
    return cli.main(["fit", "--config", str(cfg), "--data.init_args.num_workers", "0",
                     "--trainer.enable_progress_bar", "false", *args])


@pytest.mark.parametrize("arg, what", [("--data.init_args.min_count=0", "data.min_count: must be >= 1"),
                                       ("--data.init_args.window=0", "data.window: must be >= 1"),
                                       ("--model.init_args.dim=-5", "model.dim: must be >= 1")])
def test_bad_settings_are_one_line_errors(cfg, capsys, arg, what):
    assert fit(cfg, arg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and "Traceback" not in err[0]


def test_binary_corpus_is_refused_through_the_cli(cfg, tmp_path, capsys):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    assert fit(cfg, f"--data.init_args.corpus=[{junk}]") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]  # (the tokenising progress bar aside)
    assert len(lines) == 1 and "Traceback" not in err
    assert "junk.bin: " in lines[0] and "% of its bytes are not UTF-8" in lines[0]


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_rerun_keeps_last_ckpt_latest_and_resume_writes_the_configured_output(cfg, tmp_path):
    run_a, run_b = tmp_path / "run", tmp_path / "run_b"
    last = run_a / "ckpt" / "last.ckpt"
    assert fit(cfg, "--trainer.max_epochs", "1") == 0
    assert torch.load(last, weights_only=False)["epoch"] == 0
    assert fit(cfg, "--trainer.max_epochs", "2") == 0  # a plain rerun (as after an interrupted fit)
    assert torch.load(last, weights_only=False)["epoch"] == 1  # last.ckpt is the rerun's, not the first run's
    assert not list((run_a / "ckpt").glob("last-v*.ckpt"))
    before = _md5(run_a / "vectors.txt")
    # resume run A's checkpoint with another output folder: the vectors go where the config says now
    assert fit(cfg, "--ckpt_path", str(last), "--model.init_args.output_dir", str(run_b),
               "--trainer.max_epochs", "3") == 0
    assert (run_b / "vectors.txt").is_file() and _md5(run_a / "vectors.txt") == before
    assert len(load_vectors(run_b / "vectors.txt")) == len(load_vectors(run_a / "vectors.txt"))
