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
