"""Shared fixtures: tiny WebDataset shards in the docs/FORMATS.md format and a tiny test backbone.

    def test_x(make_shards, tiny_backbone, tmp_path):
        shards = make_shards(tmp_path / "s", n_shards=2, per_shard=3, bad=True)
        run_extraction(shards, tmp_path / "out", **tiny_backbone)
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

WORDS = ["cat", "dog", "car", "tree", "cup"]


def png_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def jpg_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="JPEG", quality=90)
    return b.getvalue()


def write_synthetic_shards(out: Path, n_shards: int = 4, per_shard: int = 7, seed: int = 0, bad: bool = False,
                           labels: list[str] | None = None, fmt: str = "png") -> Path:
    """`n_shards` shards of `per_shard` random images; image i of shard s counts for 1 or 2 words.

    With `bad`, shard 0 also holds an empty image, a non-image, a sample without image, a bad json,
    a sample without words, and the last shard is truncated half-way (its tail is lost).
    With `labels`, image i gets label labels[i % len(labels)] and a mean colour that depends on it.
    With fmt="jpg" the images are JPEGs (smooth gradients plus noise, like photos) instead of PNGs.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    listed = []
    for s in range(n_shards):
        name = f"synth-{s:06d}.tar"
        n = 0
        with wds.TarWriter(str(out / name)) as w:
            for i in range(per_shard):
                h, wd = rng.integers(40, 100, 2)
                a = rng.integers(0, 255, (h, wd, 3), dtype=np.uint8)
                label = labels[i % len(labels)] if labels else None
                if labels:
                    a[..., i % len(labels) % 3] = 255
                words = [WORDS[(s + i) % 5]] + ([WORDS[(i * 3 + 1) % 5]] if i % 3 == 0 else [])
                meta = {"words": words, "source": "synth", "path": f"/src/{s}/{i}.png", "label": label}
                if fmt == "jpg":
                    yy, xx = np.mgrid[0:h, 0:wd]
                    a = np.clip(np.stack([xx * 255 // wd, yy * 255 // h, (xx + yy) * 127 // (h + wd)], -1)
                                + rng.integers(0, 40, (h, wd, 3)), 0, 255).astype(np.uint8)
                    image = {"jpg": jpg_bytes(a)}
                else:
                    image = {"png": png_bytes(a)}
                w.write({"__key__": f"s{s}_{i:03d}", **image, "json": json.dumps(meta).encode()})
                n += 1
            if bad and s == 0:
                meta = json.dumps({"words": ["cat"], "source": "synth", "path": "/bad", "label": None}).encode()
                w.write({"__key__": "bad_empty", "png": b"", "json": meta})
                w.write({"__key__": "bad_notimage", "jpg": b"this is not a jpeg at all", "json": meta})
                w.write({"__key__": "bad_noimage", "txt": b"only text", "json": meta})
                w.write({"__key__": "bad_json", "png": png_bytes(a), "json": b"{not json"})
                w.write({"__key__": "bad_nowords", "png": png_bytes(a), "json": b'{"words": []}'})
                n += 5
        listed.append({"name": name, "samples": n})
    if bad:
        last = out / listed[-1]["name"]
        data = last.read_bytes()
        last.write_bytes(data[: len(data) // 2])
    (out / "manifest.json").write_text(json.dumps({"format": "mmlightning-shards/1", "source": "synth",
                                                   "n_per_word": None, "seed": seed, "shards": listed}))
    return out


def write_tiny_alexnet(path: Path, seed: int = 0) -> Path:
    """A small random AlexNet1512 state dict (width 0.1, fc 32): a fast deterministic test backbone."""
    from mmlightning.features.alexnet1512 import AlexNet1512

    torch.manual_seed(seed)
    torch.save(AlexNet1512(num_classes=10, fc_dim=32, width=0.1).state_dict(), path)
    return path


TINY_KW = {"num_classes": 10, "fc_dim": 32, "width": 0.1}


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory):
    """The package's caches in this session's temp folder, never ~/.cache/mmlightning: the native kernel's builds
    ($MMLIGHTNING_NATIVE_DIR, built at most once per session there) and the NLTK layout of Debian's WordNet
    ($MMLIGHTNING_CACHE). Set in os.environ, so the CLI subprocesses of the tests use them too; a test that
    sets one of them itself (monkeypatch.setenv) gets this session's folder back afterwards."""
    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMLIGHTNING_NATIVE_DIR", str(root / "native"))
        mp.setenv("MMLIGHTNING_CACHE", str(root / "mmlightning"))
        yield root


@pytest.fixture(autouse=True)
def restore_argv():
    """sys.argv as pytest set it after every test: `cli.main` hands LightningCLI its arguments through sys.argv
    and leaves them there."""
    import sys

    argv = sys.argv
    yield
    sys.argv = argv


@pytest.fixture(scope="session")
def make_shards():
    """`write_synthetic_shards(out, n_shards, per_shard, seed, bad, labels)` -> the shard folder."""
    return write_synthetic_shards


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> dict:
    """FeatureExtractor / run_extraction kwargs of a tiny random AlexNet1512 (fc7, 32-dim)."""
    ckpt = write_tiny_alexnet(tmp_path_factory.mktemp("tiny") / "tiny.pt")
    return {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(ckpt), **TINY_KW}, "layer": "fc7"}


# ------------------------------------------------------------------ the bad-input tests' inputs (see cli_helpers.py)
@pytest.fixture
def logs():
    """Records the warnings of mmlightning's loggers (the CLI's handler does not propagate to caplog)."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("mmlightning")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def bench(tmp_path) -> Path:
    """A 5-pair relatedness benchmark over cli_helpers.WORDS."""
    from cli_helpers import PAIRS

    path = tmp_path / "bench.txt"
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return path


@pytest.fixture
def good_vectors(tmp_path) -> Path:
    """4-dim random text vectors of cli_helpers.WORDS."""
    from cli_helpers import WORDS, random_rows, vectors_text

    path = tmp_path / "ling.txt"
    path.write_bytes(vectors_text(random_rows(WORDS)))
    return path


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> dict:
    """A tiny random AlexNet1512 (fast on CPU, fc 16) as FeatureExtractor init_args."""
    from mmlightning.features.alexnet1512 import AlexNet1512

    path = tmp_path_factory.mktemp("backbone") / "tiny.pt"
    torch.manual_seed(0)
    kw = {"num_classes": 10, "fc_dim": 16, "width": 0.1}
    torch.save(AlexNet1512(**kw).state_dict(), path)
    return {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(path), **kw}, "layer": "fc7"}


@pytest.fixture
def world(tmp_path) -> Path:
    """A corpus, a benchmark and one small image per word (the `folder` source layout)."""
    from cli_helpers import PAIRS, WORDS, corpus_file

    w = tmp_path / "world"
    rng = np.random.default_rng(0)
    for word in WORDS:
        (w / "images" / word).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(w / "images" / word / "0.png")
    corpus_file(w / "corpus.txt", 300)
    (w / "bench.txt").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return w
