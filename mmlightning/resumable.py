"""One mechanism for every output that is cached, resumed or reused: settings at start, a marker at the end.

    out = ResumableOutput("checkpoints/skipgram-ab12", settings={"dim": 100, ...}, what="skip-gram run")
    if out.done():                       # finished with exactly these settings: reuse
        return out.outputs()
    out.begin(overwrite=False)           # records the settings; other settings in the folder -> UserError
    ...                                  # the job resumes from whatever it left in out.dir
    out.finish({"vectors": "vectors.txt"})   # the completion marker, written atomically, last

Files in the folder: `.settings.json` (written at `begin`: what is being made here) and `done.json`
(written at `finish`: settings, outputs, seconds). Outputs are recorded as given; paths should be
relative to the folder (`relative_to_dir`) so that a finished folder can be moved or copied and still
be reused (`resolve` turns them back into paths). A folder whose `.settings.json` holds other
settings is refused with one line unless `overwrite`, which clears it first; `on_resume` lets a job
check what an interrupted run left behind before it continues.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from mmlightning.atomic import write_json
from mmlightning.errors import UserError

STARTED = ".settings.json"
DONE = "done.json"


def plain(obj: Any) -> Any:
    """`obj` as plain JSON types (paths and other objects as strings), so settings compare reliably."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class ResumableOutput:
    """A folder made by one set of settings: reused when done, resumed when started, refused when foreign."""

    def __init__(self, folder: str | os.PathLike, settings: dict[str, Any], what: str = "output",
                 started: str = STARTED, done: str = DONE):
        self.dir = Path(folder)
        self.settings = plain(settings)
        self.what = what
        self.started_file, self.done_file = self.dir / started, self.dir / done
        self.t0 = time.time()

    # ----------------------------------------------------------------------------------- reading
    def _read(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep
            raise UserError(f"{path}: unreadable ({e}); delete it to start over") from None

    def done(self) -> bool:
        """Finished, with exactly these settings."""
        rec = self._read(self.done_file)
        return rec is not None and rec.get("settings") == self.settings

    def started(self) -> bool:
        """Begun (perhaps interrupted) with these settings."""
        rec = self._read(self.started_file)
        return rec is not None and rec.get("settings") == self.settings

    def record(self) -> dict:
        rec = self._read(self.done_file)
        if rec is None:
            raise UserError(f"{self.done_file}: not finished")
        return rec

    def outputs(self) -> dict[str, Any]:
        return self.record().get("outputs", {})

    def resolve(self, name: str) -> Path:
        """An output recorded relative to the folder, as a path (absolute outputs stay as they are)."""
        return self.dir / self.outputs()[name]

    # ----------------------------------------------------------------------------------- writing
    def begin(self, overwrite: bool = False, on_resume: Callable[[Path], None] | None = None) -> bool:
        """Record the settings; returns True when resuming an interrupted run with the same settings.

        A folder holding another run (other settings, started or finished) is a UserError unless
        `overwrite`, which removes it. `on_resume(dir)` runs before a resume (e.g. to verify leftovers).
        """
        self.t0 = time.time()
        old = self._read(self.started_file) or self._read(self.done_file)
        if old is not None and old.get("settings") != self.settings:
            if not overwrite:
                raise UserError(f"{self.dir}: holds a {self.what} made with other settings; "
                                f"use another folder or pass overwrite")
            self.clear()
            old = None
        resuming = old is not None
        if resuming and on_resume is not None:
            on_resume(self.dir)
        self.done_file.unlink(missing_ok=True)
        write_json(self.started_file, {"what": self.what, "settings": self.settings})
        return resuming

    def finish(self, outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Write the completion marker (atomically, last); returns `outputs`."""
        outputs = plain(outputs or {})
        write_json(self.done_file, {"what": self.what, "settings": self.settings, "outputs": outputs,
                                    "seconds": round(time.time() - self.t0, 1), **plain(extra)})
        return outputs

    def clear(self) -> None:
        """Remove the folder and everything in it."""
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def relative_to_dir(self, path: str | os.PathLike) -> str:
        """`path` relative to the folder when it lies inside it (for relocatable records), else as given."""
        p = Path(path)
        try:
            return str(p.resolve().relative_to(self.dir.resolve()))
        except ValueError:
            return str(p)
