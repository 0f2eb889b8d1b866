"""Stage functions for tests/test_pipeline_parallel.py: module-level, so a spawned worker process can run them.

Each writes into its own folder (ctx.dir); `cfg.gate` is a folder where stages leave marks for each other,
so a test can prove that two stages ran at once (one waits for the other's mark) without timing anything.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from mmlightning.errors import UserError

WAIT_S = 60.0


def wait_for(path: Path, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared: the stage that writes it did not run at the same time")
        time.sleep(0.02)


def _out(ctx, text: str) -> dict:
    (ctx.dir / "out.txt").write_text(text)
    return {"out": ctx.dir / "out.txt"}


def left(ctx) -> dict:
    """Marks its start, then waits for `right` to have started: only possible when both run at once."""
    gate = Path(ctx.cfg.gate)
    (gate / "left-started").touch()
    wait_for(gate / "right-started")
    return _out(ctx, f"left pid {os.getpid()}")


def right(ctx) -> dict:
    gate = Path(ctx.cfg.gate)
    (gate / "right-started").touch()
    wait_for(gate / "left-started")
    return _out(ctx, f"right pid {os.getpid()}")


def join(ctx) -> dict:
    """Reads both: its output is the two it read, in the order of `reads`."""
    text = " + ".join(Path(ctx.upstream[label]["out"]).read_text().split(" pid")[0] for label in sorted(ctx.upstream))
    return _out(ctx, text)


def bad_input(ctx) -> dict:
    """A user mistake found inside a stage, once the other stage is running."""
    wait_for(Path(ctx.cfg.gate) / "stuck-pid")
    raise UserError("pics: no image could be read", argument="sources")


def stuck(ctx) -> dict:
    """Runs until it is stopped (at most WAIT_S), leaving its pid and some work to resume from."""
    (ctx.dir / "part-0").write_text("resumable work")
    (Path(ctx.cfg.gate) / "stuck-pid").write_text(str(os.getpid()))
    time.sleep(WAIT_S)
    return _out(ctx, "stuck")


def dies(ctx) -> dict:
    os._exit(3)
