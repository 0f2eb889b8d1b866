"""Scale: `shard` and `predict` over a generated folder of N small JPEGs; per-1k time, peak memory, kill + resume.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000 2000            # quick mode (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_scale.py --sizes 10000 100000 --out scale.json   # the full check

For each N: a `<word>/<image>.jpg` folder (the `folder` source's layout, like ImageNet's train/<wnid>/) of N
synthetic 64 x 64 JPEGs over 100 words is generated; then, each in its own process (so peak RSS is its own):
`python -m mmlightning shard --source folder` (1000 samples per shard; fewer when the smallest N has under 10k) and `python -m mmlightning predict`
with a tiny seeded AlexNet1512 (width 0.1, fc7 32-dim) on the CPU, batch 100, one loader worker.
For the largest N, `predict` is also started again into a fresh folder, SIGKILLed at ~50% of the clean
run's time, and rerun: the final aggregates must equal the uninterrupted run's (count equal, sums to 1e-9).
Prints time per 1k images (after the imports: start-up is a constant) and peak RSS of each step at each N, the load average, and the checks:
per-1k time of the largest N within 15% of the smallest N's, peak RSS within 10%.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = 100
TINY = {"num_classes": 10, "fc_dim": 32, "width": 0.1}


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """n JPEGs of 64 x 64 in root/<word>/ (100 words, deterministic); 200 distinct images, reused."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(200):
        a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).resize((64, 64), Image.BILINEAR).save(b, format="JPEG", quality=85)
        blobs.append(b.getvalue())
    for i in range(n):
        d = root / f"w{i % WORDS:03d}"
        if i < WORDS:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"img{i:07d}.jpg").write_bytes(blobs[i % len(blobs)])
    (root.parent / "words.txt").write_text("".join(f"w{w:03d}\n" for w in range(WORDS)))
    return root


def child(rss_file: str, args: list[str]) -> None:
    """Run the CLI in this process, then record this process's peak RSS (and its loader workers')."""
    import pytorch_lightning  # noqa: F401  (imports are start-up cost, not work)
    import torch  # noqa: F401
    import webdataset  # noqa: F401

    from mmlightning.cli import main

    t0 = time.perf_counter()
    rc = main(args)
    work_s = time.perf_counter() - t0
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited across fork/exec)
    status = Path("/proc/self/status").read_text()
    own = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))) / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    Path(rss_file).write_text(json.dumps({"rc": rc, "rss_mb": own, "workers_rss_mb": kids, "work_s": work_s}))
    sys.exit(rc)


def timed(args: list[str], work: Path, kill_after: float | None = None) -> dict:
    """Run `args` through `child` in a subprocess: seconds, peak RSS (MB), return code."""
    rss = work / f"rss-{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "--child", str(rss), "--", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL
        proc.wait()
        return {"seconds": time.perf_counter() - t0, "killed": proc.returncode == -signal.SIGKILL}
    err = proc.communicate()[1]
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"seconds": seconds, **json.loads(rss.read_text())}


def predict_args(shards: Path, out: Path, ckpt: Path) -> list[str]:
    """`predict --config` on the config run_extraction would use (mmlightning.features.extract.extraction_config)."""
    import yaml

    from mmlightning.features.extract import extraction_config

    config = extraction_config(shards, out, backbone="alexnet1512", backbone_kwargs={"checkpoint": str(ckpt), **TINY},
                               layer="fc7", batch_size=100, num_workers=1, accelerator="cpu", devices=1,
                               save_every_s=0, preprocess="imagenet")
    config["trainer"]["enable_progress_bar"] = False
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["predict", "--config", str(path)]


def shard_args(root: Path, out: Path, n: int, per_shard: int) -> list[str]:
    return ["shard", "--source", "folder", "--root", str(root), "--output_dir", str(out),
            "--words", str(root.parent / "words.txt"), "--benchmarks", "[]", "--n_per_word", str(n // WORDS + 1),
            "--max_side", "64", "--samples_per_shard", str(per_shard), "--prefix", "scale", "--workers", "2"]


def compare(a_path: Path, b_path: Path) -> dict:
    import torch

    from mmlightning.features.aggregates import load_aggregates

    a, ma = load_aggregates(a_path)
    b, mb = load_aggregates(b_path)
    return {"images": [ma["images"], mb["images"]], "words_equal": a.words == b.words,
            "count_equal": bool(torch.equal(a.count, b.count)),
            "max_abs_sum_diff": float((a.sum - b.sum).abs().max()), "max_equal": bool(torch.equal(a.max, b.max))}


def run_size(n: int, work: Path, ckpt: Path, resume: bool, per_shard: int) -> dict:
    root = work / f"n{n}" / "images"
    t0 = time.perf_counter()
    make_folder(root, n)
    res = {"n": n, "generate_s": round(time.perf_counter() - t0, 1)}
    shards = work / f"n{n}" / "shards"
    res["shard"] = timed(shard_args(root, shards, n, per_shard), work)
    res["predict"] = timed(predict_args(shards, work / f"n{n}" / "feats", ckpt), work)
    for step in ("shard", "predict"):  # time after the imports (start-up is a constant, not per image)
        res[step]["s_per_1k"] = res[step]["work_s"] / n * 1000
    print(f"N={n}: shard {res['shard']['s_per_1k']:.2f} s/1k (peak RSS {res['shard']['rss_mb']:.0f} MB), "
          f"predict {res['predict']['s_per_1k']:.2f} s/1k (peak RSS {res['predict']['rss_mb']:.0f} MB, "
          f"worker {res['predict']['workers_rss_mb']:.0f} MB), load {os.getloadavg()[0]:.2f}", flush=True)
    if resume:
        out = work / f"n{n}" / "killed"
        kill = timed(predict_args(shards, out, ckpt), work, kill_after=0.5 * res["predict"]["seconds"])
        parts = len(list((out / "parts").glob("*.pt")))
        again = timed(predict_args(shards, out, ckpt), work)
        res["resume"] = {"killed_after_s": round(kill["seconds"], 1), "killed": kill["killed"], "parts_left": parts,
                         "rerun_s": round(again["seconds"], 1),
                         **compare(work / f"n{n}" / "feats" / "aggregates.pt", out / "aggregates.pt")}
        print(f"N={n}: killed at {kill['seconds']:.0f} s ({parts} part files), rerun {again['seconds']:.0f} s: "
              f"{res['resume']}", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp dir, removed)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mmlightning.features.alexnet1512 import AlexNet1512

    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        ckpt = work / "tiny.pt"
        torch.save(AlexNet1512(**TINY).state_dict(), ckpt)
        t0 = time.perf_counter()
        per_shard = min(1000, max(10, min(a.sizes) // 10))  # at least 10 shards, so that a kill leaves some done
        results = [run_size(n, work, ckpt, resume=(n == max(a.sizes)), per_shard=per_shard) for n in sorted(a.sizes)]
    small, large = results[0], results[-1]
    checks = {}
    for step in ("shard", "predict"):
        checks[f"{step}_time_ratio"] = large[step]["s_per_1k"] / small[step]["s_per_1k"]
        checks[f"{step}_rss_ratio"] = large[step]["rss_mb"] / small[step]["rss_mb"]
    r = large["resume"]
    checks["resume_equal"] = r["killed"] and r["parts_left"] > 0 and r["words_equal"] and r["count_equal"] and r["max_equal"] \
        and r["max_abs_sum_diff"] < 1e-9 and r["images"][0] == r["images"][1]
    ok = all(checks[f"{s}_time_ratio"] <= 1.15 for s in ("shard", "predict")) and \
        all(checks[f"{s}_rss_ratio"] <= 1.10 for s in ("shard", "predict")) and checks["resume_equal"]
    summary = {"sizes": a.sizes, "results": results, "checks": checks, "pass": ok,
               "loadavg": os.getloadavg(), "cpus": os.cpu_count(), "total_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(checks, indent=1))
    print(f"{'PASS' if ok else 'FAIL'}: per-1k time within 15%, peak RSS within 10%, resume equal "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {summary['total_s']:.0f} s in all)")
    if a.out:
        Path(a.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:])
    else:
        main()
