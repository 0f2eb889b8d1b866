"""Every shipped configs/*.yaml names its command on line 1, and that command's parser accepts it.

Line 1 must be exactly `# python -m mmlightning <command> --config configs/<file>.yaml`. The check runs
`<command> --config <file> --print_config` in-process: jsonargparse (pipeline commands) or LightningCLI
(fit/validate/test/predict) parses and validates the whole file, resolves every class_path, and exits 0.
"""
import re
import sys
from pathlib import Path

import pytest

from mmlightning import cli

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
HEADER = re.compile(r"^# python -m mmlightning (?P<cmd>[\w-]+) --config configs/(?P<file>[\w.-]+\.yaml)\s*$")


def test_there_are_configs():
    assert any(p.name == "evaluate.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_with_its_command(path, monkeypatch, capsys):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = HEADER.match(first)
    assert m, f"{path.name}: line 1 must be '# python -m mmlightning <command> --config configs/{path.name}'"
    assert m["file"] == path.name, f"{path.name}: line 1 names configs/{m['file']}"
    cmd = m["cmd"]
    assert cmd in cli.TRAINER_COMMANDS or cmd in cli.PIPELINE_COMMANDS, f"{path.name}: unknown command {cmd}"
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run_lightning rewrites sys.argv
    with pytest.raises(SystemExit) as e:
        cli.main([cmd, "--config", f"configs/{path.name}", "--print_config"])
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err[-2000:]
    assert out.out.strip(), "print_config printed nothing"


REPRODUCE = sorted(p for p in CONFIGS if p.name.startswith("reproduce"))


def _reproduce_yaml(path):
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_code_defaults_equal_the_shipped_embedded_default():
    """`reproduce` with no config runs exactly configs/reproduce.yaml (every key, sources included)."""
    from dataclasses import asdict

    from mmlightning.pipeline.config import ReproduceConfig

    shipped = ReproduceConfig(**_reproduce_yaml(ROOT / "configs" / "reproduce.yaml"))
    assert asdict(shipped) == asdict(ReproduceConfig())


@pytest.mark.parametrize("path", REPRODUCE, ids=lambda p: p.name)
def test_reproduce_configs_use_only_known_keys_and_default_the_rest(path):
    """Every shipped reproduce YAML names only ReproduceConfig keys; a key it leaves out takes the code default,
    and a skip-gram setting it spells out equals the default unless the file says why (a comment)."""
    from dataclasses import fields

    from mmlightning.pipeline.config import ReproduceConfig, SkipgramConfig, SourceConfig

    raw = _reproduce_yaml(path)
    assert set(raw) <= {f.name for f in fields(ReproduceConfig)}
    assert set(raw.get("skipgram") or {}) <= {f.name for f in fields(SkipgramConfig)}
    for spec in raw["sources"].values():
        assert set(spec) <= {f.name for f in fields(SourceConfig)}
    sg_default = SkipgramConfig()
    for key, value in (raw.get("skipgram") or {}).items():
        assert value == getattr(sg_default, key), f"{path.name}: skipgram.{key} {value} differs from the code default"


def test_paper_config_marks_every_path_to_fill_in():
    text = (ROOT / "configs" / "reproduce_paper.yaml").read_text(encoding="utf-8")
    placeholders = [line for line in text.splitlines() if "/path/to" in line and not line.lstrip().startswith("#")]
    assert len(placeholders) == 5 and all("FILL IN" in line for line in placeholders)
    raw = _reproduce_yaml(ROOT / "configs" / "reproduce_paper.yaml")
    assert raw["accelerator"] == "auto" and raw["devices"] == "auto"
