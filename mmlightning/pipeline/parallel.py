"""Running the independent stages of `reproduce` at once, each in a worker process (`jobs:`).

    python -m mmlightning reproduce --config configs/reproduce.yaml               # jobs: auto (2 on 2+ cores)
    python -m mmlightning reproduce --config configs/reproduce.yaml --jobs 1      # one after another, in-process

The plan is a graph: a stage waits for the stages it reads. Whenever a worker is free, the ready stage
with the longest chain of `StageDef.cost` below it starts there (ties: plan order). Reused stages and the
stages recomputed every run (evaluate, release) run in this process, but those marked `in_worker` (the
evaluation's suite and dev/test protocol, which do not wait for MMSkip-gram). On the embedded default the single-core
stages (skip-gram's native kernel, each MMSkip-gram variant) train beside the image stages, which use every
core; there the run is CPU-bound (docs/results.md has its stage times).

The results do not depend on `jobs`: a worker computes a stage exactly as this process would (the same
function and seed, and this process's torch thread count, on which some kernels' results depend;
`tests/test_pipeline_parallel.py` compares the outputs byte for byte).
What differs: the workers' OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless you set it; with
the default spinning, a 2-thread extraction beside a busy process took 40.3 s instead of 23.0 s, 15.0 s
alone), their log lines start with their stage, and two stages' progress bars share the terminal.

A failed stage stops the run: the other workers are stopped (their stages resume on the next run, like
any interrupted stage) and the error is raised here, a UserError as its one line, anything else with the
worker's traceback in its notes. A worker that dies (killed, out of memory) is an error naming its stage;
a worker whose parent dies (SIGKILL) exits at once, so only the next run writes into its stage folder.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Optional

from mmlightning.errors import UserError
from mmlightning.pipeline.stages import Planned, Runner

WAIT_POLICY = "PASSIVE"   # OpenMP threads of a worker sleep at barriers instead of spinning against the others


def resolve_jobs(jobs: int | str, cpus: Optional[int] = None) -> int:
    """`auto` -> 2 where the machine has at least 2 cores, else 1; a number (checked by the config) as it is."""
    if jobs == "auto":
        return 2 if (cpus if cpus is not None else (os.cpu_count() or 1)) >= 2 else 1
    return int(jobs)


def chain_costs(planned: list[Planned]) -> dict[str, float]:
    """label -> its cost plus the longest chain of costs of the stages that read it, transitively."""
    readers: dict[str, list[Planned]] = {p.label: [] for p in planned}
    for p in planned:
        for r in p.reads:
            readers[r].append(p)
    out: dict[str, float] = {}
    for p in reversed(planned):   # plan order: readers come after what they read
        out[p.label] = p.row.cost + max((out[q.label] for q in readers[p.label]), default=0.0)
    return out


def run_parallel(runner: Runner, planned: list[Planned], jobs: int) -> dict[str, dict]:
    """Run the plan with up to `jobs` stages computing at once; the outputs by label, as `Runner.run_all`."""
    rank = chain_costs(planned)
    waiting = sorted(planned, key=lambda p: (-rank[p.label], p.index))
    running: dict[str, tuple[Planned, Any]] = {}
    with Workers(jobs) as workers:
        while waiting or running:
            _start_ready(runner, waiting, running, workers)
            if not running:
                if waiting:   # nothing runs and nothing can start: a stage reads one that is not planned
                    raise RuntimeError(f"stages {[p.label for p in waiting]} wait for stages that never run")
                break
            label, ok, payload = workers.result()
            p, out = running.pop(label)
            if not ok:
                if p.row.cached:
                    runner.abandon(p, out)
                raise payload
            runner.outputs[label] = runner.finish(p, out, payload) if p.row.cached else \
                runner.finish_uncached(p, out, payload)
    return runner.outputs


def _start_ready(runner: Runner, waiting: list[Planned], running: dict, workers: "Workers") -> None:
    """Take every ready stage in order: reuse it or run it here (not cached), else start it in a free worker;
    again while that made more stages ready."""
    progressed = True
    while progressed:
        progressed = False
        for p in [p for p in waiting if all(r in runner.outputs for r in p.reads)]:
            if not p.row.cached and not p.row.in_worker:
                runner.outputs[p.label] = runner.run_uncached(p)
            elif p.row.cached and (reused := runner.reuse(p)) is not None:
                runner.outputs[p.label] = reused
            elif workers.free():
                running[p.label] = (p, runner.begin(p) if p.row.cached else runner.begin_uncached(p))
                workers.submit(p.label, p.row.run, runner.context(p))
            else:
                continue
            waiting.remove(p)
            progressed = progressed or p.label in runner.outputs


class Workers:
    """Up to `n` spawned worker processes, each computing one stage at a time; started when first needed."""

    def __init__(self, n: int):
        self.n = n
        self.ctx = mp.get_context("spawn")   # a fresh interpreter: no torch / OpenMP state copied by fork
        self.results = self.ctx.Queue()
        self.procs: list[tuple[Any, Any]] = []   # (process, its task queue)
        self.busy: dict[int, str] = {}           # worker index -> label of the stage it computes

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(stop=kind is not None)

    def free(self) -> bool:
        return len(self.busy) < self.n

    def submit(self, label: str, run: Callable[[Any], dict], ctx: Any) -> None:
        idle = [i for i in range(len(self.procs)) if i not in self.busy]
        i = idle[0] if idle else self._start()
        self.busy[i] = label
        self.procs[i][1].put((label, run, ctx, _torch_threads()))

    def _start(self) -> int:
        tasks = self.ctx.Queue()
        level = logging.getLogger("mmlightning").getEffectiveLevel()
        proc = self.ctx.Process(target=serve, args=(tasks, self.results, level, os.getpid()), daemon=True,
                                name=f"mmlightning-stage-worker-{len(self.procs)}")
        before = os.environ.get("OMP_WAIT_POLICY")
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)   # the child's environment is copied at start
        try:
            with _caller_script_hidden():
                proc.start()
        finally:
            if before is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
        self.procs.append((proc, tasks))
        return len(self.procs) - 1

    def result(self, poll_s: float = 1.0) -> tuple[str, bool, Any]:
        """(label, ok, outputs or exception) of the next stage to finish; a dead worker is an error."""
        while True:
            try:
                label, ok, payload = self.results.get(timeout=poll_s)
            except queue.Empty:
                for i, label in self.busy.items():
                    proc = self.procs[i][0]
                    if not proc.is_alive():
                        del self.busy[i]
                        return label, False, RuntimeError(
                            f"{label}: the worker process computing this stage died (exit code {proc.exitcode}); "
                            f"rerun to resume it")
                continue
            del self.busy[next(i for i, lbl in self.busy.items() if lbl == label)]
            return label, ok, payload

    def close(self, stop: bool = False) -> None:
        """Let idle workers exit; with `stop` (an error, Ctrl-C) terminate the busy ones too."""
        for i, (proc, tasks) in enumerate(self.procs):
            if stop and i in self.busy:
                proc.terminate()
            else:
                tasks.put(None)
        for proc, _ in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.busy.clear()


def _torch_threads() -> Optional[int]:
    """torch's intra-op threads in this process (results of some kernels depend on it); None before torch is used."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


@contextmanager
def _caller_script_hidden():
    """Start a worker without re-running the caller's script in it (spawn imports `__main__` again unless it
    has neither a module name nor a file): the worker runs `serve` only, so a script without an
    `if __name__ == "__main__":` guard that calls `reproduce` does not run twice."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)


def serve(tasks, results, level: int, parent: int) -> None:
    """A worker's loop: compute (label, run, ctx, torch threads) tasks until None; report (label, ok, outputs or
    error). It ends itself if the process that started it (`parent`) is gone."""
    from mmlightning.logs import quiet_third_party, setup_logging

    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()
    setup_logging(level)
    quiet_third_party()
    stage = _StageLabel()
    for handler in logging.getLogger("mmlightning").handlers:
        handler.addFilter(stage)
    while (task := tasks.get()) is not None:
        label, run, ctx, threads = task
        stage.label = label
        if threads is not None:   # this process's torch threads: the stage computes what it would compute here
            import torch

            torch.set_num_threads(threads)
        try:
            results.put((label, True, run(ctx)))
        except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent, which raises it
            results.put((label, False, portable(e, label)))


def _exit_with(parent: int, poll_s: float = 0.5) -> None:
    """Exit at once when the parent dies (killed with SIGKILL, say): an orphan would go on writing into a stage
    folder that the next run resumes. The stage stays interrupted, and resumes, like any other."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


class _StageLabel(logging.Filter):
    """Starts a worker's log lines with the stage it computes: `[extract:tuxpaint] ...`."""

    label = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"[{self.label}] {record.msg}"
        return True


def portable(e: BaseException, label: str) -> BaseException:
    """The exception to send to the parent: itself if it pickles (a UserError stays one line; anything else
    carries the worker's traceback as a note), else a RuntimeError holding that traceback."""
    if isinstance(e, UserError):
        return e
    text = f"in the worker computing {label}:\n" + "".join(traceback.format_exception(e))
    try:
        e.add_note(text)
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - an exception that does not pickle is sent as text
        return RuntimeError(f"{label}: {type(e).__name__}: {e}\n{text}")
