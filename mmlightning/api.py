"""The public Python API: the few calls a researcher needs, re-exported by `mmlightning/__init__.py`.

    import mmlightning as mm
    text = mm.load_vectors("my_vectors.txt")                      # word2vec text/binary, or .npy + vocab
    visual = mm.extract_visual("my_photos/", "out/visual")        # my_photos/<word>/*.jpg -> cnn-mean, cnn-max
    grounded = mm.fuse(text, visual["cnn-mean"], alpha=0.5)       # Eq. 1 of Kiela & Bottou (2014)
    for row in mm.evaluate(grounded, ["men", "ws353"]):           # plain records, one per benchmark
        print(row["benchmark"], row["rho"], row["pairs_used"], row["pairs_total"])
    mm.save_vectors(grounded, "out/grounded.txt")

Each call is a thin, stable front for a library module (named in its docstring); the CLI commands run
the same code. Long jobs (`train_skipgram`, `write_shards`, `extract_visual`) write into a folder and
resume or reuse it when called again with the same settings.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors, load_vectors


def save_vectors(kv: KeyedVectors, path: str | os.PathLike, binary: bool = False) -> Path:
    """Write `kv` in word2vec text (or binary) format, atomically; gensim's `load_word2vec_format` reads it.

        mm.save_vectors(mm.as_keyed_vectors({"cat": [1.0, 0.0]}), "out/v.txt")
    """
    as_keyed_vectors(kv).save_word2vec(path, binary=binary)
    return Path(path)


def as_keyed_vectors(vectors: Any) -> KeyedVectors:
    """Our `KeyedVectors` from ours, a gensim `KeyedVectors`, or a dict word -> 1-D array (all one length).

        kv = mm.as_keyed_vectors({"cat": np.ones(3), "dog": np.zeros(3)})
    """
    if isinstance(vectors, KeyedVectors):
        return vectors
    if hasattr(vectors, "index_to_key") and hasattr(vectors, "vectors"):  # gensim 4's KeyedVectors
        return KeyedVectors(list(vectors.index_to_key), np.asarray(vectors.vectors))
    if isinstance(vectors, Mapping):
        if not vectors:
            raise UserError("no vectors: the dict is empty")
        rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors.values()]
        if len({r.shape[0] for r in rows}) != 1:
            raise UserError("vectors of different lengths in the dict; every word needs a vector of one size")
        return KeyedVectors([str(k) for k in vectors], np.stack(rows))
    raise UserError(f"cannot read vectors from a {type(vectors).__name__}: give KeyedVectors, gensim "
                    f"KeyedVectors or a dict word -> array")


def fuse(linguistic: Any, visual: Any, alpha: float = 0.5, words: Iterable[str] | None = None,
         centring: bool = True) -> KeyedVectors:
    """Eq. 1: alpha * L2(centre(text)) || (1 - alpha) * L2(centre(visual)) for every word with a text vector.

    A word without a visual vector gets a zero visual part (the paper's rule). `words` (default: every
    linguistic word) are also the words whose mean is subtracted when centring.
    (`mmlightning.evaluation.fusion.fuse_keyed`)

        grounded = mm.fuse(text, visual, alpha=0.3)
    """
    from mmlightning.evaluation.fusion import fuse_keyed

    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha}")
    return fuse_keyed(as_keyed_vectors(linguistic), as_keyed_vectors(visual), words, alpha, centring)


EVALUATE_FIELDS = ("task", "benchmark", "score", "ci95", "used", "total", "oov_ratio", "rho", "pairs_used",
                   "pairs_total", "purity", "words_used", "words_total", "categories", "oov_words")


def evaluate(vectors: Any, benchmarks: Sequence[str] | str = ("ws353", "men"), oov: str = "skip",
             n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Score vectors on relatedness and categorisation sets, as plain records (one per set).

    Every record has: task ("similarity" | "categorisation"), benchmark, score (rho or purity), ci95
    (95% bootstrap [low, high], None when undefined), used / total (pairs or words), oov_ratio (share
    of pairs or words with a word missing), and the task's own fields: rho, pairs_used, pairs_total
    (similarity) or purity, words_used, words_total, categories, oov_words (categorisation); the other
    task's fields are None. Sets: shipped names ("men", "simverb3500", "ap", "battig", ...), "all"
    (every shipped set), or files (`word1 word2 score` lines, or a CSV with columns category, word).
    Relatedness: `mmlightning.evaluation.relatedness`; categorisation (Ward clusters of the in-vocabulary
    words, k = gold categories, purity): `mmlightning.evaluation.categorisation`. `oov` applies to pairs.

        rows = mm.evaluate({"cat": [1, 0], "dog": [1, 1]}, ["men", "ap"], n_boot=0)
    """
    from mmlightning.datasets import CategorySet
    from mmlightning.evaluation.categorisation import score_categories
    from mmlightning.evaluation.relatedness import score
    from mmlightning.evaluation.systems import resolve_sets

    kv = as_keyed_vectors(vectors)
    rows = []
    for bench in resolve_sets(benchmarks):
        rec = dict.fromkeys(("rho", "pairs_used", "pairs_total", "purity", "words_used", "words_total",
                             "categories", "oov_words"))
        if isinstance(bench, CategorySet):
            c = score_categories(kv, bench, n_boot=n_boot, seed=seed)
            rec.update(c.to_dict(), task="categorisation", score=c.purity, used=c.words_used, total=c.words_total)
        else:
            s = score(kv, bench, oov=oov, n_boot=n_boot, seed=seed)
            rec.update(task="similarity", score=s.rho, rho=s.rho, ci95=list(s.ci95) if s.ci95 else None,
                       pairs_used=s.pairs_used, pairs_total=s.pairs_total, used=s.pairs_used, total=s.pairs_total)
        rec.update(benchmark=bench.name, oov_ratio=1.0 - rec["used"] / rec["total"] if rec["total"] else 0.0)
        rows.append({k: rec[k] for k in EVALUATE_FIELDS})
    return rows


def train_skipgram(corpus: str | Sequence[str], output_dir: str | os.PathLike = "checkpoints/skipgram",
                   seed: int = 1, cache_dir: str | os.PathLike | None = None, **settings: Any) -> KeyedVectors:
    """Train skip-gram with negative sampling on text files (or "gcide") and return its vectors.

    `settings` are `mmlightning.text.train.SkipgramConfig`'s (epochs, dim, window, negative, sample,
    min_count, lr, pairs, num_workers, ...); the corpus cache goes to `cache_dir` (default
    `<output_dir>/corpus_cache`). The same settings in the same folder reuse the finished run.

        text = mm.train_skipgram(["corpus.txt"], "out/sg", epochs=5, dim=100)
    """
    from mmlightning.text.train import SkipgramConfig
    from mmlightning.text.train import train_skipgram as _train

    cfg = SkipgramConfig(**settings)
    cache = Path(output_dir) / "corpus_cache" if cache_dir is None else cache_dir
    return load_vectors(_train(cfg, output_dir, corpus=corpus, seed=seed, cache_dir=cache))


def write_shards(source: str, output_dir: str | os.PathLike, root: str | os.PathLike | None = None,
                 words: str | None = None, n_per_word: int = 20, **options: Any) -> Path:
    """Select up to `n_per_word` images per word from a source and write WebDataset shards; the manifest's path.

    `source`: folder (`root/<word>/<images>`), tuxpaint, openclipart, imagenet or esp. `words`: a word-list
    file or a benchmark name (default: the words of MEN and WS353). (`mmlightning.images.write_shards.shard`)

        manifest = mm.write_shards("folder", "out/shards", root="my_photos/", words="words.txt")
    """
    from mmlightning.images.write_shards import shard

    return shard(source=source, output_dir=str(output_dir), root=None if root is None else str(root),
                 words=words, n_per_word=n_per_word, **options)


def folder_words(root: str | os.PathLike) -> list[str]:
    """The word of every `<root>/<word>/` sub-folder (spaces in a name become '_')."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (expected <word>/<images> inside)")
    return sorted(p.name.replace(" ", "_") for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def extract_visual(images: str | os.PathLike, output_dir: str | os.PathLike, backbone: str = "efficientnet_lite0",
                   n_per_word: int = 20, words: str | None = None, **extract_options: Any) -> dict[str, KeyedVectors]:
    """Per-word visual vectors {"cnn-mean": kv, "cnn-max": kv} from an image folder or WebDataset shards.

    `images`: a folder of `<word>/<images>` (sharded first into `<output_dir>/shards`, every sub-folder's
    word unless `words` names a list), or shards (a folder with manifest.json, a .tar, a brace spec, a URL).
    Features come from a frozen CNN (`backbone`); `extract_options` are those of
    `mmlightning.features.extract.run_extraction` (batch_size, devices, save_features, ...).

        visual = mm.extract_visual("my_photos/", "out/visual")["cnn-mean"]
    """
    from mmlightning.atomic import write_text
    from mmlightning.features.extract import run_extraction

    output_dir = Path(output_dir)
    shards: Any = str(images)
    path = Path(images)
    if path.is_dir() and not (path / "manifest.json").is_file() and not any(path.glob("*.tar")):
        if words is None:
            words = str(output_dir / "words.txt")
            write_text(words, "".join(w + "\n" for w in folder_words(path)))
        shards = str(write_shards("folder", output_dir / "shards", root=path, words=words,
                                  n_per_word=n_per_word).parent)
    out = run_extraction(shards, output_dir / "features", backbone=backbone, **extract_options)
    return {"cnn-mean": load_vectors(out / "mean.txt"), "cnn-max": load_vectors(out / "max.txt")}
