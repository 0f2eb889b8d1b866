"""MMSkip-gram's visual objective: the gradient (finite differences), PCA, matching, and what training does."""
import logging

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mmlightning.errors import UserError
from mmlightning.text import mmskipgram
from mmlightning.text.mmskipgram import (VisualObjective, file_digest, init_map, match_vocabulary, pca_reduce,
                                         round_sizes, word_space_hinge)
from mmlightning.text.train import SkipgramConfig, train_skipgram
from mmlightning.vectors import load_vectors

PIC = [f"pic{i}" for i in range(8)]  # words with a visual vector
ALT = [f"alt{i}" for i in range(8)]  # alt_i: no picture, but exactly pic_i's contexts
CTX = [[f"ctx{i}x{j}" for j in range(3)] for i in range(8)]


def corpus(path, n_sent: int = 3000, seed: int = 0) -> str:
    """Sentences of 5 context words of one group i and pic_i or alt_i: text says nothing about the pictures."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for _ in range(n_sent):
            i = rng.integers(8)
            words = list(rng.choice(CTX[i], 5))
            words.insert(rng.integers(6), PIC[i] if rng.random() < 0.5 else ALT[i])
            fh.write(" ".join(words) + "\n")
    return str(path)


def visual_file(path, dim: int = 16, seed: int = 0) -> str:
    """word2vec text: pic_i's visual vector in one of two clusters (i even / odd), ReLU'd like CNN features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, dim)) * 3
    rows = [np.maximum(centres[i % 2] + rng.normal(size=dim), 0) for i in range(8)]
    lines = [f"{w} " + " ".join(f"{x:.6f}" for x in v) for w, v in zip(["Pic0"] + PIC[1:], rows)]  # Pic0: case
    with open(path, "w") as fh:
        fh.write(f"{len(rows) + 1} {dim}\n" + "\n".join(lines) + f"\nnowhere {' '.join(['1'] * dim)}\n")
    return str(path)


def unit(m):
    m = np.asarray(m, dtype=np.float64)
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------- the gradient
@pytest.mark.parametrize("variant", ["A", "B"])
def test_the_term_and_its_gradient_match_brute_force_and_finite_differences(variant):
    """In the word space (z = M u never formed): the value against cosines of z, the gradient against
    central differences, and the parts of the map's gradient against finite differences in M."""
    g = torch.Generator().manual_seed(0)
    n, D, Dv, K, margin = 5, 4, 7, 4, 0.5
    E = D if variant == "A" else Dv
    M = torch.randn(Dv, D, generator=g, dtype=torch.float64)
    u = torch.randn(n, D, generator=g, dtype=torch.float64)
    pos = torch.nn.functional.normalize(torch.randn(n, E, generator=g, dtype=torch.float64), dim=1)
    neg = torch.nn.functional.normalize(torch.randn(K, E, generator=g, dtype=torch.float64), dim=1)
    counts = torch.tensor([1.0, 2.0, 3.0, 0.5, 1.0], dtype=torch.float64)
    mask = torch.rand(n, K, generator=g) > 0.25

    def term(u, M):
        if variant == "A":
            return word_space_hinge(u, pos, neg, None, counts, margin, mask)
        return word_space_hinge(u, pos @ M, neg @ M, M.T @ M, counts, margin, mask)

    loss, grad, (an, pn, coef) = term(u, M)
    z = u if variant == "A" else u @ M.T  # (n, E)
    cos = lambda a, b: float(a @ b / a.norm() / b.norm())  # noqa: E731
    hinges = [max(0.0, margin - cos(z[i], pos[i]) + cos(z[i], neg[k])) for i in range(n) for k in range(K) if mask[i, k]]
    assert float(loss) == pytest.approx(sum(float(counts[i]) * max(0.0, margin - cos(z[i], pos[i]) + cos(z[i], neg[k]))
                                            for i in range(n) for k in range(K) if mask[i, k]), rel=1e-12)
    assert 0 < sum(h > 0 for h in hinges) < len(hinges)  # active and inactive terms both present

    def fd(x, f, eps=1e-6):
        out = torch.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            d = torch.zeros_like(x)
            d[idx] = eps
            out[idx] = (f(x + d) - f(x - d)) / (2 * eps)
        return out
    torch.testing.assert_close(grad, fd(u, lambda x: float(term(x, M)[0])), atol=1e-7, rtol=1e-6)
    if variant == "B":  # dloss/dM = sum_i (an_i V' - pn_i v_i + coef_i M u_i) u_i^T
        grad_map = neg.T @ (an.T @ u) - pos.T @ (u * pn[:, None]) + M @ (u.T @ (u * coef[:, None]))
        torch.testing.assert_close(grad_map, fd(M, lambda x: float(term(u, x)[0])), atol=1e-7, rtol=1e-6)


def test_round_sizes_step_one_then_doubling_occurrences():
    got = [(s.tolist(), c.tolist()) for s, c in round_sizes(torch.tensor([1.0, 9.0, 2.5, 0.5]))]
    assert got == [([0, 1, 2, 3], [1.0, 1.0, 1.0, 0.5]), ([1, 2], [1.0, 1.0]), ([1, 2], [2.0, 0.5]), ([1], [4.0]),
                   ([1], [1.0])]


@pytest.mark.parametrize("variant", ["A", "B"])
@pytest.mark.parametrize("map_l2", [0.0, 0.05])
def test_step_is_one_sgd_step_on_the_summed_term(variant, map_l2):
    """Words seen once: syn0 (and B's map) after `step` = before - lr x weight x the finite-difference gradient;
    with B's penalty lambda |M|^2 per occurrence (the paper's B) in the term and its gradient."""
    if variant == "A" and map_l2:
        pytest.skip("A has no map")
    g = torch.Generator().manual_seed(1)
    V, D, Dv, K = 9, 4, 6, 3
    E = D if variant == "A" else Dv
    targets = torch.randn(5, E, generator=g, dtype=torch.float64)
    obj = VisualObjective(targets, torch.tensor([0, 2, 3, 5, 8]), V, variant, margin=0.5, negatives=K, weight=1.5,
                          map_l2=map_l2)
    syn0 = torch.randn(V, D, generator=g, dtype=torch.float64)
    vmap = torch.randn(Dv, D, generator=g, dtype=torch.float64) if variant == "B" else None
    rows, counts = torch.tensor([0, 1, 3]), torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)  # one round
    neg = torch.tensor([1, 3, 4])  # row 1 and 3 are their own negatives once: dropped

    def loss(s0, m):
        return obj.step(s0.clone(), None if m is None else m.clone(), rows, counts, neg, lr=0.0)

    params = [syn0] + ([vmap] if vmap is not None else [])
    fds = []
    for p in params:
        fd = torch.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            keep = p[idx].item()
            p[idx] = keep + 1e-6
            hi = loss(syn0, vmap)
            p[idx] = keep - 1e-6
            lo = loss(syn0, vmap)
            p[idx] = keep
            fd[idx] = (hi - lo) / 2e-6
        fds.append(fd)
    assert fds[0][[1, 4, 6, 7]].abs().max() == 0  # words without a visual vector get no gradient
    before = [p.clone() for p in params]
    value = obj.step(syn0, vmap, rows, counts, neg, lr=0.1)
    assert value == pytest.approx(loss(before[0], before[1] if vmap is not None else None))
    for p, b, fd in zip(params, before, fds):
        torch.testing.assert_close(p, b - 0.1 * 1.5 * fd, atol=1e-7, rtol=1e-6)
    if map_l2:  # the penalty's share of the map's gradient: 2 lambda (3 occurrences) M
        plain = VisualObjective(targets, torch.tensor([0, 2, 3, 5, 8]), V, variant, margin=0.5, negatives=K, weight=1.5)
        m0 = before[1].clone()
        plain.step(before[0].clone(), m0, rows, counts, neg, lr=0.1)
        torch.testing.assert_close(vmap, m0 - 0.1 * 1.5 * 2 * map_l2 * 3 * before[1])


@pytest.mark.parametrize("variant", ["A", "B"])
def test_words_seen_often_step_in_rounds_with_the_map_fixed_until_the_end(variant):
    """counts (2, 1, 5) = the rounds' steps one after the other (1, 1 / 1 / 1, 1, 2, 1), the map's step summed."""
    g = torch.Generator().manual_seed(2)
    V, D, Dv = 7, 4, 6
    targets = torch.randn(4, D if variant == "A" else Dv, generator=g, dtype=torch.float64)
    obj = VisualObjective(targets, torch.tensor([0, 2, 3, 6]), V, variant, negatives=3)
    syn0 = torch.randn(V, D, generator=g, dtype=torch.float64) * 0.5
    vmap = torch.randn(Dv, D, generator=g, dtype=torch.float64) if variant == "B" else None
    rows, counts, neg = torch.tensor([0, 1, 3]), torch.tensor([2.0, 1.0, 5.0], dtype=torch.float64), torch.tensor([1, 2, 0])
    twice = VisualObjective(targets, torch.tensor([0, 2, 3, 6]), V, variant, negatives=3, weight=2.0)
    ref0, ref_map = syn0.clone(), None if vmap is None else vmap.clone()
    for sel, o in [([0, 1, 2], obj), ([0, 2], obj), ([2], twice), ([2], obj)]:  # a round of 2: one step, twice the term
        m = None if vmap is None else vmap.clone()
        o.step(ref0, m, rows[sel], torch.ones(len(sel), dtype=torch.float64), neg, lr=0.2)
        if m is not None:
            ref_map += m - vmap
    obj.step(syn0, vmap, rows, counts, neg, lr=0.2)
    torch.testing.assert_close(syn0, ref0)
    if vmap is not None:
        torch.testing.assert_close(vmap, ref_map)


# ---------------------------------------------------------------------------------- the pieces
def test_pca_reduce_is_centred_deterministic_signed_and_padded(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12)) @ rng.normal(size=(12, 12)) + 5
    y = pca_reduce(x, 5, seed=1)
    assert y.shape == (40, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    assert (np.var(y, 0)[:-1] >= np.var(y, 0)[1:]).all()  # components by decreasing variance
    np.testing.assert_array_equal(y, pca_reduce(x, 5, seed=1))
    few = pca_reduce(x[:3], 5, seed=1)  # 3 rows: 2 components, then zeros
    assert (few[:, 2:] == 0).all() and np.abs(few[:, :2]).min() > 0
    monkeypatch.setattr(mmskipgram, "EXACT_SVD_MAX", 10)  # the seeded randomised SVD: the same subspace here
    approx = pca_reduce(x, 5, seed=1)
    np.testing.assert_array_equal(approx, pca_reduce(x, 5, seed=1))
    np.testing.assert_allclose(np.abs(approx[:, :3]), np.abs(y[:, :3]), rtol=1e-3, atol=1e-3)


def test_vocabulary_matching_counts_and_negatives(tmp_path):
    rows, ids = match_vocabulary(["Apple", "apple", "Pear", "kiwi"], ["pear", "apple", "fig"])
    assert ids.tolist() == [0, 1] and rows.tolist() == [2, 1]  # exact spelling wins; else lower-cased
    words = ["the"] + PIC + ALT
    obj = VisualObjective.from_file(visual_file(tmp_path / "v.txt"), words, 4, "A", seed=3)
    assert obj.vocab_ids.tolist() == list(range(1, 9)) and obj.targets.shape == (8, 4)  # "Pic0" -> pic0
    torch.testing.assert_close(obj.targets.norm(dim=1), torch.ones(8))
    rows_, counts = obj.counts(torch.tensor([1, 1, 0, 3, 9, 1]))  # pic0 x3, pic2 x1; "the" and alt0 have none
    assert rows_.tolist() == [0, 2] and counts.tolist() == [3.0, 1.0]
    _, w = obj.counts(torch.tensor([1, 3, 3]), torch.tensor([0.5, 0.25, 0.25]))  # native: keep probabilities
    assert w.tolist() == [0.5, 0.5]
    a, b = obj.draw_negatives(0, 5), obj.draw_negatives(0, 5)
    assert torch.equal(a, b) and len(a) == 20 and not torch.equal(a, obj.draw_negatives(1, 5))
    B = VisualObjective.from_file(tmp_path / "v.txt", words, 4, "B")
    assert B.visual_dim == 16 and init_map(16, 4, 1).shape == (16, 4)
    with pytest.raises(UserError, match="at least 2"):
        VisualObjective.from_file(tmp_path / "v.txt", ["pic3", "dog"], 4, "B")
    with pytest.raises(UserError, match="not found"):
        VisualObjective.from_file(tmp_path / "nope.txt", words, 4, "B")
    with pytest.raises(UserError, match="visual_variant"):
        VisualObjective.from_file(tmp_path / "v.txt", words, 4, "C")


def test_config_key_unchanged_without_visual_and_by_content_with(tmp_path):
    plain = SkipgramConfig()
    assert not any(k.startswith("visual") for k in plain.key())
    vis = visual_file(tmp_path / "v.txt")
    key = SkipgramConfig(visual_vectors=vis).key()
    assert key["visual_vectors"] == {"sha256": file_digest(vis)} and key["visual_negatives"] == 20
    assert key["visual_margin"] == 0.5 and key["visual_variant"] == "B"
    for bad, match in (({"visual_variant": "C"}, "visual_variant"), ({"visual_negatives": 0}, "visual_negatives"),
                       ({"visual_margin": 0}, "visual_margin"), ({"visual_weight": -1}, "visual_weight")):
        with pytest.raises(UserError, match=match):
            SkipgramConfig(visual_vectors=vis, **bad)
    with pytest.raises(UserError, match="not found"):
        SkipgramConfig(visual_vectors=str(tmp_path / "missing.txt")).key()


# ---------------------------------------------------------------------------------- training
def rsa(vectors, words, visual) -> float:
    """Pearson r between the words' pairwise cosines and their visual vectors' pairwise cosines."""
    a, b = unit(vectors) @ unit(vectors).T, unit(visual) @ unit(visual).T
    iu = np.triu_indices(len(words), 1)
    return float(np.corrcoef(a[iu], b[iu])[0, 1])


def fit(tmp_path, name, pairs, workers=0, callbacks=None, **visual):
    cfg = SkipgramConfig(epochs=4, dim=20, min_count=1, num_workers=workers, compile=False, pairs=pairs,
                         chunk_words=500, progress_bar=False, relatedness=[], **visual,
                         model_kwargs={"device_batch_pairs": 256})
    return train_skipgram(cfg, tmp_path / name, corpus=str(tmp_path / "c.txt"), cache_dir=tmp_path / "cache",
                          callbacks=callbacks)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mm")
    corpus(tmp / "c.txt")
    vis = load_vectors(visual_file(tmp / "v.txt"))
    base = {pairs: load_vectors(fit(tmp, f"text-{pairs}", pairs)) for pairs in ("host", "native", "device")}
    return tmp, vis, base


@pytest.mark.parametrize("pairs,workers", [("host", 0), ("native", 0), ("device", 0), ("host", 2), ("native", 2)])
@pytest.mark.parametrize("variant", ["A", "B"])
def test_training_pulls_words_toward_their_visual_vectors_and_imageless_words_follow(world, pairs, workers, variant):
    tmp, vis, base = world
    seen = []
    record = type("Rec", (pl.Callback,), {"on_train_batch_end": lambda s, tr, m, o, batch, i: seen.append(batch)})
    # weight 0.3: in this toy every sentence holds a pictured word or its partner; at weight 1 the pictured
    # words are pulled harder still but, their norms grown ~10x, their contexts' output vectors push the
    # imageless partners into an anti-visual arrangement (so does one step per occurrence: it is the term)
    out = fit(tmp, f"{variant}-{pairs}-{workers}", pairs, workers, [record()], visual_vectors=str(tmp / "v.txt"),
              visual_variant=variant, visual_weight=0.3)
    kv, text = load_vectors(out), base[pairs]
    assert all(("tokens" if pairs == "native" else "kept") in b for b in seen)  # the words came with the batches
    v = np.stack([vis["Pic0"]] + [vis[w] for w in PIC[1:]])  # (8, 16)
    for words in (PIC, ALT):  # pic_i has pic_i's picture; alt_i none, only pic_i's contexts
        mm, txt = rsa(np.stack([kv[w] for w in words]), words, v), rsa(np.stack([text[w] for w in words]), words, v)
        assert mm > txt + 0.3 and mm > 0.2, (words[0], mm, txt)
    if variant == "A":  # the cosine of each word vector to its own (PCA-reduced) visual vector rises
        obj = VisualObjective.from_file(tmp / "v.txt", list(kv.index_to_key), 20, "A", seed=1)
        ids, t = obj.vocab_ids.numpy(), obj.targets.numpy()  # (8,), (8, 20)
        assert text.index_to_key == kv.index_to_key
        own = {name: float((unit(m.vectors[ids]) * t).sum(1).mean()) for name, m in (("mm", kv), ("text", text))}
        assert own["mm"] > own["text"] + 0.3, own

def test_variant_b_map_is_checkpointed_and_a_resumed_run_matches(tmp_path):
    corpus(tmp_path / "c.txt", 600)
    vis = visual_file(tmp_path / "v.txt")

    class Crash(Exception):
        pass

    crash = type("CrashAt1", (pl.Callback,), {"on_train_epoch_start": lambda s, tr, m: (_ for _ in ()).throw(Crash())
                                               if tr.current_epoch == 2 else None})
    straight = load_vectors(fit(tmp_path, "a", "host", visual_vectors=vis))
    with pytest.raises(Crash):
        fit(tmp_path, "b", "host", callbacks=[crash()], visual_vectors=vis)
    ckpt = torch.load(tmp_path / "b" / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"]["vis_map"].shape == (16, 20)
    resumed = load_vectors(fit(tmp_path, "b", "host", visual_vectors=vis))
    np.testing.assert_allclose(resumed.vectors, straight.vectors, atol=1e-6)
    from mmlightning.text.export import export
    from mmlightning.text.skipgram import SkipGram
    last = str(tmp_path / "b" / "ckpt" / "last.ckpt")
    assert load_vectors(export(last, str(tmp_path / "e.txt"))).vectors.shape[1] == 20
    loaded = SkipGram.load_from_checkpoint(last, output_dir=None)  # outside fit: the map comes back too
    torch.testing.assert_close(loaded.vis_map.data, torch.load(last, weights_only=False)["state_dict"]["vis_map"])
    assert loaded.hparams.visual_variant == "B" and loaded.hparams.visual_negatives == 20


def test_cli_fit_takes_the_visual_objective_and_refuses_bad_settings_in_one_line(tmp_path, capsys):
    from mmlightning import cli
    from test_skipgram import _cli_config

    cfg = _cli_config(tmp_path, corpus(tmp_path / "c.txt", 300))
    vis = visual_file(tmp_path / "v.txt")
    args = ["fit", "--config", str(cfg), "--data.init_args.num_workers", "0", "--trainer.enable_progress_bar",
            "false", "--trainer.max_epochs", "1", f"--model.init_args.visual_vectors={vis}"]
    try:
        assert cli.main([*args, "--model.init_args.visual_variant=A"]) == 0
        assert load_vectors(tmp_path / "run" / "vectors.txt").vector_size == 20
        assert cli.main([*args, "--model.init_args.visual_negatives=0"]) == 2
    finally:
        logging.getLogger("mmlightning").handlers.clear()  # cli.main adds a stderr handler
    err = [line for line in capsys.readouterr().err.splitlines() if "visual_negatives" in line]
    assert len(err) == 1 and "must be >= 1" in err[0]


@pytest.mark.slow
def test_ddp_two_cpu_processes_share_the_map_and_ground_the_words(tmp_path):
    """`fit` with strategy ddp, devices 2 (gloo) and variant B: the map is combined with the tables."""
    import os
    import subprocess
    import sys

    from test_skipgram import ROOT, _cli_config

    cfg = _cli_config(tmp_path, corpus(tmp_path / "c.txt"))
    vis = visual_file(tmp_path / "v.txt")
    cmd = [sys.executable, "-m", "mmlightning", "fit", "--config", str(cfg), "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--data.num_workers", "0", "--data.chunk_words", "500",
           f"--model.visual_vectors={vis}", "--model.visual_weight=0.3"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kv = load_vectors(tmp_path / "run" / "vectors.txt")
    v = np.stack([load_vectors(vis)["Pic0"]] + [load_vectors(vis)[w] for w in PIC[1:]])
    assert rsa(np.stack([kv[w] for w in PIC]), PIC, v) > 0.4
    assert torch.load(tmp_path / "run" / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]["vis_map"].shape == (16, 20)


def test_a_negative_map_penalty_is_one_line_naming_the_argument():
    from mmlightning.errors import UserError
    from mmlightning.text.train import SkipgramConfig

    with pytest.raises(UserError, match="^visual_map_l2: must be >= 0, got -1"):
        VisualObjective(torch.ones(2, 3), torch.tensor([0, 1]), 4, "B", map_l2=-1)
    with pytest.raises(UserError, match="^skipgram.visual_map_l2: must be >= 0"):
        SkipgramConfig(visual_vectors="v.txt", visual_map_l2=-0.5)
