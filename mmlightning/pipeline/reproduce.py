"""The main job: reproduce Kiela & Bottou (2014) end to end, reusing every stage's cached output.

    python -m mmlightning reproduce --config configs/reproduce.yaml            # embedded default
    python -m mmlightning reproduce --config configs/reproduce_paper.yaml      # text8 + BNC, ImageNet, ESP
    python -m mmlightning reproduce --config configs/reproduce.yaml --force '[extract]'
    python -m mmlightning reproduce --config configs/reproduce.yaml --checkpoints /elsewhere/checkpoints

The stages and what each reads are the table in `mmlightning.pipeline.table`; keys, reuse and the
--force closure are `mmlightning.pipeline.stages`; the settings are `mmlightning.pipeline.config`.
A changed setting or input file recomputes its stage and the stages that read it; `--force` names
stages to recompute anyway (with their dependants). Killing the run at any moment and rerunning it
resumes: finished stages are reused, an interrupted one resumes inside its own folder. One run at a
time per checkpoints folder: a second one stops before its first stage (`<checkpoints>/.lock`). A finished
checkpoints folder can be moved or copied and used from any working folder (`--checkpoints`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from mmlightning.atomic import write_json
from mmlightning.errors import UserError
from mmlightning.folder_lock import FolderLock
from mmlightning.pipeline.config import ReproduceConfig
from mmlightning.pipeline.fingerprint import Fingerprints
from mmlightning.pipeline.preflight import check_inputs, check_writable
from mmlightning.pipeline.release import check_release
from mmlightning.pipeline.stages import Runner, force_closure, plan, reusable
from mmlightning.pipeline.table import STAGES

log = logging.getLogger(__name__)
FINGERPRINTS = ".fingerprints.json"


def reproduce(**settings) -> dict:
    """Run the paper's experiment end to end (text, images, features, evaluation, release).

    Every setting is a key of configs/reproduce.yaml (`mmlightning.pipeline.config.ReproduceConfig`);
    without a config the embedded default runs. Returns the run summary (also reports/run_summary.json).
    """
    return run(ReproduceConfig(**settings))


def run(cfg: ReproduceConfig) -> dict:
    """Preflight, run the stage table (cached stages, then evaluation and release), write the summary."""
    t_start = time.time()
    root = Path(cfg.checkpoints)
    check_inputs(cfg)
    check_release(Path(cfg.reports) / "release")
    fp = Fingerprints(root / FINGERPRINTS)
    planned = plan(cfg, STAGES, root, fp)
    forced = force_closure(planned, list(cfg.force))
    writes = any(p.row.cached and (p.label in forced or not reusable(p, fp)) for p in planned)
    if writes:
        check_writable(root, "the stage outputs (checkpoints)")
    check_writable(cfg.reports, "the reports")
    lock = _lock(root, writes)
    runner = Runner(cfg, root, fp, forced)
    try:
        outputs = runner.run_all(planned)
    finally:
        fp.save()
        if lock is not None:
            lock.release()
    evaluation = outputs["evaluate"]
    total = round(time.time() - t_start, 1)
    summary = {"total_seconds": total, "stages": runner.summary, "reports": evaluation["paths"],
               "release": outputs["release"]}
    write_json(Path(cfg.reports) / "run_summary.json", summary)
    from mmlightning.evaluation.report import render_markdown

    log.info("\n%s", render_markdown(evaluation["result"], tables=("table1", "diff", "tuned")))
    log.info("%s", summary_table(runner.summary, total))
    return summary


def _lock(root: Path, writes: bool) -> FolderLock | None:
    """One run per checkpoints folder, taken before the first stage: a second run stops here, in one line."""
    lock = FolderLock(root, "reproduce")
    try:
        return lock.acquire()
    except OSError as e:
        if writes:
            raise UserError(f"{root}: cannot lock the stage outputs ({e.strerror or e}); make it writable or pass "
                            f"--checkpoints <a writable folder>") from None
        log.debug("%s: not locked (%s); every stage is reused, nothing is written there", root, e)
        return None


def summary_table(summary: list[dict], total: float) -> str:
    """The per-stage timing table printed at the end of a run."""
    lines = ["", "| stage | status | seconds (this run) | seconds (when computed) |", "| --- | --- | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s.get('computed_seconds', s['seconds'])} |")
    lines.append(f"| total | | {total} | |")
    return "\n".join(lines)
