"""`image_words: labelled` (and a source's `words: labelled`): typed, checked at construction, part of the stage keys."""
from __future__ import annotations

import pytest

from cli_helpers import assert_user_error, run
from mmlightning.errors import UserError
from mmlightning.pipeline.config import ReproduceConfig
from pipeline_world import make_world, tiny_settings


def test_default_is_the_benchmark_vocabulary_and_labelled_reaches_every_source():
    assert ReproduceConfig().image_words == "benchmarks"
    assert {s.words for s in ReproduceConfig().sources.values()} == {None}
    cfg = ReproduceConfig(image_words="labelled")
    assert {name: s.shard_args()["words"] for name, s in cfg.sources.items()} == {"tuxpaint": "labelled",
                                                                                "openclipart": "labelled"}


def test_a_sources_own_words_win():
    cfg = ReproduceConfig(image_words="labelled", sources={"a": {"source": "folder", "root": "x", "words": "men"},
                                                           "b": {"source": "folder", "root": "y"}})
    assert (cfg.sources["a"].words, cfg.sources["b"].words) == ("men", "labelled")
    own = ReproduceConfig(sources={"a": {"source": "folder", "root": "x", "words": "labelled"}})
    assert own.image_words == "benchmarks" and own.sources["a"].words == "labelled"


@pytest.mark.parametrize("settings, message", [
    ({"image_words": "labeled"}, "image_words: 'labeled' is not one of benchmarks, labelled"),
    ({"image_words": "all"}, "image_words: 'all' is not one of benchmarks, labelled"),
    ({"sources": {"x": {"source": "folder", "words": "labeled"}}},
     "sources.x.words: 'labeled' is neither labelled, a shipped benchmark"),
])
def test_bad_values_are_one_line_errors(settings, message):
    with pytest.raises(UserError) as e:
        ReproduceConfig(**settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_bad_value_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run(["reproduce", "--image_words", "labeled", "--checkpoints", tmp_path / "ck",
                        "--reports", tmp_path / "rep"], capsys)
    assert_user_error(code, err, "reproduce", "--image_words: 'labeled' is not one of benchmarks, labelled")
    assert not (tmp_path / "ck").exists()


def test_the_option_changes_the_keys_of_shard_and_every_stage_after_it(tmp_path):
    from mmlightning.pipeline.fingerprint import Fingerprints
    from mmlightning.pipeline.stages import plan
    from mmlightning.pipeline.table import STAGES

    world = make_world(tmp_path / "w")

    def keys(**over):
        cfg = ReproduceConfig(**tiny_settings(world, tmp_path, mmskipgram=["B"], **over))
        return {p.label: p.key for p in plan(cfg, STAGES, tmp_path / "ck", Fingerprints()) if p.key}

    default, labelled = keys(), keys(image_words="labelled")
    own = keys(sources={"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 2,
                                 "words": "labelled"}})
    assert labelled == own   # the top-level key is the per-source one, spelled once
    assert default == keys(image_words="benchmarks")
    assert default["skipgram"] == labelled["skipgram"]
    for stage in ("shard:pics", "extract:pics", "bovw:pics", "mmskipgram:B"):
        assert default[stage] != labelled[stage], stage


def test_a_file_named_like_a_set_or_labelled_in_the_working_folder_does_not_key_the_stages(tmp_path, monkeypatch):
    from mmlightning.pipeline.fingerprint import Fingerprints
    from mmlightning.pipeline.stages import plan
    from mmlightning.pipeline.table import STAGES

    world = make_world(tmp_path / "w")

    def keys():
        cfg = ReproduceConfig(**tiny_settings(world, tmp_path, benchmarks=["men", str(world / "bench.txt")],
                                              image_words="labelled"))
        return {p.label: p.key for p in plan(cfg, STAGES, tmp_path / "ck", Fingerprints()) if p.key}

    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    before = keys()
    (here / "men").write_text("a b 1\n")          # the stages read the shipped MEN and every labelled word,
    (here / "labelled").write_text("cat\n")       # not these files: the keys do not move either
    assert keys() == before
    (world / "bench.txt").write_text((world / "bench.txt").read_text() + "cat car 5.0\n")
    assert keys()["shard:pics"] != before["shard:pics"]   # a benchmark given as a file is keyed by its content
