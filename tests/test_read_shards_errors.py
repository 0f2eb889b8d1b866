"""Bad ShardDataModule settings name their argument (`batch_size: ...`); the CLI turns that into `--data.batch_size`."""
import pytest

from mmlightning.cli import cli_key
from mmlightning.errors import UserError
from mmlightning.images.open_shard import ReadLimits
from mmlightning.images.read_shards import ShardDataModule


@pytest.mark.parametrize("kwargs, text", [
    ({"batch_size": 0}, "batch_size: 0; it must be an integer >= 1"),
    ({"num_workers": -1}, "num_workers: -1; it must be an integer >= 0"),
    ({"decode": "gpu"}, "decode: 'gpu'; use pil or device"),
    ({"retries": -1}, "retries: -1; it must be an integer >= 0"),
    ({"stall_timeout_s": 0}, "stall_timeout_s: 0; it must be a finite number of seconds > 0"),
])
def test_a_bad_setting_names_its_argument_and_cli_key(kwargs, text):
    with pytest.raises(UserError) as e:
        ShardDataModule("x", **kwargs)
    assert str(e.value).startswith(text)
    assert cli_key(e.value, "predict") == f"--data.{next(iter(kwargs))}"


def test_read_limits_alone_name_a_top_level_key():
    with pytest.raises(UserError) as e:
        ReadLimits(retries=-1)
    assert str(e.value).startswith("retries: -1") and cli_key(e.value, "predict") == "--retries"
    assert ReadLimits(retries=1) == ReadLimits(retries=1, owner=object())   # the owner is not part of the limits


def test_the_cli_names_the_data_key(tmp_path, capsys, monkeypatch):
    from cli_helpers import ROOT, assert_user_error, run

    monkeypatch.chdir(ROOT)
    code, _, err = run(["predict", "--config", "configs/extract.yaml", "--data.retries", "-1",
                        "--output_dir", tmp_path / "out"], capsys)
    assert_user_error(code, err, "predict", "--data.retries: -1; it must be an integer >= 0")
