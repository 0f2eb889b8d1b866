"""SGNS: pair generation, sub-sampling, negatives, the update rule, LR schedule, fit, resume, export, DDP."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mmlightning.text.corpus import prepare_corpus
from mmlightning.errors import UserError
from mmlightning.text.skipgram import (PairChunks, SkipGram, SkipGramDataModule, alias_table, draw_negatives,
                                  keep_probabilities, linear_lr, make_pairs, negative_probabilities, sgns_loss,
                                  sgns_update)
from mmlightning.text.train import SkipgramConfig, train_skipgram
from mmlightning.vectors import load_vectors

ROOT = Path(__file__).resolve().parents[1]
TOPIC_A = ["cat", "dog", "horse", "cow", "sheep", "goat", "pig", "mouse", "lion", "tiger"]
TOPIC_B = ["car", "bus", "train", "truck", "bike", "plane", "boat", "tram", "van", "taxi"]


def two_topic_corpus(path: Path, n_sent: int = 2000, seed: int = 0) -> str:
    """Sentences from one topic each (plus a few common words): the topics share no context."""
    rng = np.random.default_rng(seed)
    common = ["the", "a", "of", "and"]
    with open(path, "w") as fh:
        for s in range(n_sent):
            topic = TOPIC_A if s % 2 == 0 else TOPIC_B
            words = [rng.choice(topic) if rng.random() < 0.75 else rng.choice(common) for _ in range(10)]
            fh.write(" ".join(words) + "\n")
    return str(path)


def topic_gap(kv) -> float:
    """Mean within-topic cosine minus mean between-topic cosine."""
    def unit(ws):
        m = np.stack([kv[w] for w in ws])
        return m / np.linalg.norm(m, axis=1, keepdims=True)
    a, b = unit(TOPIC_A), unit(TOPIC_B)
    n = len(TOPIC_A)
    within = ((a @ a.T).sum() - n + (b @ b.T).sum() - n) / (2 * n * (n - 1))
    return float(within - (a @ b.T).mean())


# --------------------------------------------------------------------------------- pure functions
def test_keep_probability_is_word2vecs_formula():
    counts = np.array([100_000, 50, 10])
    t = 1e-3 * counts.sum()
    p = keep_probabilities(counts, 1e-3)
    assert p[0] == pytest.approx((np.sqrt(100_000 / t) + 1) * t / 100_000)
    assert p[1] == 1.0 and p[2] == 1.0  # rare words are always kept
    assert (keep_probabilities(counts, 0) == 1).all()


def test_window_pairs_distances_follow_the_dynamic_window():
    n, W = 30_000, 3
    ids = np.arange(n)  # distinct ids: a pair's id difference is its distance
    centre, context = make_pairs(ids, np.zeros(n, int), np.ones(n), W, np.random.default_rng(0))
    dist = np.abs(centre - context)
    assert dist.min() == 1 and dist.max() == W
    for d in range(1, W + 1):  # a centre reaches distance d when its window b >= d: P = (W - d + 1) / W
        assert (dist == d).sum() / n == pytest.approx(2 * (W - d + 1) / W, rel=0.03)
    assert (centre != context).all()


def test_pairs_never_cross_sentences_and_subsampling_keeps_the_right_share():
    n = 20_000
    ids = np.arange(n)
    sent = np.arange(n) // 7  # sentences of 7 words
    c, x = make_pairs(ids, sent, np.ones(n), 5, np.random.default_rng(1))
    assert (sent[c] == sent[x]).all()
    keep = np.where(np.arange(n) % 2 == 0, 0.25, 1.0)  # even ids kept with probability 1/4
    c, x = make_pairs(ids, np.zeros(n, int), keep, 1, np.random.default_rng(2))
    seen = np.unique(np.concatenate([c, x]))
    assert (seen % 2 == 0).sum() / (n / 2) == pytest.approx(0.25, abs=0.02)
    assert (seen % 2 == 1).sum() == n // 2


def test_negatives_follow_unigram_075_and_skip_the_positive():
    counts = np.array([1000, 300, 100, 10, 1])
    table = alias_table(counts)
    pos = np.zeros(100_000, dtype=np.int64) + 3
    neg = draw_negatives(table, pos, 5, np.random.default_rng(0))
    assert neg.shape == (100_000, 5) and not (neg == 3).any()
    freq = np.bincount(neg.ravel(), minlength=5) / neg.size
    p = negative_probabilities(counts)
    p[3] = 0
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.005)
    free = draw_negatives(table, np.full(200_000, -1), 1, np.random.default_rng(1)).ravel()
    np.testing.assert_allclose(np.bincount(free, minlength=5) / free.size, negative_probabilities(counts), atol=0.005)


def test_linear_lr_schedule():
    assert linear_lr(0.0, 0.025, 0.0001) == 0.025
    assert linear_lr(1.0, 0.025, 0.0001) == pytest.approx(0.0001)
    assert linear_lr(0.5, 0.025, 0.0001) == pytest.approx((0.025 + 0.0001) / 2)
    assert linear_lr(2.0, 0.025, 0.0001) == pytest.approx(0.0001)


def test_sgns_update_is_one_sgd_step_on_the_sgns_loss():
    g = torch.Generator().manual_seed(0)
    syn0, syn1 = torch.randn(50, 8, generator=g) * 0.3, torch.randn(50, 8, generator=g) * 0.3
    inp = torch.randint(0, 50, (64,), generator=g)
    out = torch.randint(0, 50, (64, 4), generator=g)  # duplicates included: their updates add up
    a0, a1 = syn0.clone().requires_grad_(), syn1.clone().requires_grad_()
    (sgns_loss(a0, a1, inp, out) * len(inp)).backward()
    lr = 0.05
    sgns_update(syn0, syn1, inp, out, torch.tensor(lr, dtype=torch.float64))
    torch.testing.assert_close(syn0, (a0 - lr * a0.grad).detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(syn1, (a1 - lr * a1.grad).detach(), atol=1e-6, rtol=1e-5)


def test_pair_chunks_seeded_and_padded_for_ranks(tmp_path):
    enc = prepare_corpus(two_topic_corpus(tmp_path / "c.txt", 300), tmp_path / "cache", min_count=1)
    ds = PairChunks(str(enc.path), 5, 3, 1e-3, 500, seed=7)
    a, b, other = ds.chunk(1, 0), ds.chunk(1, 0), ds.chunk(1, 1)
    assert torch.equal(a["output"], b["output"]) and not torch.equal(a["output"][:50], other["output"][:50])
    assert a["output"].shape[1] == 4 and (a["output"][:, 0] != a["output"][:, 1:].T).all()
    n = -(-enc.n_tokens // 500)  # chunks before padding
    r0 = list(PairChunks(str(enc.path), 5, 3, 1e-3, 500, 7, rank=0, world_size=2))
    r1 = list(PairChunks(str(enc.path), 5, 3, 1e-3, 500, 7, rank=1, world_size=2))
    assert len(r0) == len(r1) == (n + 1) // 2  # same number of steps on every rank
    assert sum(x["words"] for x in r0 + r1) == enc.n_tokens


# --------------------------------------------------------------------------------- Lightning fits
FAST = dict(dim=20, min_count=1, num_workers=0, compile=False, sample=1e-3)
SETTINGS = set(SkipgramConfig.__dataclass_fields__)


def run_sg(output_dir, corpus, cache_dir, callbacks=None, seed=1, **settings):
    """`train_skipgram` with SkipgramConfig fields as keywords (any other keyword is a SkipGram argument)."""
    model_kwargs = {k: settings.pop(k) for k in list(settings) if k not in SETTINGS}
    cfg = SkipgramConfig(**settings, model_kwargs=model_kwargs)
    return train_skipgram(cfg, output_dir, corpus=corpus, seed=seed, cache_dir=cache_dir, callbacks=callbacks)


@pytest.mark.parametrize("pairs", ["native", "host"])
def test_fit_separates_two_topics_and_writes_vectors(tmp_path, pairs):
    corpus = two_topic_corpus(tmp_path / "c.txt")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = run_sg(tmp_path / "run", corpus=corpus, epochs=3, cache_dir=tmp_path / "cache", pairs=pairs,
                             **FAST)
        # training runs on intra_op_threads (1) but gives the process its threads back: a later stage in
        # the same process (reproduce's extraction) must not run, nor round, differently
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert out == tmp_path / "run" / "vectors.txt"
    kv = load_vectors(out)
    assert topic_gap(kv) > 0.3
    vocab = (tmp_path / "run" / "vocab.tsv").read_text().splitlines()
    assert len(vocab) == len(kv) and vocab[0].split("\t")[0] == kv.index_to_key[0]
    from gensim.models import KeyedVectors  # the file is word2vec text that gensim reads
    g = KeyedVectors.load_word2vec_format(str(out))
    np.testing.assert_allclose(g["cat"], kv["cat"])
    mtime = out.stat().st_mtime_ns  # same settings again: the finished run is reused
    assert run_sg(tmp_path / "run", corpus=corpus, epochs=3, cache_dir=tmp_path / "cache", pairs=pairs,
                          **FAST) == out
    assert out.stat().st_mtime_ns == mtime


class Crash(Exception):
    pass


class CrashAtEpoch(pl.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Crash()


class RecordLR(pl.Callback):
    def __init__(self):
        self.lrs, self.epochs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append(float(trainer.callback_metrics["lr"]))
        self.epochs.append(int(batch["epoch"]))  # the pair stream's seed epoch


@pytest.mark.parametrize("pairs", ["native", "host"])
def test_resume_after_a_crash_gives_the_uninterrupted_vectors_and_lr_decays(tmp_path, pairs):
    corpus = two_topic_corpus(tmp_path / "c.txt", 600)
    kw = dict(corpus=corpus, epochs=3, cache_dir=tmp_path / "cache", chunk_words=1000, pairs=pairs, **FAST)
    rec = RecordLR()
    straight = load_vectors(run_sg(tmp_path / "a", callbacks=[rec], **kw))
    assert rec.lrs == sorted(rec.lrs, reverse=True) and len(rec.lrs) >= 9
    assert sorted(set(rec.epochs)) == [0, 1, 2] and rec.epochs == sorted(rec.epochs)
    assert rec.lrs[0] == pytest.approx(0.025, rel=0.2) and rec.lrs[-1] == pytest.approx(0.0001)
    with pytest.raises(Crash):
        run_sg(tmp_path / "b", callbacks=[CrashAtEpoch(2)], **kw)
    assert (tmp_path / "b" / "ckpt" / "last.ckpt").is_file() and not (tmp_path / "b" / "vectors.txt").exists()
    resumed = load_vectors(run_sg(tmp_path / "b", **kw))
    np.testing.assert_allclose(resumed.vectors, straight.vectors, atol=1e-6)
    # other settings in the same folder are refused; so is a checkpoint from another vocabulary
    other = two_topic_corpus(tmp_path / "other.txt", 50, seed=3)
    with pytest.raises(UserError, match="other settings"):
        run_sg(tmp_path / "b", **{**kw, "corpus": other})
    dm = SkipGramDataModule(corpus=other, cache_dir=str(tmp_path / "cache"), min_count=1, num_workers=0)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(UserError, match="vocabulary .* is not this corpus's"):
        trainer.fit(SkipGram(dim=20, compile=False, output_dir=None), datamodule=dm,
                    ckpt_path=str(tmp_path / "b" / "ckpt" / "last.ckpt"))


def test_export_round_trip(tmp_path, capsys):
    from mmlightning.text.export import export
    corpus = two_topic_corpus(tmp_path / "c.txt", 200)
    vec = run_sg(tmp_path / "run", corpus=corpus, epochs=1, cache_dir=tmp_path / "cache", **FAST)
    ckpt = tmp_path / "run" / "ckpt" / "last.ckpt"
    path = export(str(ckpt), str(tmp_path / "exp" / "v.txt"))
    a, b = load_vectors(vec), load_vectors(path)
    assert a.index_to_key == b.index_to_key
    np.testing.assert_allclose(a.vectors, b.vectors)
    assert (tmp_path / "exp" / "vocab.tsv").read_text() == (tmp_path / "run" / "vocab.tsv").read_text()
    assert Path(export(str(ckpt))) == tmp_path / "run" / "vectors.txt"  # default: the run's folder
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(UserError, match="not a SkipGram checkpoint"):
        export(str(bad))
    with pytest.raises(UserError, match="not found"):
        export(str(tmp_path / "nope.ckpt"))


def test_word_vectors_and_bad_settings():
    with pytest.raises(UserError):
        SkipGram(dim=0)
    m = SkipGram(dim=4)
    with pytest.raises(UserError, match="no vectors yet"):
        m.word_vectors()
    m.set_vocabulary(["a", "b", "c"], np.array([3, 2, 1]))
    kv = m.word_vectors()
    assert kv.index_to_key == ["a", "b", "c"] and kv.vectors.shape == (3, 4)
    assert np.abs(kv.vectors).max() <= 0.5 / 4 and (m.syn1 == 0).all()  # word2vec's initialisation


def _cli_config(tmp_path: Path, corpus: str) -> Path:
    text = (ROOT / "configs" / "skipgram.yaml").read_text()
    text = (text.replace("checkpoints/skipgram", str(tmp_path / "run"))
                .replace("checkpoints/corpus_cache", str(tmp_path / "cache"))
                .replace("[gcide]", f"[{corpus}]").replace("compile: true", "compile: false")
                .replace("max_epochs: 5", "max_epochs: 3").replace("dim: 100", "dim: 20")
                .replace("min_count: 5", "min_count: 1"))
    cfg = tmp_path / "sg.yaml"
    cfg.write_text(text)
    return cfg


@pytest.mark.slow
def test_cli_ddp_two_cpu_processes_same_quality(tmp_path):
    """`fit` through the CLI with strategy=ddp, devices=2 (gloo): vectors as good as one process."""
    corpus = two_topic_corpus(tmp_path / "c.txt")
    cfg = _cli_config(tmp_path, corpus)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mmlightning", "fit", "--config", str(cfg), "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--data.num_workers", "0", "--data.chunk_words", "500"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kv = load_vectors(tmp_path / "run" / "vectors.txt")
    assert topic_gap(kv) > 0.3


@pytest.mark.parametrize("pairs", ["native", "host"])
def test_hogwild_workers_train_the_shared_tables(tmp_path, pairs):
    """With DataLoader workers, the workers themselves train (lock-free, shared memory): same quality."""
    corpus = two_topic_corpus(tmp_path / "c.txt")
    kw = {**FAST, "num_workers": 2, "chunk_words": 2000, "pairs": pairs}
    seen = []
    record = type("Rec", (pl.Callback,), {"on_train_batch_end": lambda self, tr, m, out, batch, i: seen.append(batch)})
    kv = load_vectors(run_sg(tmp_path / "run", corpus=corpus, epochs=5, cache_dir=tmp_path / "cache",
                                     callbacks=[record()], **kw))
    assert topic_gap(kv) > 0.3
    assert seen and all(b.get("trained") for b in seen)  # the workers trained every chunk ...
    assert all("tokens" not in b and len(b.get("input", ())) <= 256 for b in seen)  # ... and sent back little


def test_an_output_folder_holds_one_record(tmp_path):
    import json

    corpus = two_topic_corpus(tmp_path / "c.txt", 10)
    run_sg(tmp_path / "run", corpus=corpus, epochs=1, cache_dir=tmp_path / "cache", **FAST)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.json")) == ["record.json"]
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["state"] == "done" and rec["settings"]["skipgram"]["dim"] == 20 and rec["outputs"]["vectors"] == "vectors.txt"
    assert not list((tmp_path / "run").glob(".settings*")) and not (tmp_path / "run" / "done.json").exists()
