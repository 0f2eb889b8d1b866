"""`reproduce` with several stages at once (mmlightning.pipeline.parallel): the same outputs, byte for byte, as one
stage after another; stages really run at once; a failure stops the other workers; the order of ready stages."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import parallel_stages as stages
from mmlightning.errors import UserError
from mmlightning.pipeline.fingerprint import Fingerprints
from mmlightning.pipeline.parallel import chain_costs, resolve_jobs, run_parallel
from mmlightning.pipeline.stages import Runner, StageDef, plan
from pipeline_world import make_world, run_tiny, statuses

ROOT = Path(__file__).resolve().parents[1]


def _plan(table, tmp_path: Path):
    gate = tmp_path / "gate"
    gate.mkdir(exist_ok=True)
    cfg = SimpleNamespace(sources={}, gate=str(gate))
    root = tmp_path / "ck"
    fp = Fingerprints()
    return Runner(cfg, root, fp, set()), plan(cfg, table, root, fp)


PAIR = (StageDef("left", reads=(), run=stages.left), StageDef("right", reads=(), run=stages.right),
        StageDef("join", reads=("left", "right"), run=stages.join))


def test_independent_stages_run_at_once_in_workers_and_are_reused_after(tmp_path):
    runner, planned = _plan(PAIR, tmp_path)
    outputs = run_parallel(runner, planned, jobs=2)   # left and right each wait for the other's mark: at once or never
    assert Path(outputs["join"]["out"]).read_text() == "left + right"
    pids = {Path(outputs[s]["out"]).read_text().split("pid ")[1] for s in ("left", "right")}
    assert len(pids) == 2 and str(os.getpid()) not in pids          # two worker processes, not this one
    assert [(s["stage"], s["status"]) for s in runner.summary] == [("left", "ran"), ("right", "ran"), ("join", "ran")]

    again, planned = _plan(PAIR, tmp_path)
    run_parallel(again, planned, jobs=2)
    assert {s["status"] for s in again.summary} == {"reused"}


def test_a_user_error_in_a_worker_stops_the_others_and_is_raised_as_itself(tmp_path):
    table = (StageDef("bad", reads=(), run=stages.bad_input), StageDef("stuck", reads=(), run=stages.stuck))
    runner, planned = _plan(table, tmp_path)
    with pytest.raises(UserError) as e:
        run_parallel(runner, planned, jobs=2)
    assert str(e.value) == "sources: pics: no image could be read" and e.value.argument == "sources"
    pid = int((tmp_path / "gate" / "stuck-pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                                   # the other worker was stopped (and reaped), not left running
    bad, stuck = planned
    assert not bad.dir.exists()                           # nothing made: no folder left behind
    assert (stuck.dir / "part-0").is_file()               # an interrupted stage keeps its work to resume from


def test_a_worker_that_dies_is_an_error_naming_its_stage(tmp_path):
    runner, planned = _plan((StageDef("dies", reads=(), run=stages.dies),), tmp_path)
    with pytest.raises(RuntimeError, match=r"dies: the worker process computing this stage died \(exit code 3\)"):
        run_parallel(runner, planned, jobs=2)


def test_ready_stages_start_by_their_longest_chain_of_costs(tmp_path):
    # a (1) -> b (3) -> d (0.5);  c (2) -> d: chains a 4.5, b 3.5, c 2.5, d 0.5
    run = stages.join
    table = (StageDef("a", reads=(), run=run, cost=1), StageDef("c", reads=(), run=run, cost=2),
             StageDef("b", reads=("a",), run=run, cost=3), StageDef("d", reads=("b", "c"), run=run, cost=0.5))
    _, planned = _plan(table, tmp_path)
    assert chain_costs(planned) == {"a": 4.5, "b": 3.5, "c": 2.5, "d": 0.5}


def test_parts_are_stages_of_their_own_read_by_name():
    table = (StageDef("src", reads=(), run=stages.join),
             StageDef("mm", reads=("src",), run=stages.join, parts=lambda cfg: ["A", "B"],
                      settings=lambda cfg, part: {"variant": part}),
             StageDef("eval", reads=("mm",), run=stages.join, cached=False))
    cfg = SimpleNamespace(sources={})
    planned = plan(cfg, table, Path("/tmp/ck"), Fingerprints())
    assert [(p.label, p.part, p.reads) for p in planned] == [
        ("src", None, []), ("mm:A", "A", ["src"]), ("mm:B", "B", ["src"]), ("eval", None, ["mm:A", "mm:B"])]
    assert planned[1].record["settings"] == {"variant": "A"} and planned[1].key != planned[2].key


def test_auto_jobs_is_two_on_a_machine_with_two_cores_or_more():
    assert (resolve_jobs("auto", cpus=1), resolve_jobs("auto", cpus=2), resolve_jobs("auto", cpus=16)) == (1, 2, 2)
    assert resolve_jobs(3) == 3


def _canonical(obj, out: Path) -> bytes:
    """A torch file's content as bytes: tensors by their values, everything else as text with `out` as <out>."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy().tobytes()
    if isinstance(obj, dict):
        return b"{" + b",".join(_canonical(k, out) + b":" + _canonical(v, out) for k, v in obj.items()) + b"}"
    if isinstance(obj, (list, tuple)):
        return b"[" + b",".join(_canonical(v, out) for v in obj) + b"]"
    return repr(obj).replace(str(out), "<out>").encode()


def _digests(folder: Path, out: Path) -> dict[str, str]:
    """md5 of every file a stage made, but its bookkeeping: records (times), the shard lock (a pid), Lightning's
    logs and checkpoints (speeds, paths); torch files by their content, with the run's folder `out` as <out>."""
    def digest(p: Path) -> str:
        data = _canonical(torch.load(p, weights_only=True), out) if p.suffix == ".pt" else p.read_bytes()
        return hashlib.md5(data).hexdigest()

    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("record.json", ".lock", ".shard-record.json")
            and not {"logs", "ckpt"} & set(p.relative_to(folder).parts)}


def test_two_jobs_give_the_same_bytes_as_one_stage_after_another(tmp_path):
    world = make_world(tmp_path / "world")
    one = run_tiny(world, tmp_path / "one", mmskipgram=["A", "B"], jobs=1)
    two = run_tiny(world, tmp_path / "two", mmskipgram=["A", "B"], jobs=2)
    assert statuses(one) == statuses(two)
    assert [s["stage"] for s in two["stages"]][-6:] == ["mmskipgram:A", "mmskipgram:B", "suite", "protocol",
                                                        "evaluate", "release"]   # the evaluation's parts too
    for a, b in zip(one["stages"], two["stages"]):
        if a.get("dir"):
            assert Path(a["dir"]).name == Path(b["dir"]).name             # the same keys
            assert _digests(Path(a["dir"]), tmp_path / "one") == _digests(Path(b["dir"]), tmp_path / "two"), a["stage"]
    text = {k: (tmp_path / k / "rep" / "evaluation.json").read_text().replace(str(tmp_path / k), "<out>")
            for k in ("one", "two")}
    assert text["one"] == text["two"]
    assert two["jobs"] == 2 and one["jobs"] == 1 and two["stages_wall_seconds"] > 0


def test_a_script_without_a_main_guard_is_not_rerun_by_the_workers(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from test_pipeline_parallel import PAIR, _plan
        from mmlightning.pipeline.parallel import run_parallel

        with open({str(tmp_path / 'runs.txt')!r}, "a") as f:
            f.write("ran\\n")
        runner, planned = _plan(PAIR, Path({str(tmp_path)!r}))
        print(Path(run_parallel(runner, planned, jobs=2)["join"]["out"]).read_text())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "left + right"
    assert (tmp_path / "runs.txt").read_text() == "ran\n"


def _exited(pid: int) -> bool:
    """The process is gone, or a zombie waiting for a parent to reap it: it runs no more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_exit_when_the_run_is_killed(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        import parallel_stages as stages
        from test_pipeline_parallel import _plan
        from mmlightning.pipeline.parallel import run_parallel
        from mmlightning.pipeline.stages import StageDef

        runner, planned = _plan((StageDef("stuck", reads=(), run=stages.stuck),), Path({str(tmp_path)!r}))
        run_parallel(runner, planned, jobs=2)
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        stages.wait_for(tmp_path / "gate" / "stuck-pid")
    finally:
        proc.kill()                                   # SIGKILL: no cleanup in the parent
        proc.wait()
    worker = int((tmp_path / "gate" / "stuck-pid").read_text())
    deadline = time.monotonic() + stages.WAIT_S
    while not _exited(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _exited(worker), "the worker outlived the run that started it"
