"""One mechanism for every output that is cached, resumed or reused: one record file per folder.

    out = ResumableOutput("checkpoints/skipgram-ab12", settings={"dim": 100, ...}, what="skip-gram run")
    if out.done():                       # finished with exactly these settings: reuse
        return out.outputs()
    out.begin(overwrite=False)           # records the settings; other settings in the folder -> UserError
    ...                                  # the job resumes from whatever it left in out.dir
    out.finish({"vectors": "vectors.txt"})   # the record becomes "done", written atomically, last

The folder's one record file (`record.json`, or the name given) holds what is made there, its settings
and its state: "started" from `begin`, "done" with the outputs and seconds from `finish`. Outputs are
recorded as given; paths should be relative to the folder (`relative_to_dir`) so that a finished folder
can be moved or copied and still be reused (`resolve` turns them back into paths). A folder whose
record holds other settings is refused with one line unless `overwrite`, which clears it first;
`on_resume` lets a job check what an interrupted run left behind before it continues. Folders written
by earlier versions (two files: settings at start, a marker at the end) are read once and rewritten
as one record.
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

RECORD = "record.json"
LEGACY = (".settings.json", "done.json")   # (started, done) of the earlier two-file layout


def plain(obj: Any) -> Any:
    """`obj` as plain JSON types (paths and other objects as strings), so settings compare reliably."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class ResumableOutput:
    """A folder made by one set of settings: reused when done, resumed when started, refused when foreign."""

    def __init__(self, folder: str | os.PathLike, settings: dict[str, Any], what: str = "output",
                 record: str = RECORD, legacy: tuple[str, str] = LEGACY):
        self.dir = Path(folder)
        self.settings = plain(settings)
        self.what = what
        self.record_file = self.dir / record
        self.legacy = tuple(self.dir / name for name in legacy)
        self.t0 = time.time()

    # ----------------------------------------------------------------------------------- reading
    @staticmethod
    def _read(path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep
            raise UserError(f"{path}: unreadable ({e}); delete it to start over") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}: not a record (a JSON object); delete it to start over")
        return rec

    def _current(self) -> dict | None:
        """The folder's record: the record file, else the earlier layout's (done marker, then start), else None."""
        rec = self._read(self.record_file)
        if rec is not None:
            return rec
        started, done = self.legacy
        old = self._read(done)
        if old is not None:
            return {**old, "state": "done"}
        old = self._read(started)
        return None if old is None else {**old, "state": "started"}

    def exists(self) -> bool:
        """Something (this run or another) was recorded in the folder."""
        return self._current() is not None

    def state(self) -> str | None:
        """"started" or "done" (with whatever settings), None when nothing is recorded."""
        rec = self._current()
        return None if rec is None else rec.get("state")

    def done(self) -> bool:
        """Finished, with exactly these settings."""
        rec = self._current()
        return rec is not None and rec.get("state") == "done" and rec.get("settings") == self.settings

    def started(self) -> bool:
        """Begun (perhaps interrupted, perhaps finished) with these settings."""
        rec = self._current()
        return rec is not None and rec.get("settings") == self.settings

    def record(self) -> dict:
        rec = self._current()
        if rec is None or rec.get("state") != "done":
            raise UserError(f"{self.record_file}: not finished")
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
        old = self._current()
        if old is not None and old.get("settings") != self.settings:
            if not overwrite:
                raise UserError(f"{self.dir}: holds a {self.what} made with other settings; "
                                f"use another folder or pass overwrite")
            self.clear()
            old = None
        resuming = old is not None
        if resuming and on_resume is not None:
            on_resume(self.dir)
        self._write({"what": self.what, "settings": self.settings, "state": "started"})
        return resuming

    def finish(self, outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Mark the record done with its outputs (atomically, last); returns `outputs`."""
        outputs = plain(outputs or {})
        self._write({"what": self.what, "settings": self.settings, "state": "done", "outputs": outputs,
                     "seconds": round(time.time() - self.t0, 1), **plain(extra)})
        return outputs

    def forget(self) -> None:
        """Remove the record (the folder's other files stay): the next `begin` starts afresh."""
        for path in (self.record_file, *self.legacy):
            path.unlink(missing_ok=True)

    def _write(self, rec: dict) -> None:
        write_json(self.record_file, rec)
        for path in self.legacy:   # one record per folder: the earlier layout's files go once rewritten
            path.unlink(missing_ok=True)

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
