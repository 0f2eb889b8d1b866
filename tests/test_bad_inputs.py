"""Bad input and faults through the CLI (issue 11): exit 2 with one error line, a counted skip, never a hang,
a traceback or a silent wrong number. One test per item of the issue (`test_itemNN_...`), then the inputs
that already behave. Most run `mmlightning.cli.main` in-process (fast); a few run `python -m mmlightning`
in a subprocess where the real exit code, the real stderr or a hang guard matters.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mmlightning import cli
from mmlightning.vectors import KeyedVectors, load_vectors

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["cat", "dog", "car", "bus", "tree"]
PAIRS = [("cat", "dog", 9.0), ("car", "bus", 8.5), ("cat", "car", 2.0), ("dog", "tree", 3.0), ("bus", "tree", 1.0)]


# ------------------------------------------------------------------------------------------ running the CLI
def run(argv: list[str], capsys) -> tuple[int, str, str]:
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


def run_proc(argv: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """`python -m mmlightning argv` in a subprocess; a hang becomes a failure after `timeout` seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    try:
        return subprocess.run([sys.executable, "-m", "mmlightning", *map(str, argv)], cwd=cwd, env=env,
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


@pytest.fixture
def logs():
    """Records the warnings of mmlightning's loggers (the CLI's handler does not propagate to caplog)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("mmlightning")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# ------------------------------------------------------------------------------------------ tiny fixtures
@pytest.fixture
def bench(tmp_path) -> Path:
    path = tmp_path / "bench.txt"
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return path


def vectors_text(rows: list[tuple[bytes, list[float]]], header: bytes | None = None) -> bytes:
    d = len(rows[0][1])
    head = header if header is not None else f"{len(rows)} {d}\n".encode()
    return head + b"".join(w + b" " + " ".join(f"{x:.4f}" for x in v).encode() + b"\n" for w, v in rows)


def random_rows(words: list[str], d: int = 4, seed: int = 0) -> list[tuple[bytes, list[float]]]:
    rng = np.random.default_rng(seed)
    return [(w.encode(), rng.normal(size=d).round(4).tolist()) for w in words]


@pytest.fixture
def good_vectors(tmp_path) -> Path:
    path = tmp_path / "ling.txt"
    path.write_bytes(vectors_text(random_rows(WORDS)))
    return path


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


# --- shards (own tiny writer: tests/synthetic_shards.py may move) ---
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


def make_shards(folder: Path, n_shards: int = 2, per_shard: int = 3, seed: int = 0, prefix: str = "t") -> Path:
    """`n_shards` shards of `per_shard` small random images, image i of shard s labelled WORDS[(s + i) % 5]."""
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


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> dict:
    """A tiny random AlexNet1512 (fast on CPU) as FeatureExtractor init_args."""
    from mmlightning.features.alexnet1512 import AlexNet1512

    path = tmp_path_factory.mktemp("backbone") / "tiny.pt"
    torch.manual_seed(0)
    kw = {"num_classes": 10, "fc_dim": 16, "width": 0.1}
    torch.save(AlexNet1512(**kw).state_dict(), path)
    return {"backbone": "alexnet1512", "backbone_kwargs": {"checkpoint": str(path), **kw}, "layer": "fc7"}


def predict_config(tmp_path: Path, shards, out: Path, backbone: dict, name: str = "extract.yaml",
                   callbacks: list | None = None, **data) -> Path:
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


def aggregates_meta(out: Path) -> dict:
    from mmlightning.features.aggregates import load_aggregates

    return load_aggregates(out / "aggregates.pt")[1]


# ========================================================================================== issue 11, item by item
# 1. predict with a batch size of 0 (or negative), negative workers or save interval: refused, never a hang.
def test_item01_predict_batch_size_zero_is_an_error_not_a_hang(tmp_path, backbone):
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out", backbone, batch_size=0)
    p = run_proc(["predict", "--config", cfg], tmp_path, timeout=60)  # the subprocess is SIGKILLed on timeout
    assert_user_error(p.returncode, p.stderr, "predict", "batch_size")


class HangGuard:
    """SIGALRM after `seconds`: an in-process run that loops forever fails instead of hanging the suite."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def boom(signum, frame):
            raise TimeoutError(f"still running after {self.seconds} s (a hang)")
        self.old = signal.signal(signal.SIGALRM, boom)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


@pytest.mark.parametrize("where, key, value", [("data", "batch_size", -2), ("data", "num_workers", -1),
                                               ("writer", "save_every_s", -1.0)])
def test_item01_predict_negative_settings_are_refused_at_construction(tmp_path, backbone, capsys, where, key, value):
    out = tmp_path / "out"
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), out, backbone,
                         **({key: value} if where == "data" else {}))
    if where == "writer":
        c = yaml.safe_load(cfg.read_text())
        c["trainer"]["callbacks"][0]["init_args"][key] = value
        cfg.write_text(yaml.safe_dump(c))
    with HangGuard(30):
        code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", key)
    assert not (out / "aggregates.pt").exists()


# 2. reproduce --checkpoints <folder elsewhere> reuses that folder's outputs, not ./checkpoints of the cwd.
def reproduce_config(tmp_path: Path, world: Path, backbone: dict, checkpoints: str, reports: str) -> Path:
    cfg = {"checkpoints": checkpoints, "reports": reports, "corpus": [str(world / "corpus.txt")],
           "skipgram": {"epochs": 1, "dim": 8, "min_count": 1, "compile": False, "progress_bar": False},
           "sources": {"pics": {"source": "folder", "root": str(world / "images"), "n_per_word": 1}},
           "benchmarks": [str(world / "bench.txt")], "bovw": False, "n_boot": 0, "batch_size": 4,
           "accelerator": "cpu", **backbone}
    path = tmp_path / f"reproduce-{len(list(tmp_path.glob('reproduce-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def world(tmp_path) -> Path:
    """A corpus, a benchmark and one small image per word (the `folder` source layout)."""
    w = tmp_path / "world"
    rng = np.random.default_rng(0)
    for word in WORDS:
        (w / "images" / word).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(w / "images" / word / "0.png")
    corpus_file(w / "corpus.txt", 300)
    (w / "bench.txt").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return w


def test_item02_reproduce_from_another_folder_reuses_the_given_checkpoints(tmp_path, world, backbone, capsys,
                                                                          monkeypatch):
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    monkeypatch.chdir(first)
    code, out, err = run(["reproduce", "--config", reproduce_config(tmp_path, world, backbone, "checkpoints", "rep")],
                         capsys)
    assert code == 0, err[-3000:]
    ref = json.loads((first / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    # another folder whose ./checkpoints holds a skip-gram stage of the same key, with other vectors
    sg = next((first / "checkpoints").glob("skipgram-*"))
    fake = other / "checkpoints" / sg.name
    fake.mkdir(parents=True)
    (fake / "vectors.txt").write_bytes(vectors_text(random_rows(["cat", "dog"], d=8, seed=5)))
    monkeypatch.chdir(other)
    code, out, err = run(["reproduce", "--config",
                          reproduce_config(tmp_path, world, backbone, str(first / "checkpoints"), "rep")], capsys)
    assert code == 0, err[-3000:]
    got = json.loads((other / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert (got["pairs_used"], got["rho"]) == (ref["pairs_used"], ref["rho"])


# 3. predict resume notices shards that changed under the same names.
def test_item03_predict_resume_notices_reshard_under_the_same_names(tmp_path, backbone, capsys):
    shards, out = tmp_path / "sh", tmp_path / "out"
    make_shards(shards, n_shards=2, per_shard=3, seed=0)
    cfg = predict_config(tmp_path, str(shards), out, backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert code == 0 and aggregates_meta(out)["images"] == 6, err[-2000:]
    for f in shards.glob("*.tar"):  # like `shard --overwrite true` with other settings: same names
        f.unlink()
    make_shards(shards, n_shards=2, per_shard=5, seed=1)
    code, _, err = run(["predict", "--config", cfg], capsys)
    if code == 2:  # refusing is fine, with one line
        assert_user_error(code, err, "predict", str(out))
    else:          # so is recomputing: the 10 new images, not the 6 old ones
        assert code == 0 and aggregates_meta(out)["images"] == 10, err[-2000:]


# 4. a word2vec *text* file with a non-UTF-8 byte is text, not binary; a file of 0 words is an error.
def test_item04_text_vectors_with_a_latin1_word_are_read_as_text(tmp_path, bench, capsys, logs):
    ling = tmp_path / "ling.txt"
    rows = [(b"caf\xe9", [0.1, 0.2, 0.3, 0.4])] + random_rows(WORDS)  # latin-1 'café' on the first row
    ling.write_bytes(vectors_text(rows))
    code, out, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert code == 0, err
    cell = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert cell["pairs_used"] == len(PAIRS) and cell["rho"] is not None
    assert len(load_vectors(ling)) == 6
    assert any("not valid UTF-8" in r.getMessage() for r in logs)


@pytest.mark.parametrize("content, needle", [(b"0 4\n", "holds no word vectors"),
                                             (b"0 4\n\n\n", "holds no word vectors"),
                                             (b"3 4\n", "header says 3 words but the file has 0")])
def test_item04_a_vectors_file_of_zero_words_is_an_error(tmp_path, bench, capsys, content, needle):
    ling = tmp_path / "empty.txt"
    ling.write_bytes(content)
    code, out, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", str(ling), needle)  # not "no word in common": the file is empty
    assert not (tmp_path / "rep" / "evaluation.json").exists()


# 5. after an interrupted fit and a plain rerun, ckpt/last.ckpt is the newest checkpoint (no last-v1.ckpt).
class CrashAtEpoch(__import__("pytorch_lightning").Callback):
    """Dies at the start of epoch `epoch` (like Ctrl-C after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("interrupted by the test")


def test_item05_last_ckpt_is_the_newest_after_an_interrupted_fit_and_a_rerun(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), run_dir)
    args = ["fit", "--config", cfg, "--trainer.max_epochs", "2"]
    crash = json.dumps({"class_path": f"{__name__}.CrashAtEpoch", "init_args": {"epoch": 1}})
    with pytest.raises(RuntimeError, match="interrupted by the test"):
        cli.main([*map(str, args), "--trainer.callbacks+", crash])
    capsys.readouterr()
    code, _, err = run(args, capsys)
    assert code == 0, err[-3000:]
    ckpts = {p.name: torch.load(p, map_location="cpu", weights_only=False)["global_step"]
             for p in (run_dir / "ckpt").glob("*.ckpt")}
    assert not [n for n in ckpts if n.startswith("last-v")], ckpts
    assert ckpts["last.ckpt"] == max(ckpts.values())


# 6. fit --ckpt_path <run A>/ckpt/last.ckpt with model.output_dir <run B> writes run B's vectors only.
def test_item06_resumed_fit_writes_into_the_configured_output_dir(tmp_path, capsys):
    corpus = corpus_file(tmp_path / "c.txt")
    a, b = tmp_path / "a", tmp_path / "b"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, a)], capsys)
    assert code == 0, err[-3000:]
    before = (a / "vectors.txt").read_bytes()
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, b), "--trainer.max_epochs", "2",
                        "--ckpt_path", a / "ckpt" / "last.ckpt"], capsys)
    assert code == 0, err[-3000:]
    assert (a / "vectors.txt").read_bytes() == before
    assert len(load_vectors(b / "vectors.txt")) == len(load_vectors(a / "vectors.txt"))


# 7. a binary header that under-counts words is refused; duplicate and undecodable words are counted and warned.
def binary_vectors(words: list[bytes], d: int = 4, count: int | None = None, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    body = b"".join(w + b" " + rng.normal(size=d).astype("<f4").tobytes() + b"\n" for w in words)
    return f"{len(words) if count is None else count} {d}\n".encode() + body


def test_item07_binary_header_that_undercounts_words_is_refused(tmp_path, bench, capsys):
    ling = tmp_path / "ling.bin"
    ling.write_bytes(binary_vectors([w.encode() for w in WORDS], count=2))
    code, _, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", str(ling), "2 words the header announces")


def test_item07_binary_with_a_latin1_byte_in_the_first_row_is_still_binary(tmp_path, bench, capsys):
    ling = tmp_path / "ling.bin"
    ling.write_bytes(binary_vectors([b"caf\xe9"] + [w.encode() for w in WORDS]))
    code, _, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert code == 0, err
    cell = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert cell["pairs_used"] == len(PAIRS)


@pytest.mark.parametrize("binary", [False, True])
def test_item07_duplicate_and_undecodable_words_are_counted_and_warned(tmp_path, logs, binary):
    words = [b"cat", b"dog", b"cat", b"\xff\xfe", b"dog", b"car"]
    path = tmp_path / "v.bin"
    if binary:
        path.write_bytes(binary_vectors(words))
    else:
        path.write_bytes(vectors_text([(w, [float(i), 1.0, 2.0, 3.0]) for i, w in enumerate(words)]))
    kv = load_vectors(path)
    assert kv.index_to_key == ["cat", "dog", "\ufffd\ufffd", "car"]           # first copy kept, as gensim
    if not binary:
        assert kv["cat"][0] == 0.0 and kv["dog"][0] == 1.0
    messages = [r.getMessage() for r in logs]
    assert any("2 duplicate word(s)" in m and "'cat'" in m for m in messages), messages
    assert any("1 word(s) are not valid UTF-8" in m for m in messages), messages


# 8. a binary file given as corpus is refused (replacement-character ratio above a threshold).
def test_item08_binary_garbage_corpus_is_refused(tmp_path, capsys):
    corpus = tmp_path / "garbage.bin"
    corpus.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    run_dir = tmp_path / "run"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, run_dir)], capsys)
    assert_user_error(code, err, "fit", str(corpus))
    assert not (run_dir / "vectors.txt").exists()


# 9. the same tar listed twice counts once.
def test_item09_a_shard_listed_twice_counts_once(tmp_path, backbone, capsys):
    shards, out = make_shards(tmp_path / "sh", n_shards=1, per_shard=3), tmp_path / "out"
    tar = str(shards / "t-000000.tar")
    code, _, err = run(["predict", "--config", predict_config(tmp_path, [tar, tar], out, backbone)], capsys)
    assert code == 0, err[-2000:]
    assert aggregates_meta(out)["images"] == 3


# 10. an output folder under a regular file, or on a read-only / full disk: one line, exit 2.
def test_item10_evaluate_out_under_a_file(tmp_path, good_vectors, bench, capsys, monkeypatch):
    import mmlightning.evaluation.systems as systems

    def too_late(*a, **k):
        raise AssertionError("the scores were computed before the output folder was checked")
    monkeypatch.setattr(systems, "evaluate_systems", too_late)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker / "rep"], capsys)
    assert_user_error(code, err, "evaluate", str(blocker / "rep"), f"{blocker} is a file")


def test_item10_evaluate_out_is_an_existing_file(tmp_path, good_vectors, bench, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker], capsys)
    assert_user_error(code, err, "evaluate", str(blocker), "not a folder")
    assert blocker.read_text() == "x"


def test_item10_evaluate_out_under_a_file_real_process(tmp_path, good_vectors, bench):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    p = run_proc(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker / "rep"], tmp_path)
    assert_user_error(p.returncode, p.stderr, "evaluate", str(blocker / "rep"))
    assert p.stderr.strip().splitlines()[-1].startswith("mmlightning evaluate: error:")


def test_item10_evaluate_out_on_a_read_only_file_system(tmp_path, good_vectors, bench, capsys, monkeypatch):
    ro = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):  # a read-only mount, as root cannot get one from chmod
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [ro / "rep"], capsys)
    assert_user_error(code, err, "evaluate", str(ro / "rep"), "read-only file system")


def test_item10_disk_full_while_writing_reports(tmp_path, good_vectors, bench, capsys, monkeypatch):
    import mmlightning.evaluation.report as report

    def full(result, out_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "evaluation.json"))
    monkeypatch.setattr(report, "write_reports", full)
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", "evaluation.json", "no space left")


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("a bug"),
                                 FileNotFoundError(errno.ENOENT, "No such file", "/internal/file")])
def test_item10_genuine_bugs_keep_their_traceback(tmp_path, good_vectors, bench, capsys, monkeypatch, exc):
    """Only an OSError about a named path of the user's is turned into one line; anything else is a bug."""
    import mmlightning.evaluation.report as report

    def broken(result, out_dir):
        raise exc
    monkeypatch.setattr(report, "write_reports", broken)
    with pytest.raises(type(exc)):
        cli.main([str(a) for a in evaluate_args(good_vectors, bench, tmp_path)])


def test_item10_shard_output_dir_under_a_file(tmp_path, world, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(["shard", "--source", "folder", "--root", world / "images", "--benchmarks",
                        f"[{world / 'bench.txt'}]", "--output_dir", blocker / "shards"], capsys)
    assert_user_error(code, err, "shard", str(blocker / "shards"), f"{blocker} is a file")


def test_item10_predict_output_under_a_file(tmp_path, backbone, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), blocker / "out", backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", str(blocker))


def test_item10_reproduce_checkpoints_under_a_file(tmp_path, world, backbone, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = reproduce_config(tmp_path, world, backbone, str(blocker / "ck"), str(tmp_path / "rep"))
    code, _, err = run(["reproduce", "--config", cfg], capsys)
    assert_user_error(code, err, "reproduce", str(blocker))


# 11. fit with a bad setting: one line, not a double traceback.
@pytest.mark.parametrize("option, value", [("--data.min_count", "0"), ("--data.window", "0"),
                                           ("--model.dim", "-5")])
def test_item11_fit_bad_settings_are_one_line(tmp_path, capsys, option, value):
    run_dir = tmp_path / "run"
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), run_dir)
    code, _, err = run(["fit", "--config", cfg, option, value], capsys)
    assert_user_error(code, err, "fit", option.split(".")[-1])
    assert not (run_dir / "vectors.txt").exists()


# 12. truncated tar, *.tmp leftovers, one pixel limit, one run per output folder.
def test_item12_truncated_tar_keeps_every_intact_sample(tmp_path, backbone, capsys):
    shards, out = make_shards(tmp_path / "sh", n_shards=1, per_shard=4), tmp_path / "out"
    tar = shards / "t-000000.tar"
    with tarfile.open(tar) as t:
        fourth = [m for m in t.getmembers() if m.name.startswith("s0_0_3.")][0]
    tar.write_bytes(tar.read_bytes()[: fourth.offset_data + 10])  # cut inside the 4th sample
    code, _, err = run(["predict", "--config", predict_config(tmp_path, [str(tar)], out, backbone)], capsys)
    assert code == 0, err[-2000:]
    assert aggregates_meta(out)["images"] == 3


def test_item12_rerun_removes_tmp_leftovers_of_a_killed_run(tmp_path, backbone, capsys):
    shards, out = make_shards(tmp_path / "sh"), tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    leftovers = [out / ".aggregates.pt.k1ll3d.tmp", out / ".mean.txt.k1ll3d.tmp", out / "parts" / ".x.pt.abc.tmp"]
    for f in leftovers:
        f.write_bytes(b"half written")
    code, _, err = run(["predict", "--config", predict_config(tmp_path, str(shards), out, backbone)], capsys)
    assert code == 0, err[-2000:]
    assert (out / "aggregates.pt").is_file() and not list(out.rglob("*.tmp"))


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height pixels, a few KB long (zeros compress well)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    comp, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_item12_predict_refuses_the_pixels_shard_refuses(tmp_path, backbone, capsys):
    from mmlightning.images.sources.imageio import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 100   # just over the limit `shard` applies
    meta = json.dumps({"words": ["cat"], "source": "synth", "path": "/huge.png", "label": None}).encode()
    small = png(np.zeros((20, 20, 3), np.uint8))
    tar = write_tar(tmp_path / "sh" / "t-000000.tar", [("huge", {"png": huge_png(side, side), "json": meta}),
                                                       ("small", {"png": small, "json": meta})])
    out = tmp_path / "out"
    code, _, err = run(["predict", "--config", predict_config(tmp_path, [str(tar)], out, backbone)], capsys)
    assert code == 0, err[-2000:]
    meta = aggregates_meta(out)
    assert meta["images"] == 1 and [s["key"] for s in meta["skipped"]] == ["huge"]


class SlowDown(__import__("pytorch_lightning").Callback):
    """Marks the run as started, then sleeps on every batch: a long run holding its output folder."""

    def __init__(self, started: str, seconds: float = 1.0):
        self.started, self.seconds = started, seconds

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        Path(self.started).touch()
        time.sleep(self.seconds)


def test_item12_second_predict_into_a_busy_folder_is_refused(tmp_path, backbone, capsys):
    shards, out, started = make_shards(tmp_path / "sh", 2, 3), tmp_path / "out", tmp_path / "started"
    slow = {"class_path": "test_bad_inputs.SlowDown", "init_args": {"started": str(started)}}
    cfg_a = predict_config(tmp_path, str(shards), out, backbone, "a.yaml", callbacks=[slow], batch_size=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    a = subprocess.Popen([sys.executable, "-m", "mmlightning", "predict", "--config", str(cfg_a)], cwd=tmp_path,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not started.exists() and a.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the first run did not start"
        cfg_b = predict_config(tmp_path, str(shards), out, backbone, "b.yaml")
        code, _, err = run(["predict", "--config", cfg_b], capsys)
        assert a.poll() is None, "the first run ended before the second was tried"
        line = assert_user_error(code, err, "predict", str(out))
        assert str(a.pid) in line
    finally:
        a.kill()
        a.wait()


# 13. identical runs give byte-identical aggregates.pt.
def test_item13_identical_predict_runs_give_identical_aggregates(tmp_path, backbone, capsys):
    shards = str(make_shards(tmp_path / "sh"))
    digests = []
    for name in ("one", "two"):
        out = tmp_path / name
        code, _, err = run(["predict", "--config", predict_config(tmp_path, shards, out, backbone, f"{name}.yaml")],
                           capsys)
        assert code == 0, err[-2000:]
        digests.append(hashlib.md5((out / "aggregates.pt").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


# ========================================================================================== inputs that already behave
def test_unknown_command(capsys):
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "unknown command 'frobnicate'" in err and "Traceback" not in err


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run(["fit", "--config", tmp_path / "nope.yaml"], capsys)
    assert_user_error(code, err, "fit", "nope.yaml: config file not found")
    assert err.count("\n") == 1  # one line, not jsonargparse's usage


@pytest.mark.parametrize("cmd, flag", [("evaluate", "--config"), ("fit", "-c"), ("reproduce", "--config=")])
def test_malformed_yaml_config_names_the_file_and_line(tmp_path, capsys, cmd, flag):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("alpha: 0.5\nlinguistic: [unclosed\n  alpha: : 0.5\n")
    args = [cmd, f"{flag}{cfg}"] if flag.endswith("=") else [cmd, flag, cfg]
    code, _, err = run(args, capsys)
    assert_user_error(code, err, cmd, f"{cfg}:3: malformed YAML")
    assert err.count("\n") == 1
    d = tmp_path / "dir.yaml"
    d.mkdir()
    code, _, err = run([cmd, "--config", d], capsys)
    assert_user_error(code, err, cmd, "dir.yaml: not a readable YAML config")


def test_unknown_option(good_vectors, bench, tmp_path, capsys):
    code, _, err = run([*evaluate_args(good_vectors, bench, tmp_path), "--alpah", "0.3"], capsys)
    assert_parser_error(code, err, "alpah")
    assert not (tmp_path / "rep").exists()


# --- evaluate: benchmarks, vectors and settings. (name, files {name: bytes}, args, needles)
GOOD = vectors_text(random_rows(WORDS))
EVALUATE_CASES = [
    ("missing_linguistic_option", {}, [], ["--linguistic"]),
    ("missing_vectors_file", {}, ["--linguistic", "{t}/absent.txt"], ["absent.txt", "not found"]),
    ("missing_benchmark_file", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/no.txt]"],
     ["no.txt", "no such benchmark"]),
    ("benchmark_bad_line", {"ling.txt": GOOD, "b.txt": b"cat dog 5\ncat dog\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt:2:", "word1 word2 score"]),
    ("benchmark_score_not_a_number", {"ling.txt": GOOD, "b.txt": b"cat dog high\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt:1:", "not a number"]),
    ("benchmark_not_utf8", {"ling.txt": GOOD, "b.txt": b"caf\xe9 dog 5\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt", "not UTF-8"]),
    ("vectors_bad_row", {"ling.txt": b"2 2\ncat 1 2\ndog 1 x\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:3:", "non-numeric"]),
    ("vectors_wrong_dimension_in_a_row", {"ling.txt": b"2 3\ncat 1 2 3\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:3:", "2 values, header says 3"]),
    ("vectors_header_not_numbers", {"ling.txt": b"cat 1 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:1:", "header"]),
    ("vectors_header_overcounts", {"ling.txt": b"5 2\ncat 1 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["header says 5 words but the file has 2"]),
    ("vectors_nan", {"ling.txt": b"2 2\ncat nan 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"], ["'cat'", "NaN"]),
    ("vectors_binary_truncated", {"ling.bin": binary_vectors([b"cat", b"dog", b"car"])[:-9]},
     ["--linguistic", "{t}/ling.bin"], ["ling.bin", "truncated"]),
    ("vectors_pickle_refused_without_opt_in", {"ling.txt": __import__("pickle").dumps({"cat": [1.0]}, protocol=2)},
     ["--linguistic", "{t}/ling.txt"], ["ling.txt", "pickle", "--unsafe_gensim_pickle"]),
    ("vectors_pickle_not_keyedvectors", {"ling.kv": __import__("pickle").dumps({"cat": [1.0]}, protocol=2)},
     ["--linguistic", "{t}/ling.kv", "--unsafe_gensim_pickle", "true"], ["ling.kv", "not a readable gensim KeyedVectors file"]),
    ("vectors_share_no_word_with_benchmark", {"ling.txt": vectors_text(random_rows(["emu", "yak"]))},
     ["--linguistic", "{t}/ling.txt"], ["ling.txt", "no word in common"]),
    ("bad_alpha", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--alpha", "1.5"], ["alpha 1.5", "[0, 1]"]),
    ("bad_visual_name", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--visual", '{{"tux/": "{t}/ling.txt"}}'],
     ["'tux/'", "<source>/<method>"]),
    ("missing_visual_file", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--visual.tux/cnn-mean", "{t}/v.txt"],
     ["v.txt", "not found"]),
    ("visual_dimensions_disagree", {"ling.txt": GOOD, "a.txt": GOOD, "b.txt": vectors_text(random_rows(WORDS, d=6))},
     ["--linguistic", "{t}/ling.txt", "--visual", '{{"x/cnn-mean": "{t}/a.txt", "y/cnn-mean": "{t}/b.txt"}}'],
     ["b.txt:1:", "dimension 6", "has 4"]),
    ("unknown_table2_system", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--table2_system", "nope"],
     ["table2_system 'nope'"]),
]


@pytest.mark.parametrize("name, files, args, needles", EVALUATE_CASES, ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_bad_input(tmp_path, bench, capsys, name, files, args, needles):
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
    args = [a.format(t=tmp_path) for a in args]
    if "--benchmarks" not in args:
        args += ["--benchmarks", f"[{bench}]"]
    code, _, err = run(["evaluate", *args, "--n_boot", "0", "--out", tmp_path / "rep"], capsys)
    assert_user_error(code, err, "evaluate", *needles)
    assert not (tmp_path / "rep" / "evaluation.json").exists()


def test_evaluate_bad_oov_choice(good_vectors, bench, tmp_path, capsys):
    code, _, err = run([*evaluate_args(good_vectors, bench, tmp_path), "--oov", "drop"], capsys)
    assert_parser_error(code, err, "oov")


# --- fit / export
@pytest.mark.parametrize("case", ["empty_corpus", "missing_corpus", "unknown_corpus_name"])
def test_fit_bad_corpus(tmp_path, capsys, case):
    corpus = {"empty_corpus": tmp_path / "empty.txt", "missing_corpus": tmp_path / "absent.txt",
              "unknown_corpus_name": Path("nosuchcorpus")}[case]
    if case == "empty_corpus":
        corpus.write_text("\n\n")
    run_dir = tmp_path / "run"
    code, _, err = run(["fit", "--config", skipgram_config(tmp_path, corpus, run_dir)], capsys)
    assert_user_error(code, err, "fit", corpus.name)
    assert not (run_dir / "vectors.txt").exists()


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    code, _, err = run(["export", bad], capsys)
    assert_user_error(code, err, "export", "not a SkipGram checkpoint")
    code, _, err = run(["export", tmp_path / "absent.ckpt"], capsys)
    assert_user_error(code, err, "export", "absent.ckpt", "not found")


class OpensFile:
    """Unpickling this creates `path`: the marker that a file was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_export_never_unpickles_code_from_a_checkpoint(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"syn0": torch.zeros(1, 2)}, "skipgram": {"words": ["cat"], "counts": [1]},
                "x": OpensFile(tmp_path / "ran")}, evil)
    code, _, err = run(["export", evil], capsys)
    assert not (tmp_path / "ran").exists()
    assert_user_error(code, err, "export", "evil.ckpt", "weights_only")
    assert not (tmp_path / "vectors.txt").exists()


# --- predict / bovw-codebook
def test_predict_unknown_backbone(tmp_path, capsys):
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out", {"backbone": "nosuchnet"})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "nosuchnet")


def test_predict_unknown_preprocessing_scheme(tmp_path, backbone, capsys):
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out", backbone, preprocess="nope")
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "'nope'")
    assert not (tmp_path / "out" / "aggregates.pt").exists()


def test_predict_unknown_layer(tmp_path, backbone, capsys):
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out", {**backbone, "layer": "fc9"})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "fc9")


def test_predict_missing_backbone_checkpoint(tmp_path, backbone, capsys):
    kw = {**backbone, "backbone_kwargs": {**backbone["backbone_kwargs"], "checkpoint": str(tmp_path / "no.pt")}}
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out", kw)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "no.pt")


@pytest.mark.parametrize("case", ["missing_folder", "folder_without_shards"])
def test_predict_missing_shards(tmp_path, backbone, capsys, case):
    shards = tmp_path / "sh"
    if case == "folder_without_shards":
        shards.mkdir()
    cfg = predict_config(tmp_path, str(shards), tmp_path / "out", backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", str(shards))


AGGREGATES_BAD = {"torch_dict": "torch", "garbage_bytes": b"not a torch file at all"}


@pytest.mark.parametrize("case", [
    "torch_dict",
    "garbage_bytes"])
def test_predict_output_holding_an_aggregates_file_that_is_not_one(tmp_path, backbone, capsys, case):
    out = tmp_path / "out"
    out.mkdir()
    if case == "torch_dict":
        torch.save({"words": "not aggregates"}, out / "aggregates.pt")
    else:
        (out / "aggregates.pt").write_bytes(AGGREGATES_BAD[case])
    before = (out / "aggregates.pt").read_bytes()
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), out, backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "aggregates.pt")
    assert (out / "aggregates.pt").read_bytes() == before


@pytest.mark.parametrize("case", ["torch_dict", "garbage_bytes"])
def test_predict_bovw_codebook_that_is_not_one(tmp_path, capsys, case):
    codebook = tmp_path / "codebook.pt"
    if case == "torch_dict":
        torch.save({"something": "else"}, codebook)
    else:
        codebook.write_bytes(b"PK\x03\x04 not really a zip")
    cfg = predict_config(tmp_path, str(make_shards(tmp_path / "sh")), tmp_path / "out",
                         {"backbone": "bovw", "backbone_kwargs": {"codebook": str(codebook)}})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "codebook.pt")


def test_bovw_codebook_missing_shards(tmp_path, capsys):
    code, _, err = run(["bovw-codebook", "--shards", f"[{tmp_path / 'absent'}]", "--output", tmp_path / "cb.pt"], capsys)
    assert_user_error(code, err, "bovw-codebook", "absent")


# --- shard / reproduce
def test_shard_unknown_source(tmp_path, capsys):
    code, _, err = run(["shard", "--source", "nosuchsource", "--output_dir", tmp_path / "out"], capsys)
    assert code == 2 and "Traceback" not in err and "nosuchsource" in err


def test_shard_missing_root(tmp_path, bench, capsys):
    code, _, err = run(["shard", "--source", "folder", "--root", tmp_path / "absent", "--benchmarks", f"[{bench}]",
                        "--output_dir", tmp_path / "out"], capsys)
    assert_user_error(code, err, "shard", "absent")


def test_reproduce_unknown_force_stage(tmp_path, capsys):
    code, _, err = run(["reproduce", "--checkpoints", tmp_path / "ck", "--force", "[nope]"], capsys)
    assert_user_error(code, err, "reproduce", "nope")
    assert not (tmp_path / "ck").exists()


def test_reproduce_source_without_kind(tmp_path, capsys):
    code, _, err = run(["reproduce", "--checkpoints", tmp_path / "ck", "--sources", '{"x": {"n_per_word": 3}}'],
                       capsys)
    assert_user_error(code, err, "reproduce", "sources.x")


class DieAfterFirstShard(__import__("pytorch_lightning").Callback):
    """Dies (like a killed job) right after the first shard was committed to parts/."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch["shards_done"]:
            raise RuntimeError("killed by the test")


def test_item13_killed_and_resumed_predict_gives_the_same_aggregates_md5(tmp_path, backbone, capsys):
    """Batches of one shard each (batch_size = per_shard): the CNN sees the same batches with or without the kill."""
    shards = str(make_shards(tmp_path / "sh", n_shards=3, per_shard=3))
    code, _, err = run(["predict", "--config", predict_config(tmp_path, shards, tmp_path / "ref", backbone, "r.yaml",
                                                              batch_size=3)], capsys)
    assert code == 0, err[-2000:]
    out = tmp_path / "out"
    die = {"class_path": f"{__name__}.DieAfterFirstShard"}
    with pytest.raises(RuntimeError, match="killed by the test"):
        cli.main(["predict", "--config", str(predict_config(tmp_path, shards, out, backbone, "k.yaml", [die],
                                                           batch_size=3))])
    assert not (out / "aggregates.pt").exists() and list((out / "parts").glob("*.pt"))
    code, _, err = run(["predict", "--config", predict_config(tmp_path, shards, out, backbone, "o.yaml", batch_size=3)],
                       capsys)
    assert code == 0, err[-2000:]
    md5 = [hashlib.md5((d / "aggregates.pt").read_bytes()).hexdigest() for d in (tmp_path / "ref", out)]
    assert md5[0] == md5[1]


def test_item10_fit_folder_under_a_file_through_lightningcli(tmp_path, capsys):
    """The same one line from inside a LightningCLI run (the data module's cache folder)."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = skipgram_config(tmp_path, corpus_file(tmp_path / "c.txt"), tmp_path / "run")
    code, _, err = run(["fit", "--config", cfg, "--data.cache_dir", blocker / "cache"], capsys)
    assert_user_error(code, err, "fit", str(blocker / "cache"), f"{blocker} is a file")
