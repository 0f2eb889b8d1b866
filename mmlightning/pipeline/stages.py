"""Stage caching for multi-stage jobs: each stage's output lives in a folder keyed by its settings.

    stage = Stage("skipgram", root="checkpoints", settings={"corpus": "gcide", "dim": 100})
    if not stage.done():                      # absent, unfinished or --force'd
        vectors = train(..., output_dir=stage.dir)
        stage.finish({"vectors": str(vectors)})
    outputs = stage.outputs()                 # what finish() recorded

The key is a hash of the stage's settings, which include the keys of the stages it reads, so a changed
setting recomputes that stage and every stage after it, and an unchanged one is reused. `stage.json`
(written atomically, last) marks a finished stage; an interrupted stage has no marker and its own
resume logic continues inside the same folder on the next run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from mmlightning.atomic import write_json

MARKER = "stage.json"


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable settings (paths as strings, keys sorted)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


class Stage:
    """One cached stage: `<root>/<name>-<key>/` plus its `stage.json` marker."""

    def __init__(self, name: str, root: str | Path, settings: dict[str, Any]):
        self.name = name
        self.settings = settings
        self.key = settings_key(settings)
        self.dir = Path(root) / f"{name}-{self.key}"
        self.started = time.time()

    @property
    def marker(self) -> Path:
        return self.dir / MARKER

    def done(self) -> bool:
        return self.marker.is_file()

    def reset(self) -> None:
        """Forget this stage's outputs (for --force): the folder is removed."""
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def begin(self) -> Path:
        self.started = time.time()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / ".stage-settings.json", {"stage": self.name, "key": self.key, "settings": self.settings})
        return self.dir

    def finish(self, outputs: dict[str, Any]) -> dict[str, Any]:
        record = {"stage": self.name, "key": self.key, "settings": self.settings, "outputs": outputs,
                  "seconds": round(time.time() - self.started, 1)}
        write_json(self.marker, record)
        return outputs

    def record(self) -> dict[str, Any]:
        return json.loads(self.marker.read_text())

    def outputs(self) -> dict[str, Any]:
        return self.record()["outputs"]
