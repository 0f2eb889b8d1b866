"""Typed reproduce settings: built from dicts or the command line, each bad value a one-line UserError."""
from __future__ import annotations

import pytest

from mmlightning.errors import UserError
from mmlightning.pipeline.config import ReproduceConfig, SkipgramConfig, SourceConfig


def test_dicts_become_typed_configs():
    cfg = ReproduceConfig(skipgram={"epochs": 2}, sources={"pics": {"source": "folder", "root": "x", "n_per_word": 3}})
    assert isinstance(cfg.skipgram, SkipgramConfig) and cfg.skipgram.epochs == 2 and cfg.skipgram.dim == 100
    assert isinstance(cfg.sources["pics"], SourceConfig) and cfg.sources["pics"].n_per_word == 3
    assert cfg.extraction.backbone == "efficientnet_lite0" and cfg.evaluation.alpha == 0.5
    assert cfg.corpus_list == ["gcide"]


def test_defaults_are_the_embedded_default():
    cfg = ReproduceConfig()
    assert {k: (s.source, s.n_per_word, s.options) for k, s in cfg.sources.items()} == {
        "tuxpaint": ("tuxpaint", 50, {"description": "short", "subtree": True}),
        "openclipart": ("openclipart", 25, {"max_per_group": 10})}


def test_cache_key_leaves_out_what_does_not_change_the_vectors():
    a, b = SkipgramConfig(), SkipgramConfig(progress_bar=False, relatedness=[])
    assert a.key() == b.key() and a.key() != SkipgramConfig(epochs=6).key()


@pytest.mark.parametrize("settings, message", [
    ({"skipgram": {"epochs": 0}}, "skipgram.epochs: 0 must be >= 1"),
    ({"skipgram": {"dim": -5}}, "skipgram.dim"),
    ({"skipgram": {"epoch": 3}}, "skipgram: unknown key(s) epoch"),
    ({"skipgram": {"lr": 0.0}}, "skipgram.lr: must be > 0"),
    ({"sources": {}}, "sources: no image source given"),
    ({"sources": {"x": {"n_per_word": 3}}}, "sources.x: needs at least `source:`"),
    ({"sources": {"x": {"source": "flickr"}}}, "sources.x.source: unknown image source 'flickr'"),
    ({"sources": {"x": {"source": "folder", "n_per_word": 0}}}, "sources.x.n_per_word"),
    ({"sources": {"x": {"source": "folder", "colour": 1}}}, "sources.x: unknown key(s) colour"),
    ({"sources": {"x": {"source": "folder", "preprocess": "nope"}}}, "unknown preprocessing scheme 'nope'"),
    ({"sources": {"../../esc": {"source": "folder"}}}, "sources: '../../esc' is not a plain name"),
    ({"sources": {"a/b": {"source": "folder"}}}, "sources: 'a/b' is not a plain name"),
    ({"sources": {"..": {"source": "folder"}}}, "sources: '..' is not a plain name"),
    ({"sources": {".": {"source": "folder"}}}, "sources: '.' is not a plain name"),
    ({"sources": {"": {"source": "folder"}}}, "sources: '' is not a plain name"),
    ({"sources": {"/abs": {"source": "folder"}}}, "sources: '/abs' is not a plain name"),
    ({"sources": {"new\nline": {"source": "folder"}}}, "is not a plain name"),
    ({"alpha": -0.1}, "alpha: -0.1 is outside [0, 1]"),
    ({"missing_visual": "one"}, "missing_visual"),
    ({"n_boot": -1}, "n_boot"),
    ({"benchmarks": []}, "benchmarks: none given"),
    ({"batch_size": 0}, "batch_size"),
    ({"devices": 0}, "devices: 0 must be a number >= 1 or auto"),
    ({"accelerator": "tpu9"}, "accelerator: 'tpu9'"),
    ({"jobs": 0}, "jobs: 0 must be a number >= 1 or auto"),
    ({"jobs": "all"}, "jobs: 'all' must be a number >= 1 or auto"),
    ({"bovw_k": 1}, "bovw_k"),
    ({"force": ["shards"]}, "force: unknown stage(s) shards"),
    ({"corpus": []}, "corpus: none given"),
    ({"mmskipgram": ["C"]}, "mmskipgram: unknown variant(s) C"),
    ({"mmskipgram": "B"}, "mmskipgram: expected a list of variants or a mapping"),
    ({"mmskipgram": {"A": {"weight": 0}}}, "mmskipgram.A.weight: 0 must be > 0"),
    ({"mmskipgram": {"B": {"negatives": 0}}}, "mmskipgram.B.negatives: 0 must be >= 1"),
    ({"mmskipgram": {"B": {"map_l2": -1}}}, "mmskipgram.B.map_l2: -1 must be >= 0"),
    ({"mmskipgram": {"B": {"epochs": 0}}}, "mmskipgram.B.epochs: 0 must be >= 1"),
    ({"mmskipgram": {"B": {"min_concreteness": 6}}}, "mmskipgram.B.min_concreteness: 6 is outside"),
    ({"mmskipgram": {"A": {"wieght": 1}}}, "mmskipgram.A: unknown key(s) wieght"),
])
def test_bad_values_are_one_line_errors(settings, message):
    with pytest.raises(UserError) as e:
        ReproduceConfig(**settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_plain_source_names_pass():
    cfg = ReproduceConfig(sources={"pics-2_v.1": {"source": "folder", "root": "x"}, "..x": {"source": "folder"}})
    assert list(cfg.sources) == ["pics-2_v.1", "..x"]


def test_command_line_overrides_keep_the_yaml_spelling(capsys, monkeypatch):
    import yaml

    from mmlightning.cli import main
    from test_configs import ROOT

    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit):
        main(["reproduce", "--config", "configs/reproduce.yaml", "--skipgram.epochs", "1", "--devices", "auto",
              "--sources", '{"pics": {"source": "folder", "root": "imgs", "n_per_word": 2}}', "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["skipgram"]["epochs"] == 1 and printed["skipgram"]["dim"] == 100 and printed["devices"] == "auto"
    assert printed["sources"]["pics"]["n_per_word"] == 2 and list(printed["sources"]) == ["pics"]


def test_mmskipgram_variants_take_the_papers_settings_or_their_own():
    from mmlightning.pipeline.config import MMSkipgramConfig

    paper = ReproduceConfig(mmskipgram=["A", "B"]).mmskipgram      # Lazaridou et al. 2015, Section 4
    assert (paper["A"].negatives, paper["A"].margin, paper["A"].map_l2) == (20, 0.5, 0.0)
    assert (paper["B"].negatives, paper["B"].margin, paper["B"].map_l2) == (5, 0.5, 1e-4)
    own = ReproduceConfig(mmskipgram={"B": {"weight": 0.3, "epochs": 10}}).mmskipgram["B"]
    assert own == MMSkipgramConfig(weight=0.3, epochs=10)
    assert own.skipgram_fields() == {"visual_weight": 0.3, "visual_margin": 0.5, "visual_negatives": 20,
                                     "visual_map_l2": 0.0, "epochs": 10}
    assert ReproduceConfig(mmskipgram=[]).mmskipgram == {}
