"""Running a table of stages: keys, the --force closure, reuse with verification, relocatable records.

A stage is declared once, as a `StageDef` row of `mmlightning.pipeline.table.STAGES`: its name, the
stages it reads, the settings and the input files its output depends on, and the function that makes
it. Everything else is derived here from the rows:

- the plan: one `Planned` stage per row, per row and image source (`shard:tuxpaint`), or per row and
  part (`mmskipgram:A`, one per variant: parts of one stage that can run at once);
- the key of a cached stage: a hash of its settings, the content fingerprints of the files and folders
  it reads (`mmlightning.pipeline.fingerprint`) and the keys of the stages it reads, so a changed
  setting or input file recomputes that stage and every stage after it, and nothing else;
- the `--force` closure: the named stages and every stage that reads them, transitively;
- the folder `<checkpoints>/<label>-<key>/`, a `ResumableOutput`: one record (`record.json`) of the
  settings, written at the start and marked done at the end, holding the outputs *relative to the folder* with each
  file's size and SHA-1, so a finished folder can be moved or copied and reused from anywhere; what
  is reused is verified first (a missing or changed output recomputes the stage).
An interrupted stage keeps its folder and resumes inside it on the next run; a stage that fails
before writing anything leaves no folder behind. `Runner` runs the plan in order, in this process;
`mmlightning.pipeline.parallel` runs independent stages at once, each in a worker process.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from mmlightning.atomic import safe_child
from mmlightning.errors import UserError
from mmlightning.pipeline.fingerprint import Fingerprints
from mmlightning.resumable import ResumableOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageDef:
    """One row of the stage table.

    name: the stage (and its --force name); reads: names of the stages whose outputs it reads (the same
    source's, for a per-source stage; every source's or part's otherwise); per_source: one stage per image
    source; parts(cfg) -> names of independent parts, one stage each (None: one stage); settings(cfg, name) ->
    the settings its output depends on, inputs(cfg, name) -> files / folders whose content it reads (name:
    the source or part, else None); run(ctx) -> its outputs ({name: path} for a cached stage); cached: kept in
    checkpoints/ and reused (else recomputed every run: seconds); enabled(cfg): whether it is part of this
    job; cost: its rough duration relative to the others, which only orders the ready stages of a parallel
    run (the longest chain of costs first); in_worker: a stage that is not cached is computed in a worker of a
    parallel run too (its result comes back pickled), not in the main process.
    """

    name: str
    reads: tuple[str, ...]
    run: Callable[["StageContext"], dict]
    settings: Callable[[Any, Optional[str]], dict] = lambda cfg, source: {}
    inputs: Callable[[Any, Optional[str]], list] = lambda cfg, source: []
    per_source: bool = False
    cached: bool = True
    enabled: Callable[[Any], bool] = lambda cfg: True
    parts: Optional[Callable[[Any], list[str]]] = None
    cost: float = 1.0
    in_worker: bool = False


@dataclass
class Planned:
    """One stage of this job: a row, for one source, one part or for all."""

    row: StageDef
    source: Optional[str]
    label: str
    reads: list[str]
    record: dict = field(default_factory=dict)   # what the key hashes: settings, inputs, upstream keys
    key: str = ""
    dir: Optional[Path] = None
    part: Optional[str] = None
    index: int = 0                               # its place in the plan: the [n] of the log, the summary's order


@dataclass
class StageContext:
    """What a stage's function gets: the config, its source (or part), its folder and the outputs it reads."""

    cfg: Any
    source: Optional[str]
    dir: Optional[Path]
    upstream: dict[str, dict]
    root: Path
    part: Optional[str] = None

    def output(self, name: str) -> dict:
        """Outputs of stage `name` (the same source's for a per-source stage)."""
        label = f"{name}:{self.source}" if f"{name}:{self.source}" in self.upstream else name
        return self.upstream[label]

    def per_source(self, name: str) -> dict[str, dict]:
        """{source: outputs} of the per-source stage `name`, in source order ({part: outputs} of a per-part one)."""
        prefix = f"{name}:"
        return {label[len(prefix):]: out for label, out in self.upstream.items() if label.startswith(prefix)}


def settings_key(record: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable settings (keys sorted, paths as strings)."""
    blob = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def plan(cfg, table: tuple[StageDef, ...], root: Path, fp: Fingerprints) -> list[Planned]:
    """The stages of this job in run order, with their keys (consecutive per-source rows run per source)."""
    sources = list(cfg.sources)
    per_source = {row.name for row in table if row.per_source}
    out: list[Planned] = []
    i = 0
    while i < len(table):
        if not table[i].per_source:
            block, names = [table[i]], [None]
            i += 1
        else:
            j = i
            while j < len(table) and table[j].per_source:
                j += 1
            block, names = table[i:j], sources
            i = j
        for src in names:
            for row in block:
                if row.enabled(cfg):
                    for part in (row.parts(cfg) if row.parts else [None]):
                        out.append(_planned(cfg, row, src, part, per_source, out, root, fp))
    for i, p in enumerate(out):
        p.index = i
    return out


def _planned(cfg, row: StageDef, src, part, per_source: set[str], done: list[Planned], root: Path,
             fp: Fingerprints) -> Planned:
    label = row.name + "".join(f":{n}" for n in (src, part) if n is not None)
    have = {p.label: p for p in done}
    reads = []
    for name in row.reads:
        if name in per_source and src is not None:
            reads += [f"{name}:{src}"] if f"{name}:{src}" in have else []
        elif name in have:
            reads.append(name)
        else:   # every source's (or every part's) outputs
            reads += [lbl for lbl in have if lbl.startswith(f"{name}:")]
    p = Planned(row, src, label, reads, part=part)
    name = src if src is not None else part
    if row.cached:
        p.record = {"stage": row.name, "settings": row.settings(cfg, name),
                    "inputs": [fp.of(path) for path in row.inputs(cfg, name)],
                    "reads": {lbl: have[lbl].key for lbl in reads}}
        p.key = settings_key(p.record)
        p.dir = safe_child(root, f"{label.replace(':', '-')}-{p.key}", what="stage")
    return p


def dependants(table: tuple[StageDef, ...], names: list[str]) -> set[str]:
    """The named stages and every stage that reads them, transitively (by stage name)."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo += [row.name for row in table if name in row.reads]
    return out


def force_closure(planned: list[Planned], force: list[str]) -> set[str]:
    """Labels of the planned stages to recompute: those named in `force` and every stage reading them."""
    out = {p.label for p in planned if p.row.name in force}
    for p in planned:  # run order: a stage's upstream comes before it
        if any(r in out for r in p.reads):
            out.add(p.label)
    return out


def reusable(p: Planned, fp: Fingerprints) -> bool:
    """Finished with these settings, and every recorded output still there with its recorded size and hash."""
    out = ResumableOutput(p.dir, p.record, what=f"{p.label} stage")
    if not out.done():
        return False
    for rel, meta in out.record().get("files", {}).items():
        path = p.dir / rel
        if not path.is_file():
            log.warning("%s: %s is missing; recomputing the stage", p.label, path)
            return False
        if fp.file(path) != meta:
            log.warning("%s: %s changed since the stage finished; recomputing the stage", p.label, path)
            return False
    return True


class Runner:
    """Runs planned stages in order in this process, reusing finished ones, and keeps the timing summary.

    Its steps (`reuse`, `begin`, `finish`, `abandon`) are also what `pipeline.parallel` runs around a stage
    computed in a worker process, so both keep the same records, logs and summary.
    """

    def __init__(self, cfg, root: Path, fp: Fingerprints, forced: set[str]):
        self.cfg, self.root, self.fp, self.forced = cfg, root, fp, forced
        self.outputs: dict[str, dict] = {}
        self._summary: dict[int, dict[str, Any]] = {}

    @property
    def summary(self) -> list[dict[str, Any]]:
        """One entry per stage run or reused, in plan order: stage, status, seconds (+ computed_seconds, dir)."""
        return [self._summary[i] for i in sorted(self._summary)]

    def run_all(self, planned: list[Planned]) -> dict[str, dict]:
        for p in planned:
            self.outputs[p.label] = self.run(p)
        return self.outputs

    def context(self, p: Planned) -> StageContext:
        return StageContext(self.cfg, p.source, p.dir, {lbl: self.outputs[lbl] for lbl in p.reads}, self.root,
                            p.part)

    def run(self, p: Planned) -> dict:
        if not p.row.cached:
            return self.run_uncached(p)
        reused = self.reuse(p)
        if reused is not None:
            return reused
        out = self.begin(p)
        try:
            produced = p.row.run(self.context(p))
        except BaseException:
            self.abandon(p, out)
            raise
        return self.finish(p, out, produced)

    def run_uncached(self, p: Planned) -> dict:
        """A stage recomputed every run (evaluate, release), here in this process."""
        t0 = self.begin_uncached(p)
        return self.finish_uncached(p, t0, p.row.run(self.context(p)))

    def begin_uncached(self, p: Planned) -> float:
        log.info("[%d] %s", p.index + 1, p.label)
        return time.time()

    def finish_uncached(self, p: Planned, t0: float, result: dict) -> dict:
        self._summary[p.index] = {"stage": p.label, "status": "ran", "seconds": round(time.time() - t0, 1)}
        return result

    def reuse(self, p: Planned) -> Optional[dict]:
        """The outputs of a finished, verified stage folder (cleared first if forced); None: compute it."""
        out = ResumableOutput(p.dir, p.record, what=f"{p.label} stage")
        if p.label in self.forced:
            out.clear()
        if not reusable(p, self.fp):
            return None
        rec = out.record()
        log.info("[%d] %s: reused %s (took %ss when computed)", p.index + 1, p.label, p.dir, rec["seconds"])
        self._summary[p.index] = {"stage": p.label, "status": "reused", "seconds": 0.0,
                                  "computed_seconds": rec["seconds"], "dir": str(p.dir)}
        return {k: out.resolve(k) for k in rec["outputs"]}

    def begin(self, p: Planned) -> ResumableOutput:
        """Start computing a cached stage: its record says "started" (an interrupted one resumes in its folder)."""
        log.info("[%d] %s: running -> %s", p.index + 1, p.label, p.dir)
        out = ResumableOutput(p.dir, p.record, what=f"{p.label} stage")
        if out.state() == "done":
            out.clear()  # finished once, but its outputs are gone or changed
        try:
            out.begin()
        except OSError as e:
            raise UserError(f"{p.dir}: cannot write the {p.label} stage here ({e.strerror or e}); make "
                            f"{self.root} writable or pass --checkpoints <a writable folder>") from None
        return out

    def finish(self, p: Planned, out: ResumableOutput, produced: dict) -> dict:
        """Record a computed stage's outputs (relative, with sizes and hashes) and mark it done."""
        rel = {k: out.relative_to_dir(v) for k, v in produced.items()}
        files = {r: self.fp.file(p.dir / r) for r in rel.values() if (p.dir / r).is_file()}
        out.finish(rel, files=files)
        dt = out.record()["seconds"]
        log.info("[%d] %s: done in %ss", p.index + 1, p.label, dt)
        self._summary[p.index] = {"stage": p.label, "status": "ran", "seconds": dt, "computed_seconds": dt,
                                  "dir": str(p.dir)}
        return {k: out.resolve(k) for k in rel}

    def abandon(self, p: Planned, out: ResumableOutput) -> None:
        """A stage that failed: its folder stays to resume, unless nothing was made in it."""
        if p.dir.is_dir() and {q.name for q in p.dir.iterdir()} <= {out.record_file.name}:
            shutil.rmtree(p.dir, ignore_errors=True)
