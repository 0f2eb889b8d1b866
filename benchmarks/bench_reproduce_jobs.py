"""Stages at once against one after another: a cold `reproduce` with `--jobs 1` (the baseline), then `--jobs 2`.

    .venv/bin/python benchmarks/bench_reproduce_jobs.py --json docs/figures/bench_reproduce_jobs.json
    .venv/bin/python benchmarks/bench_reproduce_jobs.py --mmskipgram '[]' --json docs/figures/bench_reproduce_jobs_paper.json

Each run is `python -m mmlightning reproduce --config configs/reproduce.yaml` in a child process, cold: its own
fresh checkpoints folder (corpus cache included) and reports folder in a temporary folder, one run after the
other (jobs 1 first). Extra arguments after `--` go to every run. Printed per run: the wall time of the stages
(run_summary.json's `stages_wall_seconds`), the sum of the stage times, the ratio of the wall time to the
baseline's, and the load average (1 min) before and after; then whether the runs agree byte for byte: every
stage's vector files (md5) and evaluation.json with each run's own folder written as <run>.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VECTOR_FILES = ("vectors.txt", "mean.txt", "max.txt")


def run(jobs: int, work: Path, args) -> dict:
    """One cold reproduce with `jobs`; its run summary, load averages and file digests."""
    ck, rep = work / f"jobs{jobs}" / "checkpoints", work / f"jobs{jobs}" / "reports"
    cmd = [sys.executable, "-m", "mmlightning", "reproduce", "--config", args.config, "--checkpoints", str(ck),
           "--reports", str(rep), "--jobs", str(jobs), *(["--mmskipgram", args.mmskipgram] if args.mmskipgram else []),
           *args.extra]
    load0, t = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, load1 = time.perf_counter() - t, os.getloadavg()[0]
    if proc.returncode:
        sys.exit(f"jobs {jobs} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((rep / "run_summary.json").read_text())
    digests = {f"{p.parent.relative_to(ck)}/{p.name}": hashlib.md5(p.read_bytes()).hexdigest()
               for p in sorted(ck.rglob("*")) if p.name in VECTOR_FILES and "latest" not in p.parts}
    evaluation = (rep / "evaluation.json").read_text().replace(str(work / f"jobs{jobs}"), "<run>")
    return {"jobs": jobs, "stages_wall_s": summary["stages_wall_seconds"], "process_wall_s": round(wall, 1),
            "sum_of_stages_s": round(sum(s["seconds"] for s in summary["stages"]), 1),
            "stages": {s["stage"]: s["seconds"] for s in summary["stages"]},
            "load_before": round(load0, 2), "load_after": round(load1, 2), "digests": digests,
            "evaluation_md5": hashlib.md5(evaluation.encode()).hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/reproduce.yaml")
    ap.add_argument("--jobs", type=int, nargs="+", default=[2], help="the runs to compare with jobs 1")
    ap.add_argument("--mmskipgram", default=None, help="e.g. '[]' for the paper's stages only")
    ap.add_argument("--json", default=None, help="also write the record here")
    ap.add_argument("extra", nargs="*", help="further reproduce arguments (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_jobs_") as tmp:
        runs = [run(j, Path(tmp), args) for j in [1, *args.jobs]]
    base = runs[0]
    for r in runs:
        r["ratio_to_jobs1"] = round(r["stages_wall_s"] / base["stages_wall_s"], 3)
        r["same_vectors_as_jobs1"] = r["digests"] == base["digests"]
        r["same_evaluation_as_jobs1"] = r["evaluation_md5"] == base["evaluation_md5"]
        print(f"jobs {r['jobs']}: stages {r['stages_wall_s']:.1f} s wall (sum of stage times {r['sum_of_stages_s']:.1f} s),"
              f" {r['ratio_to_jobs1']:.3f}x jobs 1; load {r['load_before']} -> {r['load_after']}; "
              f"vectors {'identical' if r['same_vectors_as_jobs1'] else 'DIFFER'} "
              f"({len(r['digests'])} files), evaluation.json {'identical' if r['same_evaluation_as_jobs1'] else 'DIFFERS'}")
    if args.json:
        record = {"command": shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "cpus": os.cpu_count(),
                  "runs": runs}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if not all(r["same_vectors_as_jobs1"] and r["same_evaluation_as_jobs1"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
