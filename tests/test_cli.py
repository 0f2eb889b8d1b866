"""`python -m mmlightning --help` lists every command; each pipeline command resolves and has --help."""
import importlib.util
from typing import Optional
import subprocess
import sys
from pathlib import Path

import pytest

from mmlightning import cli
from cli_helpers import assert_parser_error, assert_user_error, evaluate_args, run

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in [*cli.TRAINER_COMMANDS, *cli.PIPELINE_COMMANDS]:
        assert f"  {cmd} " in out
    assert cli.main([]) == 0


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "mmlightning", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0
    assert all(cmd in res.stdout for cmd in [*cli.TRAINER_COMMANDS, *cli.PIPELINE_COMMANDS])


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", sorted(cli.PIPELINE_COMMANDS))
def test_pipeline_command_help(cmd, capsys):
    module = cli.PIPELINE_COMMANDS[cmd][0].split(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not written yet")
    with pytest.raises(SystemExit) as e:
        cli.main([cmd, "--help"])
    assert e.value.code in (0, None)
    assert f"python -m mmlightning {cmd}" in capsys.readouterr().out


def test_user_error_is_one_line(capsys):
    assert cli.main(["evaluate", "--linguistic", "/nonexistent/vectors.txt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmlightning evaluate: error: /nonexistent/vectors.txt") and err.count("\n") == 1


class StrictModel:
    def __init__(self, min_count: int = 1):
        from mmlightning.errors import UserError

        if min_count < 1:
            raise UserError(f"must be >= 1, got {min_count}", argument="min_count")


def test_library_errors_name_arguments_and_the_cli_maps_them_to_keys():
    import pytorch_lightning as pl

    from mmlightning.errors import UserError

    class Data(pl.LightningDataModule):
        pass

    class Model(pl.LightningModule):
        pass

    e = UserError("must be >= 0, got -1", argument="sample", owner=Data())
    assert str(e) == "sample: must be >= 0, got -1"                      # what a Python caller reads
    assert isinstance(e, ValueError)
    assert cli.user_error_message(e, "fit") == "--data.sample: must be >= 0, got -1"
    assert cli.user_error_message(UserError("bad", argument="lr", owner=Model()), "fit") == "--model.lr: bad"
    assert cli.user_error_message(UserError("bad", argument="sources"), "reproduce") == "--sources: bad"
    # a pipeline command does not group keys by owner (its keys are top level)
    assert cli.user_error_message(UserError("bad", argument="lr", owner=Model()), "reproduce") == "--lr: bad"
    assert cli.user_error_message(UserError("plain message")) == "plain message"


def test_user_error_message_unwraps_and_maps_path_errors(tmp_path):
    import errno

    from mmlightning.errors import UserError

    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=Optional[StrictModel])  # a Union, as LightningCLI's model and data
    cfg = parser.parse_args(["--model", '{"class_path": "%s.StrictModel", "init_args": {"min_count": 0}}' % __name__])
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    with pytest.raises(Exception) as e:   # jsonargparse wraps an error raised in a class's __init__
        instantiate(cfg)
    assert not isinstance(e.value, UserError)
    assert cli.user_error_message(e.value) == "--min_count: must be >= 1, got 0"

    def bug_while_handling():          # outside jsonargparse a bug raised while handling a UserError stays a bug
        try:
            raise UserError("x")
        except UserError:
            raise KeyError("bug")
    with pytest.raises(KeyError) as e:
        bug_while_handling()
    assert cli.user_error_message(e.value) is None
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as e:
        (blocker / "a" / "b").mkdir(parents=True)
    assert cli.user_error_message(e.value) == (f"{blocker / 'a' / 'b'}: {blocker} is a file, not a folder; "
                                               "choose another path")
    with pytest.raises(FileExistsError) as e:
        blocker.mkdir()
    assert cli.user_error_message(e.value) == f"{blocker}: already exists and is not a folder; choose another path"
    ro = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x", None, "/mnt/ro/y")
    assert cli.user_error_message(ro) == "/mnt/ro/x -> /mnt/ro/y: read-only file system; choose a writable folder"
    assert cli.user_error_message(OSError(errno.ENOSPC, "No space left on device")) is None   # no path: a bug
    assert cli.user_error_message(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None
    assert cli.user_error_message(RuntimeError("bug")) is None


def test_predict_output_dir_is_one_option_for_writer_resume_and_trainer(tmp_path, make_shards, tiny_backbone,
                                                                        monkeypatch):
    import yaml

    from mmlightning.features.aggregates import load_aggregates

    assert cli.expand_output_dir(["fit", "--output_dir", "x"]) == ["fit", "--output_dir", "x"]
    with pytest.raises(cli.UserError, match="needs a folder"):
        cli.expand_output_dir(["predict", "--output_dir"])
    shards = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    cfg = yaml.safe_load((ROOT / "configs" / "extract.yaml").read_text())
    cfg["model"]["init_args"].update(tiny_backbone)
    cfg["data"]["init_args"].update(shards=str(shards), preprocess="imagenet")
    cfg["trainer"].update(accelerator="cpu", enable_progress_bar=False)
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "mine"
    monkeypatch.chdir(tmp_path)
    args = ["predict", "--config", str(tmp_path / "extract.yaml"), "--output_dir", str(out)]
    assert cli.main(args) == 0
    agg, meta = load_aggregates(out / "aggregates.pt")
    assert len(meta["shards_done"]) == 2 and (out / "mean.txt").is_file() and (out / "config.yaml").is_file()
    assert not (tmp_path / "checkpoints").exists()   # nothing went to the config's own folder (cwd: tmp_path)
    before = (out / "aggregates.pt").read_bytes()
    assert cli.main(args) == 0                      # the rerun finds both shards done in the same folder
    assert (out / "aggregates.pt").read_bytes() == before


# ---------------------------------------------------------------- bad input through any command (issue 11)
def test_unknown_command_is_one_line_without_a_traceback(capsys):
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "unknown command 'frobnicate'" in err and "Traceback" not in err


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run(["fit", "--config", tmp_path / "nope.yaml"], capsys)
    assert_user_error(code, err, "fit", "nope.yaml: config file not found")
    assert err.count("\n") == 1  # one line, not jsonargparse's usage


@pytest.mark.parametrize("cmd, flag", [("evaluate", "--config"), ("fit", "-c"), ("reproduce", "--config=")])
def test_malformed_yaml_config_names_the_file_and_line(tmp_path, capsys, cmd, flag):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("alpha: 0.5\nlinguistic: [unclosed\n  alpha: : 0.5\n")
    args = [cmd, f"{flag}{cfg}"] if flag.endswith("=") else [cmd, flag, cfg]
    code, _, err = run(args, capsys)
    assert_user_error(code, err, cmd, f"{cfg}:3: malformed YAML")
    assert err.count("\n") == 1
    d = tmp_path / "dir.yaml"
    d.mkdir()
    code, _, err = run([cmd, "--config", d], capsys)
    assert_user_error(code, err, cmd, "dir.yaml: not a readable YAML config")


def test_unknown_option(good_vectors, bench, tmp_path, capsys):
    code, _, err = run([*evaluate_args(good_vectors, bench, tmp_path), "--alpah", "0.3"], capsys)
    assert_parser_error(code, err, "alpah")
    assert not (tmp_path / "rep").exists()


def test_a_wrapped_user_error_is_one_line_but_a_bug_while_handling_one_is_not():
    try:
        try:
            raise cli.UserError("x.yaml:3: bad value")
        except cli.UserError as e:
            raise ValueError(f"Problem with given class_path: {e}") from e   # a parser repeating the message
    except ValueError as wrapped:
        assert cli.user_error_message(wrapped) == "x.yaml:3: bad value"
    try:
        try:
            raise cli.UserError("x.yaml:3: bad value")
        except cli.UserError:
            raise KeyError("a genuine bug in the handler")
    except KeyError as bug:
        assert cli.user_error_message(bug) is None


def test_the_lightning_cli_gives_sys_argv_back(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mine", "--x"])
    with pytest.raises(SystemExit):   # the parser exits after printing
        cli.main(["fit", "--config", str(ROOT / "configs" / "skipgram.yaml"), "--print_config"])
    assert sys.argv == ["mine", "--x"]
