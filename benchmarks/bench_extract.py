"""Extraction speed and memory on real images (Tux Paint stamps), against named baselines in the same run.

    .venv/bin/python benchmarks/bench_extract.py                      # defaults: 512 timed images, 1k vs 8k memory
    .venv/bin/python benchmarks/bench_extract.py --images 256 --memory 500 4000 --batch-size 32

Measures, printing each ratio:
1. pipeline: `predict` over shards (decode + preprocess in a data-loader worker, collate, forward, writer)
   images/s  vs  baseline "pure forward": the same backbone on preloaded tensors of the same batch size
   (target >= 0.8x: decoding and collation must not be the bottleneck);
2. vs baseline "batch-1 PIL loop" (open, preprocess, forward one image at a time, as older tools do);
3. the pure forward's share of the machine's fp32 matmul FLOP/s (model FLOPs x images/s over a large
   matmul's FLOP/s measured in this run);
4. peak memory (main process and data-loader workers) of the pipeline for a small vs a large image count
   (must not grow: the writer keeps O(words x D), never per-image features);
5. alexnet1512 (the paper's net, full size: FC6/FC7 6144) images/s on preloaded tensors, and the sparsity
   of its fc6 / fc7 features (random init: no trained weights are shipped).
   Measured here: the main process's RSS creeps up ~10-15% over thousands of images with glibc's default
   (dynamic) mmap threshold and is flat (838.0 -> 838.7 MB over 4000 images) with MALLOC_MMAP_THRESHOLD_=131072:
   allocator heap retention, not data kept per image.
Images: PNG stamps under /usr/share/tuxpaint/stamps (Debian tuxpaint-stamps-default), re-encoded as
JPEG shards in the docs/FORMATS.md format in a temporary folder.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

STAMPS = Path("/usr/share/tuxpaint/stamps")


def make_shards(out: Path, n_images: int, per_shard: int = 128, max_side: int = 320) -> Path:
    """Write `n_images` stamp images (repeating the stamp set if needed) as JPEG shards + manifest."""
    import webdataset as wds
    from PIL import Image

    from mmlightning.images.preprocess import to_rgb

    files = sorted(STAMPS.rglob("*.png"))
    if not files:
        sys.exit(f"{STAMPS}: no PNG stamps (apt-get install tuxpaint-stamps-default)")
    out.mkdir(parents=True, exist_ok=True)
    encoded: list[bytes] = []
    for f in files[: min(len(files), n_images)]:
        img = to_rgb(Image.open(f))
        img.thumbnail((max_side, max_side))
        b = io.BytesIO()
        img.save(b, format="JPEG", quality=90)
        encoded.append(b.getvalue())
    shards, i = [], 0
    while i < n_images:
        name = f"bench-{len(shards):06d}.tar"
        n = min(per_shard, n_images - i)
        with wds.TarWriter(str(out / name)) as w:
            for j in range(i, i + n):
                word = files[j % len(encoded)].parent.name
                w.write({"__key__": f"img{j:07d}", "jpg": encoded[j % len(encoded)],
                         "json": json.dumps({"words": [word], "source": "tuxpaint", "path": "", "label": None}).encode()})
        shards.append({"name": name, "samples": n})
        i += n
    (out / "manifest.json").write_text(json.dumps({"format": "mmlightning-shards/1", "shards": shards}))
    return out


def pipeline_rate(shards: Path, out: Path, backbone: str, kwargs: dict, batch_size: int, workers: int) -> tuple[float, int]:
    """Images/s of `predict` (timed from the first to the last batch), and the image count."""
    import pytorch_lightning as pl

    from mmlightning.features.extract import FeatureExtractor
    from mmlightning.features.writer import AggregateWriter
    from mmlightning.images.read_shards import ShardDataModule

    class Clock(pl.Callback):
        start = end = None
        n = 0
        rss: list = []  # MB of the main process after each batch

        def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self.start = self.start or time.perf_counter()

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.n += len(batch["keys"])
            self.end = time.perf_counter()
            status = Path("/proc/self/status").read_text()
            self.rss.append(int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024)

    clock = Clock()
    trainer = pl.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[AggregateWriter(str(out)), clock])
    model = FeatureExtractor(backbone, kwargs)
    trainer.predict(model, datamodule=ShardDataModule(str(shards), batch_size, workers, preprocess=model.preprocess),
                    return_predictions=False)
    # the first batch includes worker start-up; count from its end
    pipeline_rate.rss = clock.rss
    return clock.n / (clock.end - clock.start), clock.n


def forward_rate(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Images/s of `model` on a preloaded batch `x` (after one warm-up)."""
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return repeats * len(x) / (time.perf_counter() - t)


def matmul_flops(n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t)


def model_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs per image of one forward (torch's flop counter: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x[:1])
    return float(fc.get_total_flops())


def pil_loop_rate(files: list[Path], model: torch.nn.Module, scheme) -> float:
    """Images/s of the batch-1 loop: open with PIL, preprocess, forward one image at a time."""
    from PIL import Image

    t = time.perf_counter()
    with torch.inference_mode():
        for f in files:
            with Image.open(f) as img:
                model(scheme(img)[None])
    return len(files) / (time.perf_counter() - t)


def memory_child(shards: str, out: str, batch_size: int, workers: int) -> None:
    """(subprocess) run the pipeline with a tiny backbone; print peak RSS of this process and its workers."""
    from mmlightning.features.alexnet1512 import AlexNet1512

    tiny = {"num_classes": 10, "fc_dim": 32, "width": 0.05}  # cheap: this run measures the pipeline's memory
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save(AlexNet1512(**tiny).state_dict(), Path(out) / "tiny.pt")
    kwargs = {"checkpoint": str(Path(out) / "tiny.pt"), **tiny}
    rate, n = pipeline_rate(Path(shards), Path(out), "alexnet1512", kwargs, batch_size, workers)
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited across fork/exec)
    status = Path("/proc/self/status").read_text()
    main_peak = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))) / 1024
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rss = pipeline_rate.rss  # MB after each batch
    late = sorted(rss[len(rss) // 2:])  # second half of the run
    early = sorted(rss[len(rss) // 16: len(rss) // 8 + 1])  # around 1/16 .. 1/8 of the run
    print(json.dumps({"images": n, "rate": rate, "main_mb": main_peak, "worker_mb": worker_peak,
                      "steady_mb": late[len(late) // 2], "early_mb": early[len(early) // 2],
                      "last_mb": sorted(rss[-16:])[len(rss[-16:]) // 2]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512, help="images for the timed pipeline run")
    ap.add_argument("--batch-size", type=int, default=4, help="4 is fastest on a 2-core CPU; use 64-256 on a GPU")
    ap.add_argument("--workers", type=int, default=0, help="data-loader workers of the pipeline (0: decode in the main process)")
    ap.add_argument("--memory", type=int, nargs=2, default=[1000, 8000], help="image counts compared for memory")
    ap.add_argument("--pil-images", type=int, default=64, help="images for the batch-1 PIL loop")
    ap.add_argument("--memory-only", action="store_true", help="run only the memory comparison")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved pure/pipeline rounds (best is kept)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return memory_child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else f'cpu, {torch.get_num_threads()} threads'}; "
          f"batch size {args.batch_size}; {args.workers} data-loader worker(s)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        if not args.memory_only:
            speed(args, tmp, device)
        memory(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def speed(args, tmp: Path, device: str) -> None:
    """Pipeline vs pure forward vs batch-1 PIL loop (efficientnet_lite0), FLOP/s, alexnet1512 forward + sparsity."""
    from PIL import Image

    from mmlightning.features.backbones import build_backbone
    from mmlightning.images.preprocess import get_scheme

    shards = make_shards(tmp / "shards", args.images)
    bb = build_backbone("efficientnet_lite0").eval().to(device)
    scheme = get_scheme(bb.preprocess)
    stamps = sorted(STAMPS.rglob("*.png"))
    x = torch.stack([scheme(Image.open(f)) for f in stamps[: args.batch_size]]).to(device)  # (B, 3, 224, 224)

    pures, pipes = [], []
    for r in range(args.rounds):  # interleaved, best of each: the machine may be shared
        pures.append(forward_rate(bb, x, repeats=max(2, args.images // args.batch_size // 2)))
        shutil.rmtree(tmp / "out", ignore_errors=True)
        pipe, n = pipeline_rate(shards, tmp / "out", "efficientnet_lite0", {}, args.batch_size, args.workers)
        pipes.append(pipe)
    print(f"rounds: pure {[round(v, 1) for v in pures]}, pipeline {[round(v, 1) for v in pipes]} images/s")
    pure, pipe = max(pures), max(pipes)
    pil = pil_loop_rate(stamps[: args.pil_images], bb.cpu() if device == "cpu" else bb, scheme) \
        if device == "cpu" else float("nan")
    print(f"efficientnet_lite0 pure forward (preloaded tensors): {pure:8.1f} images/s   [baseline]")
    print(f"efficientnet_lite0 pipeline over shards ({n} images): {pipe:8.1f} images/s   ratio {pipe / pure:.2f}x (target >= 0.8x)")
    print(f"efficientnet_lite0 batch-1 PIL loop ({args.pil_images} images):  {pil:8.1f} images/s   pipeline / PIL loop = {pipe / pil:.2f}x")

    flops = model_flops(bb, x)
    peak = matmul_flops(device=device)
    print(f"model: {flops / 1e9:.3f} GFLOP/image; fp32 matmul 2048^3: {peak / 1e9:.1f} GFLOP/s; "
          f"pure forward reaches {flops * pure / 1e9:.1f} GFLOP/s = {flops * pure / peak:.1%} of the matmul rate")

    net = build_backbone("alexnet1512", layer="fc7").eval().to(device)
    xi = scheme_imagenet_batch(stamps, args.batch_size, device)  # (B, 3, 224, 224) pixels - 128
    a_rate = forward_rate(net, xi, repeats=3)
    a_flops = model_flops(net, xi)
    print(f"alexnet1512 (fc7, 6144-d) pure forward: {a_rate:8.1f} images/s; {a_flops / 1e9:.2f} GFLOP/image "
          f"= {a_flops * a_rate / peak:.1%} of the matmul rate")
    with torch.inference_mode():
        f6 = net.net.features_at(xi, "fc6")
        f7 = net.net.features_at(xi, "fc7")
    print(f"alexnet1512 (random init) non-zero fraction: fc6 {(f6 > 0).float().mean():.1%}, fc7 {(f7 > 0).float().mean():.1%} "
          f"(paper, trained: ~22%)")
    del net


def memory(args, tmp: Path) -> None:
    """Peak RSS of the pipeline with a tiny backbone, a small vs a large image count (subprocesses)."""
    lo, hi = args.memory
    make_shards(tmp / "mem_lo", lo)
    make_shards(tmp / "mem_hi", hi)
    res = {}
    for name, count in (("lo", lo), ("hi", hi)):
        r = subprocess.run([sys.executable, __file__, "--child", str(tmp / f"mem_{name}"), str(tmp / f"out_{name}"),
                            str(args.batch_size), str(args.workers)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        res[name] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"peak RSS, pipeline with a tiny backbone: {res['lo']['images']} images: main {res['lo']['main_mb']:.0f} MB, "
          f"workers {res['lo']['worker_mb']:.0f} MB;  {res['hi']['images']} images: main {res['hi']['main_mb']:.0f} MB, "
          f"workers {res['hi']['worker_mb']:.0f} MB;  ratio {res['hi']['main_mb'] / res['lo']['main_mb']:.2f}x "
          f"({res['hi']['rate']:.0f} images/s decode-bound)")
    print(f"median RSS of the main process over the second half of the run: {res['lo']['steady_mb']:.0f} MB "
          f"({lo} images) vs {res['hi']['steady_mb']:.0f} MB ({hi} images): ratio "
          f"{res['hi']['steady_mb'] / res['lo']['steady_mb']:.2f}x")
    h = res["hi"]
    print(f"within the {hi}-image run, main process RSS (median of nearby batches): after ~{hi // 16}-{hi // 8} images "
          f"{h['early_mb']:.0f} MB, at the end {h['last_mb']:.0f} MB: ratio {h['last_mb'] / h['early_mb']:.2f}x")


def scheme_imagenet_batch(stamps: list[Path], batch_size: int, device: str) -> torch.Tensor:
    """(B, 3, 224, 224) stamps under the paper's "imagenet" scheme (alexnet1512's input)."""
    from PIL import Image

    from mmlightning.images.preprocess import get_scheme

    return torch.stack([get_scheme("imagenet")(Image.open(f)) for f in stamps[:batch_size]]).to(device)


if __name__ == "__main__":
    main()
