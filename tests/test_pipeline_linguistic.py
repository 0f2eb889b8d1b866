"""`reproduce` with your own text vectors (`linguistic:`) instead of training skip-gram, on the tiny world."""
import json
import re
import shutil

import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors, load_vectors

from pipeline_world import ANIMALS, VEHICLES, cached_statuses, make_world, run_tiny


def _own(path, seed, binary):
    words = ANIMALS + VEHICLES + ["the"]
    KeyedVectors(words, np.random.default_rng(seed).normal(size=(len(words), 12))).save_word2vec(path, binary=binary)
    return path


def test_own_vectors_replace_skipgram_keyed_by_content(tmp_path):
    world = make_world(tmp_path / "world")
    own = _own(tmp_path / "mine.bin", 0, binary=True)
    first = run_tiny(world, tmp_path / "out", linguistic=str(own))
    assert cached_statuses(first)["skipgram"] == "ran"
    rep = json.loads((tmp_path / "out" / "rep" / "evaluation.json").read_text())
    assert rep["systems"]["linguistic"]["dim"] == 12                     # the user's vectors, not skip-gram's 16
    ck = next((tmp_path / "out" / "ck").glob("skipgram-*"))
    assert load_vectors(ck / "vectors.txt").index_to_key == load_vectors(own).index_to_key
    card = json.loads((tmp_path / "out" / "rep" / "release" / "CARD.json").read_text())
    assert card["settings"]["linguistic"]["file"] == "mine.bin" and len(card["settings"]["linguistic"]["sha1"]) == 40
    assert "skipgram" not in card["settings"]

    moved = shutil.copy(own, tmp_path / "renamed.bin")                   # same bytes elsewhere: reused
    assert set(cached_statuses(run_tiny(world, tmp_path / "out", linguistic=moved)).values()) == {"reused"}
    changed = _own(tmp_path / "mine.bin", 1, binary=False)               # new content: only text recomputed
    assert cached_statuses(run_tiny(world, tmp_path / "out", linguistic=str(changed))) == {
        "skipgram": "ran", "shard:pics": "reused", "extract:pics": "reused", "bovw:pics": "reused"}


def test_missing_own_vectors_is_one_line(tmp_path):
    from mmlightning.pipeline.config import ReproduceConfig

    with pytest.raises(UserError, match="linguistic: .*nope.txt: no such file"):
        ReproduceConfig(linguistic=str(tmp_path / "nope.txt"))


class _OpensFile:
    """Unpickling this creates `path`: the marker that a file was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_own_vectors_need_the_unsafe_flag_and_npy_word_list_is_an_input(tmp_path):
    """gensim's native .kv (a pickle) is read only with unsafe_gensim_pickle; nothing is unpickled without it."""
    import pickle

    from mmlightning.pipeline.table import _skipgram_inputs
    from mmlightning.pipeline.config import ReproduceConfig

    world = make_world(tmp_path / "world")
    evil = tmp_path / "mine.txt"
    evil.write_bytes(pickle.dumps(_OpensFile(tmp_path / "unpickled"), protocol=4))
    with pytest.raises(UserError, match="mine.txt: is a Python pickle.*--unsafe_gensim_pickle"):
        run_tiny(world, tmp_path / "out", linguistic=str(evil))
    assert not (tmp_path / "unpickled").exists()
    assert ReproduceConfig(linguistic=str(evil), unsafe_gensim_pickle=True).unsafe_gensim_pickle
    np.save(tmp_path / "v.npy", np.ones((2, 3), np.float32))
    (tmp_path / "v.vocab.txt").write_text("cat\ndog\n")
    assert _skipgram_inputs(ReproduceConfig(linguistic=str(tmp_path / "v.npy")), None) == [
        str(tmp_path / "v.npy"), str(tmp_path / "v.vocab.txt")]


def test_own_vectors_without_a_benchmark_word_fail_first_naming_your_file(tmp_path):
    world = make_world(tmp_path / "world")
    own = tmp_path / "mine.txt"
    KeyedVectors(["zebra", "yak"], np.ones((2, 4))).save_word2vec(own)
    with pytest.raises(UserError, match=re.escape(f"linguistic: {own}: no word in common with the benchmarks")) as e:
        run_tiny(world, tmp_path / "out", linguistic=str(own))
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "out" / "ck").glob("shard-*"))  # before the images are sharded


def test_a_reused_copy_of_own_vectors_is_reported_by_your_file(tmp_path):
    """The stage's copy was made for other benchmarks: evaluate names your file, not the copy."""
    from mmlightning.pipeline.config import ReproduceConfig
    from mmlightning.pipeline.stages import StageContext
    from mmlightning.pipeline.table import STAGES
    from pipeline_world import tiny_settings

    world = make_world(tmp_path / "world")
    own, copy = tmp_path / "mine.txt", tmp_path / "ck" / "skipgram-x" / "vectors.txt"
    KeyedVectors(["zebra", "yak"], np.ones((2, 4))).save_word2vec(own)
    copy.parent.mkdir(parents=True)
    shutil.copyfile(own, copy)
    cfg = ReproduceConfig(**tiny_settings(world, tmp_path, linguistic=str(own)))
    evaluate = next(row for row in STAGES if row.name == "evaluate")
    ctx = StageContext(cfg, None, None, {"skipgram": {"vectors": copy}}, tmp_path / "ck")
    with pytest.raises(UserError, match=re.escape(f"linguistic: {own} (copied to {copy}): no word in common")):
        evaluate.run(ctx)
