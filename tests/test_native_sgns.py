"""The compiled SGNS kernel: its pairs against the numpy generator's, its update against sgns_update, its build cache."""
import logging

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import mmlightning.text.native as native
from mmlightning.errors import UserError
from mmlightning.text.data import SkipGramDataModule, resolve_pairs
from mmlightning.text.native import NativeKernel, NativeTrainer, Sampling
from mmlightning.text.sgns import alias_table, keep_probabilities, make_pairs, negative_probabilities, sgns_update
from test_device_sgns import zipf_corpus
from test_skipgram import two_topic_corpus


@pytest.fixture(scope="module")
def kernel():
    k = NativeKernel.load()
    assert k is not None, f"the native kernel did not build: {NativeKernel.why_not}"  # CI has gcc: must build
    return k


def _list(kernel, ids, sent, keep, window, negative=1, counts=None, seed=5):
    counts = np.ones(len(keep)) if counts is None else counts
    return kernel.list_pairs(ids.astype(np.int32), sent.astype(np.int32), keep, alias_table(counts), window,
                             negative, seed)


def test_offsets_and_pairs_per_word_match_the_numpy_generator(kernel):
    n, W = 40_000, 4
    ids, sent = np.arange(n), np.arange(n) // 11  # distinct ids: a pair's id difference is its offset
    rows = _list(kernel, ids, sent, np.ones(n), W)
    c, x = rows[:, 0], rows[:, 1]
    assert (sent[c] == sent[x]).all() and (c != x).all()
    cn, xn = make_pairs(ids, sent, np.ones(n), W, np.random.default_rng(0))
    off = np.bincount(np.abs(c - x), minlength=W + 1)[1:] / n  # pairs per word at offset d
    np.testing.assert_allclose(off, np.bincount(np.abs(cn - xn), minlength=W + 1)[1:] / n, rtol=0.04)
    assert len(c) / n == pytest.approx(len(cn) / n, rel=0.02)
    # one long sentence: offset d is reached when the centre's window b >= d, P = 2 (W - d + 1) / W per word
    rows = _list(kernel, ids, np.zeros(n), np.ones(n), W)
    theory = np.array([2 * (W - d + 1) / W for d in range(1, W + 1)])
    np.testing.assert_allclose(np.bincount(np.abs(rows[:, 0] - rows[:, 1]))[1:] / n, theory, rtol=0.03)
    # word by word, as word2vec.c: the centres come in corpus order
    assert (np.diff(rows[:, 0]) >= 0).all()


def test_subsampling_keeps_word2vecs_share_and_counts_distance_after_it(kernel):
    tokens, sentences, counts = zipf_corpus(n=300_000)
    sample = 2e-3  # the 10 most frequent words are sub-sampled
    keep = keep_probabilities(counts, sample)
    sent = np.searchsorted(sentences, np.arange(len(tokens)), side="right")
    rows = _list(kernel, tokens, sent, keep, 1, counts=counts)  # window 1: each kept word centres 1-2 pairs
    cn, _ = make_pairs(tokens.astype(np.int64), sent, keep, 1, np.random.default_rng(99))  # not the corpus seed
    assert len(rows) == pytest.approx(len(cn), rel=0.02)
    occ = np.bincount(tokens, minlength=len(counts))
    per_word = np.bincount(rows[:, 0], minlength=len(counts)) / occ  # pairs per occurrence, ~ keep x (2 - edges)
    ref = np.bincount(cn, minlength=len(counts)) / occ
    np.testing.assert_allclose(per_word[:10], ref[:10], rtol=0.06)  # the sub-sampled words (>= 1,000 occurrences)
    assert per_word[0] / per_word[-1] == pytest.approx(keep[0], rel=0.1)
    ids = np.arange(20_000)  # distinct ids, even ones kept with probability 1/4
    kept_half = np.where(ids % 2 == 0, 0.25, 1.0)
    seen = np.unique(_list(kernel, ids, np.zeros_like(ids), kept_half, 1)[:, :2])
    assert (seen % 2 == 0).sum() / 10_000 == pytest.approx(0.25, abs=0.02) and (seen % 2 == 1).sum() == 10_000


def test_negatives_follow_unigram_075_and_skip_the_centre(kernel):
    counts = np.array([5000, 1200, 300, 80, 20, 5, 1])
    n = 30_000
    ids = np.where(np.arange(n) % 2 == 0, 1, 3)  # centres 1 and 3 alternate
    rows = _list(kernel, ids, np.zeros(n), np.ones(7), 1, negative=5, counts=counts)
    neg, centre = rows[:, 2:], rows[:, :1]
    assert not (neg == centre).any()
    p = negative_probabilities(counts)
    for c in (1, 3):  # chi-square against unigram^0.75 without the centre, 6 degrees of freedom, p = 0.001
        drawn = neg[rows[:, 0] == c].ravel()
        q = p.copy()
        q[c] = 0
        expected = q / q.sum() * drawn.size
        obs = np.bincount(drawn, minlength=7)
        assert (((obs - expected) ** 2)[q > 0] / expected[q > 0]).sum() < 22.5


def test_training_is_sgns_update_one_pair_at_a_time_and_seeded(kernel):
    rng = np.random.default_rng(0)
    V, D, n, K = 30, 100, 400, 3
    ids, sent = rng.integers(0, V, n), np.arange(n) // 8
    keep, table = np.ones(V), alias_table(np.arange(1, V + 1)[::-1])
    syn0 = torch.from_numpy(rng.uniform(-0.5, 0.5, (V, D)).astype(np.float32))
    syn1 = torch.from_numpy(rng.uniform(-0.5, 0.5, (V, D)).astype(np.float32))
    a0, a1 = syn0.clone(), syn1.clone()
    pairs, loss = kernel.train(a0, a1, ids, sent, keep, table, 2, K, 0.025, 0.025, seed=11, loss_every=1)
    rows = kernel.list_pairs(ids.astype(np.int32), sent.astype(np.int32), keep, table, 2, K, seed=11)
    assert pairs == len(rows) and np.isfinite(loss) and loss > 0
    b0, b1 = syn0.clone(), syn1.clone()  # the same pairs through the torch update, one at a time
    for r in torch.from_numpy(rows):
        sgns_update(b0, b1, r[1:2], torch.cat([r[:1], r[2:]])[None], 0.025)
    # the same changes up to the sigmoid table (1000 cells over [-6, 6], as word2vec's) and float order
    for new, ref, old in ((a0, b0, syn0), (a1, b1, syn1)):
        assert (new - ref).norm() / (ref - old).norm() < 0.02
    assert (a0 - syn0).abs().max() > 0.01  # and it did train
    c0, c1 = syn0.clone(), syn1.clone()
    kernel.train(c0, c1, ids, sent, keep, table, 2, K, 0.025, 0.025, seed=11)
    assert torch.equal(c0, a0) and torch.equal(c1, a1)  # one thread: bitwise reproducible
    kernel.train(c0.copy_(syn0), c1.copy_(syn1), ids, sent, keep, table, 2, K, 0.025, 0.025, seed=12)
    assert not torch.equal(c0, a0)


def test_trainer_spans_the_chunks_learning_rate(kernel):
    ids = np.zeros(10, np.int32)
    seen = []
    fake = type("K", (), {"train": lambda self, *a, **k: seen.append(a[8:10]) or (0, float("nan"))})()
    t = NativeTrainer(fake, Sampling(np.ones(1), alias_table(np.ones(1)), 2, 1), 0.03, 0.01, max_epochs=2)
    t(None, None, {"tokens": ids, "sent": ids, "seed": 1, "epoch": 1, "chunk": 1, "n_chunks": 4})
    assert seen == [(pytest.approx(0.03 - 0.02 * 5 / 8), pytest.approx(0.03 - 0.02 * 6 / 8))]


def test_bad_arguments_are_refused(kernel):
    keep, table = np.ones(3), alias_table(np.ones(3))
    syn = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="outside"):
        kernel.train(syn, syn.clone(), np.array([0, 5]), np.zeros(2), keep, table, 2, 1, 0.1, 0.1, 1)
    with pytest.raises(ValueError, match="float32"):
        kernel.train(syn.double(), syn.double(), np.array([0]), np.zeros(1), keep, table, 2, 1, 0.1, 0.1, 1)
    with pytest.raises(RuntimeError, match="dim > 4096"):
        kernel.train(torch.zeros(3, 5000), torch.zeros(3, 5000), np.array([0, 1]), np.zeros(2), keep, table, 2, 1,
                     0.1, 0.1, 1)


# ----------------------------------------------------------------------------------- the build cache
@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLIGHTNING_NATIVE_DIR", str(tmp_path / "builds"))
    monkeypatch.setattr(NativeKernel, "_loaded", None)
    return tmp_path / "builds"


def test_a_cached_build_is_checked_before_it_is_used(fresh_build, caplog):
    import shutil
    so = fresh_build / f"sgns_kernel-{native._source_hash(shutil.which('cc') or shutil.which('gcc'))}.so"
    fresh_build.mkdir(mode=0o700)  # (a folder writable by others is not used at all: test_native_cache.py)
    so.write_bytes(b"not a library")  # a damaged cache entry (written before any process has loaded it)
    with caplog.at_level(logging.WARNING):
        assert NativeKernel.load() is not None
    assert "rebuilding" in caplog.text and so.stat().st_size > 1000
    assert list(fresh_build.glob(".*tmp")) == []  # nothing half-written left behind


def test_no_compiler_falls_back_to_host_pairs_or_says_why(fresh_build, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert NativeKernel.load() is None and "no-such-cc" in NativeKernel.why_not
    with caplog.at_level(logging.WARNING):
        assert resolve_pairs("auto", "cpu") == "host"
    assert "could not be built" in caplog.text
    with pytest.raises(UserError, match="^pairs: native needs the compiled kernel"):
        resolve_pairs("native", "cpu")
    assert resolve_pairs("auto", "cuda") == "device"
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    assert NativeKernel.load() is None and "failed" in NativeKernel.why_not


def test_pairs_auto_on_cpu_is_native_and_native_refuses_an_accelerator(tmp_path, kernel):
    corpus = two_topic_corpus(tmp_path / "c.txt", 50)
    dm = SkipGramDataModule(corpus=corpus, cache_dir=str(tmp_path / "cache"), min_count=1, num_workers=0)
    dm.trainer = pl.Trainer(accelerator="cpu", logger=False)
    dm.setup("fit")
    assert dm.pair_mode() == "native" and dm.dataset.native
    item = dm.dataset.chunk(0, 0)
    assert item["native"] and item["tokens"].dtype == torch.int32 and len(item["tokens"]) == item["words"] == 500
    s = dm.sampling()
    assert (s.window, s.negative) == (5, 5) and len(s.keep) == len(dm.vocabulary()[0])
    dm.trainer = type("T", (), {"strategy": type("S", (), {"root_device": torch.device("cuda")})()})()
    dm.hparams.pairs = "native"
    with pytest.raises(UserError, match="native trains on the CPU"):
        dm.pair_mode()


def test_an_unwritable_build_folder_falls_back_to_the_temporary_folder(fresh_build, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MMLIGHTNING_NATIVE_DIR", str(blocker / "sub"))  # under a file: cannot be made
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert NativeKernel.load() is not None
    assert list((tmp_path / "tmp").glob("mmlightning-native-*/sgns_kernel-*.so"))


def test_threads_cut_a_chunk_into_parts_that_train_at_once(kernel, tmp_path):
    from test_skipgram import run_sg
    from mmlightning.vectors import load_vectors
    from test_skipgram import topic_gap

    ids, sent = np.arange(8192, dtype=np.int32) % 50, np.arange(8192, dtype=np.int32) // 10
    sampling = Sampling(np.ones(50), alias_table(np.ones(50)), 3, 2)
    batch = {"tokens": ids, "sent": sent, "seed": 3, "epoch": 0, "chunk": 0, "n_chunks": 1}
    tables = lambda: (torch.rand(50, 16) - 0.5, torch.zeros(50, 16))  # noqa: E731
    one = NativeTrainer(kernel, sampling, 0.025, 0.0001, 1)(*tables(), batch)
    two = NativeTrainer(kernel, sampling, 0.025, 0.0001, 1, threads=4)
    res = two(*tables(), batch)
    assert res["pairs"] == pytest.approx(one["pairs"], rel=0.01)  # (pairs across the 3 cuts are lost)
    assert two._pool is not None
    two.close()
    corpus = two_topic_corpus(tmp_path / "c.txt")
    kv = load_vectors(run_sg(tmp_path / "run", corpus=corpus, epochs=3, cache_dir=tmp_path / "cache",
                                     dim=20, min_count=1, num_workers=0, chunk_words=8000, hogwild_threads=2))
    assert topic_gap(kv) > 0.3


def test_a_dimension_beyond_the_kernel_is_one_line_before_training(tmp_path):
    from test_skipgram import run_sg

    corpus = two_topic_corpus(tmp_path / "c.txt", 20)
    with pytest.raises(UserError, match="^dim: the native kernel trains up to 4096"):
        run_sg(tmp_path / "run", corpus=corpus, epochs=1, cache_dir=tmp_path / "cache", dim=4097,
                       min_count=1, num_workers=0, pairs="native")
