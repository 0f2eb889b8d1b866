"""README.md and docs/: every link resolves, and every `python -m mmlightning ...` command in a bash block parses.

Parsing is what `python -m mmlightning <command>` does before it runs anything: the config files are read,
every key is checked against the command's signature (pipeline commands) or the LightningCLI's classes
(fit / predict / ...), and every value against its type; nothing is instantiated or run.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{_id(page)}: link to {target} does not resolve"
        if anchor:
            heads = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", dest.read_text(encoding="utf-8"), re.M)}
            assert anchor in heads, f"{_id(page)}: no heading #{anchor} in {path or _id(page)}"


def shell_commands(text: str) -> list[list[str]]:
    """The argument lists after `mmlightning` of every command in the page's ```bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "mmlightning" in words:
                commands.append(words[words.index("mmlightning") + 1:])
    return commands


COMMANDS = [(page, args) for page in PAGES for args in shell_commands(page.read_text(encoding="utf-8"))]


def parse(args: list[str]) -> None:
    """Parse a command line as the CLI would, without running it; SystemExit / errors on a bad key or value."""
    from mmlightning import cli

    cmd, rest = args[0], args[1:]
    cli.check_config_files(rest)
    if cmd in cli.PIPELINE_COMMANDS:
        from jsonargparse import ArgumentParser

        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--config", action="config")
        parser.add_function_arguments(cli._resolve(cli.PIPELINE_COMMANDS[cmd][0]))
        parser.parse_args(rest)
        return
    assert cmd in cli.TRAINER_COMMANDS, f"unknown command {cmd}"
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    class ParseOnly(LightningCLI):  # keys and types are checked by the parser; nothing is built or run
        def instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str) -> None:
            pass

    ParseOnly(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
              args=cli.expand_output_dir([cmd, *rest]), parser_kwargs={"exit_on_error": False})


def test_the_pages_hold_commands():
    assert len(COMMANDS) >= 10 and {a[0] for _, a in COMMANDS} >= {"reproduce", "predict", "evaluate", "fit", "shard"}


@pytest.mark.parametrize("page, args", COMMANDS, ids=[f"{_id(p)}:{' '.join(a)[:60]}" for p, a in COMMANDS])
def test_every_documented_command_parses(page, args, monkeypatch):
    monkeypatch.chdir(ROOT)
    parse(args)


@pytest.mark.parametrize("args", [["evaluate", "--no_such_key", "1"], ["reproduce", "--skipgram.epochz", "2"],
                                  ["predict", "--config", "configs/extract.yaml", "--data.init_args.shardz", "x"],
                                  ["shard", "--n_per_word", "many"]])
def test_a_wrong_key_or_value_does_not_parse(args, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises((Exception, SystemExit)):
        parse(args)


# Paths the pages and configs name as things to be written (or made by another example first), not read.
WRITTEN = ("checkpoints/shards/", "checkpoints/features/", "checkpoints/skipgram", "checkpoints/cnn1512",
           "checkpoints/corpus_cache", "checkpoints/bovw/", "reports/mine", "reports/paper", "checkpoints/<",
           "checkpoints/.", "reports/run_summary.json")
PATH_TOKEN = re.compile(r"(?:checkpoints|reports)/[A-Za-z0-9_./-]*[A-Za-z0-9_/]")


def example_paths() -> dict[str, set[str]]:
    """Every checkpoints/... or reports/... path named by README.md, docs/ and configs/ that is read, by page."""
    found: dict[str, set[str]] = {}
    for page in PAGES + sorted((ROOT / "configs").glob("*.yaml")):
        for path in PATH_TOKEN.findall(page.read_text(encoding="utf-8")):
            if not path.startswith(WRITTEN) and not path.startswith("checkpoints/latest/skipgram_"):
                found.setdefault(_id(page), set()).add(path)
    return found


def test_the_pages_name_paths_that_reproduce_makes():
    named = set().union(*example_paths().values())
    assert {"checkpoints/latest/skipgram/vectors.txt", "checkpoints/latest/shard-tuxpaint",
            "reports/index.html"} <= named


@pytest.mark.slow
def test_every_example_path_exists_after_make_reproduce():
    """Run after `make reproduce` (`make test-slow` does): what the pages tell a user to read is there."""
    if not (ROOT / "checkpoints" / "latest").is_dir():
        pytest.fail("no checkpoints/latest: run `make reproduce` first (make test-slow runs it)")
    missing = {page: sorted(p for p in paths if not (ROOT / p).exists()) for page, paths in example_paths().items()}
    assert not {k: v for k, v in missing.items() if v}
