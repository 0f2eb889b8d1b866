"""The device pair generator (torch, here on CPU) against the numpy one, and short fits with device pairs."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mmlightning.text.corpus import prepare_corpus
from mmlightning.text.data import SkipGramDataModule
from mmlightning.text.device_pairs import DevicePairs, draw_negatives_t, stretch_seed, window_pairs
from mmlightning.text.sgns import alias_table, draw_negatives, keep_probabilities, make_pairs, negative_probabilities
from mmlightning.text.skipgram import SkipGram
from test_skipgram import run_sg
from mmlightning.vectors import load_vectors
from test_skipgram import topic_gap, two_topic_corpus


def zipf_corpus(n: int = 60_000, V: int = 50, sent_len: int = 9, seed: int = 0):
    """(tokens (n,), sentence offsets (S + 1,), counts (V,)) of a Zipf-like corpus, most frequent id 0."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, V + 1)
    tokens = rng.choice(V, size=n, p=p / p.sum()).astype(np.uint32)
    counts = np.bincount(tokens, minlength=V).astype(np.int64)
    order = np.argsort(-counts, kind="stable")  # relabel: most frequent first, as the corpus cache does
    remap = np.empty(V, np.int64)
    remap[order] = np.arange(V)
    tokens = remap[tokens].astype(np.uint32)
    sentences = np.arange(0, n + 1, sent_len)
    if sentences[-1] != n:
        sentences = np.append(sentences, n)
    return tokens, sentences.astype(np.int64), counts[order]


def device_all_pairs(dp: DevicePairs, epoch: int = 0):
    inp, out = zip(*(dp.pairs(s, epoch) for s in dp.stretches()))
    return torch.cat(inp).numpy(), torch.cat(out).numpy()  # (P,), (P, K+1)


def numpy_all_pairs(tokens, sentences, counts, window, sample, chunk, seed=99):  # not zipf_corpus's seed
    keep = keep_probabilities(counts, sample)
    sent = np.searchsorted(sentences, np.arange(len(tokens)), side="right")
    rng = np.random.default_rng(seed)
    cs, xs = [], []
    for lo in range(0, len(tokens), chunk):
        c, x = make_pairs(tokens[lo:lo + chunk].astype(np.int64), sent[lo:lo + chunk], keep, window, rng)
        cs.append(c)
        xs.append(x)
    return np.concatenate(cs), np.concatenate(xs)


def test_offsets_and_pairs_per_kept_word_match_the_numpy_generator():
    n, W = 40_000, 4
    ids = torch.arange(n, dtype=torch.int32)  # distinct ids: a pair's id difference is its offset
    sent = torch.from_numpy(np.arange(n) // 11).int()  # sentences of 11 words
    gen = torch.Generator().manual_seed(0)
    b = torch.randint(1, W + 1, (n,), generator=gen)
    c, x = window_pairs(ids, sent, b, W)
    assert (sent[c] == sent[x]).all() and (c != x).all()
    cn, xn = make_pairs(np.arange(n), np.arange(n) // 11, np.ones(n), W, np.random.default_rng(0))
    dev_off = np.bincount((c - x).abs().numpy(), minlength=W + 1)[1:] / n  # pairs per word at offset d
    np_off = np.bincount(np.abs(cn - xn), minlength=W + 1)[1:] / n
    np.testing.assert_allclose(dev_off, np_off, rtol=0.04)
    assert len(c) / n == pytest.approx(len(cn) / n, rel=0.02)  # pairs per kept word
    # in one long sentence the offsets follow the dynamic window exactly: P(d) = 2 (W - d + 1) / W per word
    c1, x1 = window_pairs(ids, torch.zeros(n, dtype=torch.int32), b, W)
    theory = np.array([2 * (W - d + 1) / W for d in range(1, W + 1)])
    np.testing.assert_allclose(np.bincount((c1 - x1).abs().numpy())[1:] / n, theory, rtol=0.03)


def test_subsampling_rate_per_word_matches_word2vecs_keep_probability():
    tokens, sentences, counts = zipf_corpus()
    sample = 2e-3  # strong enough that the 10 most frequent words are sub-sampled
    dp = DevicePairs(tokens, sentences, counts, window=2, negative=1, sample=sample, stretch_words=7000, seed=3)
    kept = torch.cat([dp.kept(s, dp.generator(s, 0))[0] for s in dp.stretches()]).numpy()
    occ = np.bincount(tokens, minlength=len(counts))
    rate = np.bincount(kept, minlength=len(counts)) / occ  # share of each word's occurrences kept
    keep = keep_probabilities(counts, sample)
    assert keep[0] < 0.5 and keep[-1] == 1.0
    sigma = np.sqrt(keep * (1 - keep) / occ)  # binomial standard error
    assert (np.abs(rate - keep) <= 4 * sigma + 1e-12).all()
    inp, out = device_all_pairs(dp)  # and the same number of pairs as the numpy generator makes
    cn, _ = numpy_all_pairs(tokens, sentences, counts, 2, sample, 7000)
    assert len(inp) == pytest.approx(len(cn), rel=0.02)


def test_negatives_follow_unigram_075_like_the_numpy_sampler():
    counts = np.array([5000, 1200, 300, 80, 20, 5, 1])
    accept, alias = (torch.from_numpy(a) for a in alias_table(counts))
    pos = torch.full((60_000,), 1, dtype=torch.int64)
    neg = draw_negatives_t(accept.float(), alias, pos, 5, torch.Generator().manual_seed(0)).numpy()
    assert neg.shape == (60_000, 5) and not (neg == 1).any()
    ref = draw_negatives(alias_table(counts), pos.numpy(), 5, np.random.default_rng(0))
    freq, ref_freq = (np.bincount(a.ravel(), minlength=7) / a.size for a in (neg, ref))
    p = negative_probabilities(counts)
    p[1] = 0
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.004)
    np.testing.assert_allclose(freq, ref_freq, atol=0.005)
    expected = p / p.sum() * neg.size  # chi-square against unigram^0.75 without the positive
    chi2 = (((np.bincount(neg.ravel(), minlength=7) - expected) ** 2)[p > 0] / expected[p > 0]).sum()
    assert chi2 < 22.5  # 6 degrees of freedom: p = 0.001


def test_stretches_are_seeded_padded_and_cover_the_corpus():
    tokens, sentences, counts = zipf_corpus(n=10_000)
    dp = DevicePairs(tokens, sentences, counts, 3, 2, 1e-3, stretch_words=3000, seed=1)
    a, b, other = dp.pairs(1, 0), dp.pairs(1, 0), dp.pairs(1, 1)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1][:50], other[1][:50])
    assert stretch_seed(1, 0, 1) != stretch_seed(1, 1, 0)
    ranks = [DevicePairs(tokens, sentences, counts, 3, 2, 1e-3, 3000, 1, rank=r, world_size=3) for r in range(3)]
    assert [len(r.stretches()) for r in ranks] == [2, 2, 2]  # 4 stretches padded to 6
    assert sum(r.words(s) for r in ranks for s in r.stretches()) == 10_000
    assert dp.pairs(5, 0)[0].numel() == 0  # a padding stretch has no pairs


FAST = dict(dim=20, min_count=1, num_workers=0, compile=False)


def test_fit_with_device_pairs_separates_topics_and_resumes_exactly(tmp_path):
    corpus = two_topic_corpus(tmp_path / "c.txt")
    dm = SkipGramDataModule(corpus=corpus, cache_dir=str(tmp_path / "cache"), min_count=1, num_workers=0,
                            pairs="device", stretch_words=5000)
    # (24 words: a sub-batch of 4096 pairs would hold each word ~170 times; 512 keeps the updates fresh)
    model = SkipGram(dim=20, compile=False, device_batch_pairs=512, output_dir=str(tmp_path / "run"))
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert dm.pair_mode() == "device" and trainer.global_step == 3 * 4  # 20k words: 4 stretches per epoch
    kv = load_vectors(tmp_path / "run" / "vectors.txt")
    assert topic_gap(kv) > 0.3
    # resume: a crash at the start of epoch 2, then a rerun, gives the uninterrupted run's vectors
    from test_skipgram import Crash, CrashAtEpoch
    kw = dict(corpus=corpus, epochs=3, cache_dir=tmp_path / "cache", pairs="device", **FAST)
    straight = load_vectors(run_sg(tmp_path / "a", **kw))
    with pytest.raises(Crash):
        run_sg(tmp_path / "b", callbacks=[CrashAtEpoch(2)], **kw)
    resumed = load_vectors(run_sg(tmp_path / "b", **kw))
    np.testing.assert_allclose(resumed.vectors, straight.vectors, atol=1e-6)


def test_pairs_host_on_cpu(tmp_path):
    corpus = two_topic_corpus(tmp_path / "c.txt", 50)
    dm = SkipGramDataModule(corpus=corpus, cache_dir=str(tmp_path / "cache"), min_count=1, num_workers=0,
                            pairs="host")
    dm.trainer = pl.Trainer(accelerator="cpu", logger=False)
    dm.setup("fit")
    assert dm.pair_mode() == "host" and dm.device_pairs is None
    with pytest.raises(Exception, match="pairs"):
        SkipGramDataModule(pairs="gpu")


@pytest.mark.slow
def test_cli_ddp_two_cpu_processes_with_device_pairs(tmp_path):
    """`fit` with data.pairs device under DDP (gloo, 2 processes): each rank its stretches, tables summed."""
    import os
    import subprocess
    import sys
    from test_skipgram import ROOT, _cli_config
    cfg = _cli_config(tmp_path, two_topic_corpus(tmp_path / "c.txt"))
    cmd = [sys.executable, "-m", "mmlightning", "fit", "--config", str(cfg), "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--data.init_args.num_workers", "0", "--data.init_args.pairs", "device",
           "--data.init_args.stretch_words", "500", "--model.init_args.device_batch_pairs", "512"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert topic_gap(load_vectors(tmp_path / "run" / "vectors.txt")) > 0.3


def _tables(V=40, D=8, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(V, D, generator=g) * 0.3).to(device), (torch.randn(V, D, generator=g) * 0.3).to(device)


def test_chunk_trainer_sends_full_sub_batches_to_the_graphed_update(monkeypatch):
    """The CUDA-graph route (faked here on CPU): full sub-batches replay it, the short last one runs eager."""
    from mmlightning.text.sgns import ChunkTrainer, sgns_update
    g = torch.Generator().manual_seed(1)
    inp, out = torch.randint(0, 40, (250,), generator=g), torch.randint(0, 40, (250, 4), generator=g)
    ref0, ref1 = _tables()
    ChunkTrainer(100, 0.05, 0.001, 2, False, "cpu")(ref0, ref1, inp, out, 0, 1, 3)
    syn0, syn1 = _tables()
    sizes = []

    def fake_graph(i, o, lr):
        sizes.append(len(i))
        sgns_update(syn0, syn1, i, o, torch.tensor(lr, dtype=torch.float64))
    ct = ChunkTrainer(100, 0.05, 0.001, 2, False, "cuda", graphs=True)
    monkeypatch.setattr(ct, "graphed", lambda s0, s1, k1: fake_graph)
    ct(syn0, syn1, inp, out, 0, 1, 3)
    assert sizes == [100, 100]  # the third sub-batch (50 pairs) went eager
    assert torch.equal(syn0, ref0) and torch.equal(syn1, ref1)


@pytest.mark.gpu
def test_graphed_update_equals_eager_on_cuda():
    from mmlightning.text.sgns import GraphedUpdate, sgns_update
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ref0, ref1 = _tables(device="cuda")
    syn0, syn1 = _tables(device="cuda")
    step = GraphedUpdate(syn0, syn1, 64, 4)
    g = torch.Generator().manual_seed(2)
    for k in range(3):
        inp, out = torch.randint(0, 40, (64,), generator=g).cuda(), torch.randint(0, 40, (64, 4), generator=g).cuda()
        sgns_update(ref0, ref1, inp, out, torch.tensor(0.05 / (k + 1), dtype=torch.float32, device="cuda"))
        step(inp, out, 0.05 / (k + 1))
    torch.testing.assert_close(syn0, ref0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(syn1, ref1, atol=1e-5, rtol=1e-4)
