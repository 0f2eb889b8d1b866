"""`python -m mmlightning fit` with configs/skipgram.yaml: bad settings, last.ckpt, resuming into another output;
bad corpora and `export` of files that are not SkipGram checkpoints (issue 11)."""
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mmlightning import cli
from mmlightning.vectors import load_vectors
from test_skipgram import _cli_config, two_topic_corpus
from cli_helpers import assert_user_error, corpus_file, run, skipgram_config


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


# ---------------------------------------------------------------- fit / export with bad input (issue 11)
# 5. after an interrupted fit and a plain rerun, ckpt/last.ckpt is the newest checkpoint (no last-v1.ckpt).
class CrashAtEpoch(pl.Callback):
    """Dies at the start of epoch `epoch` (like Ctrl-C after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("interrupted by the test")


def test_item05_last_ckpt_is_the_newest_after_an_interrupted_fit_and_a_rerun(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), run_dir)
    args = ["fit", "--config", cfg, "--trainer.max_epochs", "2"]
    crash = json.dumps({"class_path": f"{__name__}.CrashAtEpoch", "init_args": {"epoch": 1}})
    with pytest.raises(RuntimeError, match="interrupted by the test"):
        cli.main([*map(str, args), "--trainer.callbacks+", crash])
    capsys.readouterr()
    code, _, err = run(args, capsys)
    assert code == 0, err[-3000:]
    ckpts = {p.name: torch.load(p, map_location="cpu", weights_only=False)["global_step"]
             for p in (run_dir / "ckpt").glob("*.ckpt")}
    assert not [n for n in ckpts if n.startswith("last-v")], ckpts
    assert ckpts["last.ckpt"] == max(ckpts.values())


# 6. fit --ckpt_path <run A>/ckpt/last.ckpt with model.output_dir <run B> writes run B's vectors only.
def test_item06_resumed_fit_writes_into_the_configured_output_dir(tmp_path, capsys):
    corpus = corpus_file(tmp_path / "c.txt")
    a, b = tmp_path / "a", tmp_path / "b"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, a)], capsys)
    assert code == 0, err[-3000:]
    before = (a / "vectors.txt").read_bytes()
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, b), "--trainer.max_epochs", "2",
                        "--ckpt_path", a / "ckpt" / "last.ckpt"], capsys)
    assert code == 0, err[-3000:]
    assert (a / "vectors.txt").read_bytes() == before
    assert len(load_vectors(b / "vectors.txt")) == len(load_vectors(a / "vectors.txt"))


# 8. a binary file given as corpus is refused (replacement-character ratio above a threshold).
def test_item08_binary_garbage_corpus_is_refused(tmp_path, capsys):
    corpus = tmp_path / "garbage.bin"
    corpus.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    run_dir = tmp_path / "run"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, run_dir)], capsys)
    assert_user_error(code, err, "fit", str(corpus))
    assert not (run_dir / "vectors.txt").exists()


# 10. a folder under a regular file: one line, exit 2.
def test_item10_fit_folder_under_a_file_through_lightningcli(tmp_path, capsys):
    """The same one line from inside a LightningCLI run (the data module's cache folder)."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), tmp_path / "run")
    code, _, err = run(["fit", "--config", cfg, "--data.cache_dir", blocker / "cache"], capsys)
    assert_user_error(code, err, "fit", str(blocker / "cache"), f"{blocker} is a file")


# 11. fit with a bad setting: one line, not a double traceback.
@pytest.mark.parametrize("option, value", [("--data.min_count", "0"), ("--data.window", "0"),
                                           ("--model.dim", "-5")])
def test_item11_fit_bad_settings_are_one_line(tmp_path, capsys, option, value):
    run_dir = tmp_path / "run"
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), run_dir)
    code, _, err = run(["fit", "--config", cfg, option, value], capsys)
    assert_user_error(code, err, "fit", option.split(".")[-1])
    assert not (run_dir / "vectors.txt").exists()


def test_library_errors_reach_the_command_line_under_their_keys(tmp_path, capsys, monkeypatch):
    """The data module says `pairs: ...` (its Python argument); `fit` prints `--data.pairs: ...`."""
    from mmlightning.text.native import NativeKernel

    monkeypatch.setattr(NativeKernel, "load", classmethod(lambda cls: None))  # no compiled kernel here
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), tmp_path / "run")
    code, _, err = run(["fit", "--config", cfg, "--data.pairs", "native"], capsys)
    line = assert_user_error(code, err, "fit", "--data.pairs: native needs the compiled kernel")
    assert "data.pairs: native" not in line.replace("--data.pairs", "")  # said once, as the key
    code, _, err = run(["fit", "--config", cfg, "--model.lr", "0"], capsys)
    assert_user_error(code, err, "fit", "--model.lr: must be > 0, got 0")


@pytest.mark.parametrize("case", ["empty_corpus", "missing_corpus", "unknown_corpus_name"])
def test_fit_bad_corpus(tmp_path, capsys, case):
    corpus = {"empty_corpus": tmp_path / "empty.txt", "missing_corpus": tmp_path / "absent.txt",
              "unknown_corpus_name": Path("nosuchcorpus")}[case]
    if case == "empty_corpus":
        corpus.write_text("\n\n")
    run_dir = tmp_path / "run"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, run_dir)], capsys)
    assert_user_error(code, err, "fit", corpus.name)
    assert not (run_dir / "vectors.txt").exists()


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    code, _, err = run(["export", bad], capsys)
    assert_user_error(code, err, "export", "not a SkipGram checkpoint")
    code, _, err = run(["export", tmp_path / "absent.ckpt"], capsys)
    assert_user_error(code, err, "export", "absent.ckpt", "not found")


class OpensFile:
    """Unpickling this creates `path`: the marker that a file was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_export_never_unpickles_code_from_a_checkpoint(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"syn0": torch.zeros(1, 2)}, "skipgram": {"words": ["cat"], "counts": [1]},
                "x": OpensFile(tmp_path / "ran")}, evil)
    code, _, err = run(["export", evil], capsys)
    assert not (tmp_path / "ran").exists()
    assert_user_error(code, err, "export", "evil.ckpt", "weights_only")
    assert not (tmp_path / "vectors.txt").exists()


@pytest.mark.parametrize("pairs", ["native", "host"])
def test_fit_with_the_stages_settings_gives_the_stages_vectors(tmp_path, pairs):
    """`fit --config configs/skipgram.yaml` and reproduce's stage (train_skipgram) are one training: same bytes."""
    from mmlightning.text.train import SkipgramConfig, train_skipgram

    corpus = two_topic_corpus(tmp_path / "c.txt", 300)
    cfg = _cli_config(tmp_path, corpus)
    assert fit(cfg, "--data.init_args.pairs", pairs, "--data.init_args.chunk_words", "2000") == 0
    stage = SkipgramConfig(epochs=3, dim=20, min_count=1, num_workers=0, compile=False, pairs=pairs,
                           chunk_words=2000, progress_bar=False)
    out = train_skipgram(stage, tmp_path / "stage", corpus=[corpus], seed=1, cache_dir=tmp_path / "cache",
                         record=False)
    assert out.read_bytes() == (tmp_path / "run" / "vectors.txt").read_bytes()


# ---------------------------------------------------------------- --ckpt_path is data, not code
class _TouchOnLoad:
    """Unpickling it calls Path.touch(marker): code run by a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_holding_code_is_refused_unrun(cfg, tmp_path, capsys):
    marker, bad = tmp_path / "ran", tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "payload": _TouchOnLoad(marker)}, bad)
    assert fit(cfg, "--ckpt_path", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ckpt_path" not in err[0] and "refused" in err[0] and str(bad) in err[0]
    assert not marker.exists()


def test_a_remote_checkpoint_is_a_one_line_error(cfg, capsys):
    assert fit(cfg, "--ckpt_path", "https://example.invalid/run.ckpt") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmlightning fit: error: --ckpt_path: https://example.invalid/run.ckpt: a remote checkpoint is "
                   "not read here (no timeout on its download); download it, then pass the local file"]


def test_checkpoints_are_read_weights_only_unless_the_user_trusts_them(tmp_path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"epoch": 1}, plain)
    assert cli.checkpoint_as_data({"ckpt_path": str(plain), "weights_only": None})["weights_only"] is True
    assert cli.checkpoint_as_data({"ckpt_path": "last", "weights_only": False})["weights_only"] is False
    assert cli.checkpoint_as_data({"ckpt_path": None}) == {"ckpt_path": None}
