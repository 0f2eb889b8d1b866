"""`predict` (feature extraction through LightningCLI) with bad input and faults (issue 11): refused settings,
never a hang; resume that notices changed shards; a tar listed twice, truncated, or holding too many pixels;
leftovers of a killed run, one run per output folder, byte-identical aggregates after identical or resumed runs.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from cli_helpers import (HangGuard, assert_user_error, png, predict_config, proc_env, run, run_proc, small_shards,
                         write_tar)
from mmlightning import cli


def aggregates_meta(out: Path) -> dict:
    from mmlightning.features.aggregates import load_aggregates

    return load_aggregates(out / "aggregates.pt")[1]


# 1. predict with a batch size of 0 (or negative), negative workers or save interval: refused, never a hang.
def test_item01_predict_batch_size_zero_is_an_error_not_a_hang(tmp_path, backbone):
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out", backbone, batch_size=0)
    p = run_proc(["predict", "--config", cfg], tmp_path, timeout=120)  # the subprocess is SIGKILLed on timeout
    assert_user_error(p.returncode, p.stderr, "predict", "batch_size")


@pytest.mark.parametrize("where, key, value", [("data", "batch_size", -2), ("data", "num_workers", -1),
                                               ("writer", "save_every_s", -1.0)])
def test_item01_predict_negative_settings_are_refused_at_construction(tmp_path, backbone, capsys, where, key, value):
    out = tmp_path / "out"
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), out, backbone,
                         **({key: value} if where == "data" else {}))
    if where == "writer":
        c = yaml.safe_load(cfg.read_text())
        c["trainer"]["callbacks"][0]["init_args"][key] = value
        cfg.write_text(yaml.safe_dump(c))
    with HangGuard(120):  # fails only on a real hang (a loaded machine may take a while to start)
        code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", key)
    assert not (out / "aggregates.pt").exists()


# 3. predict resume notices shards that changed under the same names.
def test_item03_predict_resume_notices_reshard_under_the_same_names(tmp_path, backbone, capsys):
    shards, out = tmp_path / "sh", tmp_path / "out"
    small_shards(shards, n_shards=2, per_shard=3, seed=0)
    cfg = predict_config(tmp_path, str(shards), out, backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert code == 0 and aggregates_meta(out)["images"] == 6, err[-2000:]
    for f in shards.glob("*.tar"):  # like `shard --overwrite true` with other settings: same names
        f.unlink()
    small_shards(shards, n_shards=2, per_shard=5, seed=1)
    code, _, err = run(["predict", "--config", cfg], capsys)
    if code == 2:  # refusing is fine, with one line
        assert_user_error(code, err, "predict", str(out))
    else:          # so is recomputing: the 10 new images, not the 6 old ones
        assert code == 0 and aggregates_meta(out)["images"] == 10, err[-2000:]


# 9. the same tar listed twice counts once.
def test_item09_a_shard_listed_twice_counts_once(tmp_path, backbone, capsys):
    shards, out = small_shards(tmp_path / "sh", n_shards=1, per_shard=3), tmp_path / "out"
    tar = str(shards / "t-000000.tar")
    code, _, err = run(["predict", "--config", predict_config(tmp_path, [tar, tar], out, backbone)], capsys)
    assert code == 0, err[-2000:]
    assert aggregates_meta(out)["images"] == 3


# 10. an output folder under a regular file: one line, exit 2.
def test_item10_predict_output_under_a_file(tmp_path, backbone, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), blocker / "out", backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", str(blocker))


# 12. truncated tar, *.tmp leftovers, one pixel limit, one run per output folder.
def test_item12_truncated_tar_keeps_every_intact_sample(tmp_path, backbone, capsys):
    shards, out = small_shards(tmp_path / "sh", n_shards=1, per_shard=4), tmp_path / "out"
    tar = shards / "t-000000.tar"
    with tarfile.open(tar) as t:
        fourth = [m for m in t.getmembers() if m.name.startswith("s0_0_3.")][0]
    tar.write_bytes(tar.read_bytes()[: fourth.offset_data + 10])  # cut inside the 4th sample
    code, _, err = run(["predict", "--config", predict_config(tmp_path, [str(tar)], out, backbone)], capsys)
    assert code == 0, err[-2000:]
    assert aggregates_meta(out)["images"] == 3


def test_item12_rerun_removes_tmp_leftovers_of_a_killed_run(tmp_path, backbone, capsys):
    shards, out = small_shards(tmp_path / "sh"), tmp_path / "out"
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


class HoldUntilReleased(pl.Callback):
    """Marks the run as started, then holds its first batch until the file `release` appears: a run holding its
    output folder for as long as the test needs (`hold_s` only bounds a test that died without releasing it)."""

    def __init__(self, started: str, release: str, hold_s: float = 600.0):
        self.started, self.release, self.hold_s = started, release, hold_s

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        Path(self.started).touch()
        deadline = time.monotonic() + self.hold_s
        while not Path(self.release).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def test_item12_second_predict_into_a_busy_folder_is_refused(tmp_path, backbone, capsys):
    shards, out = small_shards(tmp_path / "sh", 2, 3), tmp_path / "out"
    started, release = tmp_path / "started", tmp_path / "release"
    hold = {"class_path": f"{__name__}.HoldUntilReleased",
            "init_args": {"started": str(started), "release": str(release)}}
    cfg_a = predict_config(tmp_path, str(shards), out, backbone, "a.yaml", callbacks=[hold], batch_size=1)
    a = subprocess.Popen([sys.executable, "-m", "mmlightning", "predict", "--config", str(cfg_a)], cwd=tmp_path,
                         env=proc_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # only a first run that hangs before its first batch fails here
        while not started.exists() and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the first run did not start"
        cfg_b = predict_config(tmp_path, str(shards), out, backbone, "b.yaml")
        code, _, err = run(["predict", "--config", cfg_b], capsys)
        assert a.poll() is None, "the first run ended before the second was tried"
        line = assert_user_error(code, err, "predict", str(out))
        assert str(a.pid) in line
    finally:
        release.touch()
        a.kill()
        a.wait()


# 13. identical runs give byte-identical aggregates.pt.
def test_item13_identical_predict_runs_give_identical_aggregates(tmp_path, backbone, capsys):
    shards = str(small_shards(tmp_path / "sh"))
    digests = []
    for name in ("one", "two"):
        out = tmp_path / name
        code, _, err = run(["predict", "--config", predict_config(tmp_path, shards, out, backbone, f"{name}.yaml")],
                           capsys)
        assert code == 0, err[-2000:]
        digests.append(hashlib.md5((out / "aggregates.pt").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


class DieAfterFirstShard(pl.Callback):
    """Dies (like a killed job) right after the first shard was committed to parts/."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch["shards_done"]:
            raise RuntimeError("killed by the test")


def test_item13_killed_and_resumed_predict_gives_the_same_aggregates_md5(tmp_path, backbone, capsys):
    """Batches of one shard each (batch_size = per_shard): the CNN sees the same batches with or without the kill."""
    shards = str(small_shards(tmp_path / "sh", n_shards=3, per_shard=3))
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


# ---------------------------------------------------------------- bad settings and files that already behave
def test_predict_unknown_backbone(tmp_path, capsys):
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out", {"backbone": "nosuchnet"})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "nosuchnet")


def test_predict_unknown_preprocessing_scheme(tmp_path, backbone, capsys):
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out", backbone, preprocess="nope")
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "'nope'")
    assert not (tmp_path / "out" / "aggregates.pt").exists()


def test_predict_unknown_layer(tmp_path, backbone, capsys):
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out", {**backbone, "layer": "fc9"})
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "fc9")


def test_predict_missing_backbone_checkpoint(tmp_path, backbone, capsys):
    kw = {**backbone, "backbone_kwargs": {**backbone["backbone_kwargs"], "checkpoint": str(tmp_path / "no.pt")}}
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), tmp_path / "out", kw)
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
    cfg = predict_config(tmp_path, str(small_shards(tmp_path / "sh")), out, backbone)
    code, _, err = run(["predict", "--config", cfg], capsys)
    assert_user_error(code, err, "predict", "aggregates.pt")
    assert (out / "aggregates.pt").read_bytes() == before
