"""`python -m mmlightning --help` lists every command; each pipeline command resolves and has --help."""
import importlib.util
from typing import Optional
import subprocess
import sys
from pathlib import Path

import pytest

from mmlightning import cli

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
            raise UserError(f"data.min_count: must be >= 1, got {min_count}")


def test_user_error_message_unwraps_and_maps_path_errors(tmp_path):
    import errno

    from mmlightning.errors import UserError

    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=Optional[StrictModel])  # a Union, as LightningCLI's model and data
    cfg = parser.parse_args(["--model", '{"class_path": "%s.StrictModel", "init_args": {"min_count": 0}}' % __name__])
    with pytest.raises(Exception) as e:   # jsonargparse wraps an error raised in a class's __init__
        parser.instantiate_classes(cfg)
    assert not isinstance(e.value, UserError)
    assert cli.user_error_message(e.value) == "data.min_count: must be >= 1, got 0"

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
