"""Running the CLI in tests, and the tiny inputs the bad-input tests (issue 11) feed it.

    from cli_helpers import run, assert_user_error, evaluate_args
    code, out, err = run(evaluate_args(ling, bench, tmp_path), capsys)   # mmlightning.cli.main in-process
    assert_user_error(code, err, "evaluate", str(ling), "no word in common")

`run` is fast (in-process); `run_proc` runs `python -m mmlightning` in a subprocess where the real exit code,
the real stderr or a hang guard matters. The fixtures that go with these (`bench`, `good_vectors`, `logs`,
`backbone`, `world`) are in conftest.py.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mmlightning import cli

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["cat", "dog", "car", "bus", "tree"]
PAIRS = [("cat", "dog", 9.0), ("car", "bus", 8.5), ("cat", "car", 2.0), ("dog", "tree", 3.0), ("bus", "tree", 1.0)]


# ------------------------------------------------------------------------------------------ running the CLI
def run(argv: list, capsys) -> tuple[int, str, str]:
    """`mmlightning.cli.main(argv)` in-process -> (exit code, stdout, stderr); a parser's SystemExit counts."""
    cli.setup_logging()
    for h in logging.getLogger("mmlightning").handlers:  # the CLI's handler writes to this test's stderr
        if getattr(h, "_mmlightning", False):
            h.stream = sys.stderr  # (setStream would flush the previous test's closed stream)
    argv0 = sys.argv
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        sys.argv = argv0
    out = capsys.readouterr()
    return code, out.out, out.err


def proc_env() -> dict:
    """os.environ with the repository and tests/ on PYTHONPATH (a config may name a test module's callback)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def run_proc(argv: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m mmlightning argv` in a subprocess; a hang becomes a failure after `timeout` seconds."""
    try:
        return subprocess.run([sys.executable, "-m", "mmlightning", *map(str, argv)], cwd=cwd, env=proc_env(),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mmlightning {' '.join(map(str, argv))}` still running after {timeout} s (a hang)")


def assert_user_error(code: int, err: str, cmd: str, *needles: str) -> str:
    """Exit 2, exactly one `mmlightning <cmd>: error:` line holding every needle, and no traceback."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(f"mmlightning {cmd}: error:")]
    assert len(lines) == 1, err[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def assert_parser_error(code: int, err: str, *needles: str) -> None:
    """A jsonargparse refusal: exit 2, `error:` naming the problem, no traceback."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and "error:" in err, err[-3000:]
    for n in needles:
        assert n in err, err[-3000:]


class Hang(BaseException):
    """Not an Exception: no handler on the way swallows it."""


class HangGuard:
    """SIGALRM after `seconds`: an in-process run that loops forever fails instead of hanging the suite."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def boom(signum, frame):
            raise Hang(f"still running after {self.seconds} s (a hang)")
        self.old = signal.signal(signal.SIGALRM, boom)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


# ------------------------------------------------------------------------------------------ vectors and text
def vectors_text(rows: list[tuple[bytes, list[float]]], header: bytes | None = None) -> bytes:
    d = len(rows[0][1])
    head = header if header is not None else f"{len(rows)} {d}\n".encode()
    return head + b"".join(w + b" " + " ".join(f"{x:.4f}" for x in v).encode() + b"\n" for w, v in rows)


def random_rows(words: list[str], d: int = 4, seed: int = 0) -> list[tuple[bytes, list[float]]]:
    rng = np.random.default_rng(seed)
    return [(w.encode(), rng.normal(size=d).round(4).tolist()) for w in words]


def binary_vectors(words: list[bytes], d: int = 4, count: int | None = None, seed: int = 0) -> bytes:
    """word2vec binary: a `<count> <d>` header, then `word <d little-endian float32>\\n` rows."""
    rng = np.random.default_rng(seed)
    body = b"".join(w + b" " + rng.normal(size=d).astype("<f4").tobytes() + b"\n" for w in words)
    return f"{len(words) if count is None else count} {d}\n".encode() + body


def evaluate_args(ling: Path, bench: Path, tmp_path: Path, *extra) -> list:
    return ["evaluate", "--linguistic", ling, "--benchmarks", f"[{bench}]", "--n_boot", "0",
            "--out", tmp_path / "rep", *extra]


def corpus_file(path: Path, n_words: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS + ["the", "a", "of"], n_words)
    path.write_text("\n".join(" ".join(words[i:i + 10]) for i in range(0, n_words, 10)) + "\n")
    return path


def skipgram_config(tmp_path: Path, corpus: Path, out: Path) -> Path:
    """configs/skipgram.yaml made tiny: 1 epoch, 8 dims, min_count 1, no workers, no compile, no callback."""
    cfg = yaml.safe_load((ROOT / "configs" / "skipgram.yaml").read_text())
    cfg["model"]["init_args"].update(dim=8, compile=False, output_dir=str(out))
    cfg["data"]["init_args"].update(corpus=[str(corpus)], cache_dir=str(tmp_path / "cache"), min_count=1,
                                    num_workers=0, chunk_words=100)
    cfg["trainer"].update(max_epochs=1, default_root_dir=str(out), enable_progress_bar=False, logger=False)
    ckpt = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
    ckpt["init_args"]["dirpath"] = str(out / "ckpt")  # the shipped checkpoint settings, in this run's folder
    cfg["trainer"]["callbacks"] = [ckpt]
    path = tmp_path / f"sg-{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------------------------------ shards and predict
def png(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A WebDataset tar: members `<key>.<ext>` in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    return path


def small_shards(folder: Path, n_shards: int = 2, per_shard: int = 3, seed: int = 0, prefix: str = "t") -> Path:
    """`n_shards` shards of `per_shard` small random images, image i of shard s labelled WORDS[(s + i) % 5].

    (Its own tiny writer, not conftest's `make_shards`: these tests need exact keys and tar layouts.)"""
    rng = np.random.default_rng(seed)
    listed = []
    for s in range(n_shards):
        samples = []
        for i in range(per_shard):
            meta = {"words": [WORDS[(s + i) % 5]], "source": "synth", "path": f"/src/{s}/{i}.png", "label": None}
            samples.append((f"s{seed}_{s}_{i}", {"png": png(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)),
                                                 "json": json.dumps(meta).encode()}))
        write_tar(folder / f"{prefix}-{s:06d}.tar", samples)
        listed.append({"name": f"{prefix}-{s:06d}.tar", "samples": per_shard})
    (folder / "manifest.json").write_text(json.dumps({"format": "mmlightning-shards/1", "source": "synth",
                                                      "n_per_word": None, "seed": seed, "shards": listed}))
    return folder


def predict_config(tmp_path: Path, shards, out: Path, backbone: dict, name: str = "extract.yaml",
                   callbacks: list | None = None, **data) -> Path:
    """A `predict` config: FeatureExtractor(**backbone) over `shards`, AggregateWriter into `out`, on CPU."""
    cfg = {"model": {"class_path": "mmlightning.features.extract.FeatureExtractor", "init_args": backbone},
           "data": {"class_path": "mmlightning.images.read_shards.ShardDataModule",
                    "init_args": {"shards": shards, "batch_size": 4, "num_workers": 0, "preprocess": "imagenet",
                                  "skip_done_in": str(out), **data}},
           "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "default_root_dir": str(out),
                       "enable_progress_bar": False, "enable_model_summary": False,
                       "callbacks": [{"class_path": "mmlightning.features.extract.AggregateWriter",
                                      "init_args": {"output_dir": str(out), "save_every_s": 0}},
                                     *(callbacks or [])]},
           "return_predictions": False}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def in_thread(fn):
    """Start fn() in a daemon thread: (thread, box), box["value"] or box["error"] once it has returned."""
    import threading

    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box
