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
Each stage's latest output is also reachable under a stable name, a link `<checkpoints>/latest/<stage>` to
`<checkpoints>/<stage>-<key>` (`checkpoints/latest/skipgram/vectors.txt`,
`checkpoints/latest/extract-tuxpaint/mean.txt`; a folder of links only, apart from the names the single
commands write, such as `checkpoints/skipgram`), and the run ends by printing where the vectors, the
release and the report are.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mmlightning.atomic import write_json
from mmlightning.errors import UserError
from mmlightning.folder_lock import FolderLock
from mmlightning.pipeline.config import ReproduceConfig
from mmlightning.pipeline.fingerprint import Fingerprints
from mmlightning.pipeline.parallel import resolve_jobs, run_parallel
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
    t_start, load_start = time.time(), os.getloadavg()[0]
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
    jobs = resolve_jobs(cfg.jobs)
    t_stages = time.time()
    try:
        outputs = run_parallel(runner, planned, jobs) if jobs > 1 else runner.run_all(planned)
    finally:
        fp.save()
        if lock is not None:
            lock.release()
    evaluation = outputs["evaluate"]
    total = round(time.time() - t_start, 1)
    summary = {"total_seconds": total, "stages": runner.summary, "jobs": jobs,
               "stages_wall_seconds": round(time.time() - t_stages, 1), "reports": evaluation["paths"],
               "release": outputs["release"], "load_average": {"start": load_start, "end": os.getloadavg()[0]}}
    write_json(Path(cfg.reports) / "run_summary.json", summary)
    from mmlightning.evaluation.report import render_markdown

    log.info("\n%s", render_markdown(evaluation["result"], tables=("table1", "diff", "suite", "tuned")))
    log.info("%s", summary_table(runner.summary, total))
    links = link_latest(root, runner.summary)
    print(where_things_are(cfg, links, total))
    return summary


LATEST = "latest"


def link_latest(root: Path, summary: list[dict]) -> dict[str, Path]:
    """`<root>/latest/<stage>` -> `../<stage>-<key>` for every cached stage of this run (relative links,
    replaced atomically). A name there already taken by something that is not a link is left alone, with a
    warning."""
    links = {}
    for s in summary:
        if not s.get("dir"):
            continue
        target = Path(s["dir"])
        link = root / LATEST / s["stage"].replace(":", "-")
        if link.exists() and not link.is_symlink():
            log.warning("%s: exists and is not a link; the latest %s output stays %s", link, s["stage"], target)
            continue
        tmp = link.parent / f".{link.name}.link.tmp"
        try:
            link.parent.mkdir(exist_ok=True)
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path("..") / target.name, target_is_directory=True)
            tmp.replace(link)
        except OSError as e:   # a read-only cache reused as it is: no links, the folders are named in the log
            log.debug("%s: no latest link (%s)", link, e)
            continue
        links[s["stage"]] = link
    return links


def where_things_are(cfg: ReproduceConfig, links: dict[str, Path], total: float) -> str:
    """The run's last lines: where the text and visual vectors, the release and the report are."""
    reports = Path(cfg.reports)
    lines = [f"reproduce: done in {total} s"]
    if "skipgram" in links:
        lines.append(f"  text vectors    {links['skipgram'] / 'vectors.txt'}")
    visual = [str(link / "mean.txt") for stage, link in links.items() if stage.startswith("extract:")]
    if visual:
        lines.append(f"  visual vectors  {', '.join(visual)} (CNN-Mean; max.txt beside: CNN-Max)")
    lines.append(f"  release         {reports / 'release'}/ (visual and multi-modal vectors, CARD.md)")
    page = reports / "index.html"
    lines.append(f"  report          {page if page.is_file() else reports / 'evaluation.md'} "
                 f"({reports / 'evaluation.md'}, {reports / 'evaluation.json'})")
    return "\n".join(lines)


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
