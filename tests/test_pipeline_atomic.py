"""Output files: names that cannot leave their folder, the umask honoured, no temporary file left by a kill."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlightning.atomic import clean_stale_temps, safe_child, write_text
from mmlightning.errors import UserError


@pytest.mark.parametrize("names", [("..",), (".",), ("",), ("../x",), ("a/b",), ("/etc",), ("x", ".."),
                                   ("x", "../../y"), ("a\0b",)])
def test_safe_child_refuses_names_that_leave_the_folder(tmp_path, names):
    with pytest.raises(UserError, match="not a plain name") as e:
        safe_child(tmp_path / "out", *names)
    assert "\n" not in str(e.value)


def test_safe_child_joins_plain_names(tmp_path):
    assert safe_child(tmp_path, "pics", "mean.txt") == tmp_path / "pics" / "mean.txt"
    assert safe_child(tmp_path, "..x", "caf\u00e9 o'clock.txt") == tmp_path / "..x" / "caf\u00e9 o'clock.txt"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "report.md", "rho")
    finally:
        os.umask(old)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == mode


KILLED = """
import os, signal, sys, time
from mmlightning.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a png")
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("writing", flush=True)
    time.sleep(60)
"""


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_killed_midway_leaves_no_temporary_file_after_the_next_write(tmp_path):
    reports = tmp_path / "reports"
    run = subprocess.run([sys.executable, "-c", KILLED, str(reports / "figure4_alpha.png"), "kill"])
    assert run.returncode == -9
    stale = _temps(reports)
    assert len(stale) == 1 and stale[0].startswith(".figure4_alpha.png.")
    write_text(reports / "figure4_alpha.png", "a png")  # the rerun
    assert _temps(reports) == [] and (reports / "figure4_alpha.png").read_text() == "a png"


def test_the_temporary_file_of_a_live_writer_is_left_alone(tmp_path):
    reports = tmp_path / "reports"
    live = subprocess.Popen([sys.executable, "-c", KILLED, str(reports / "index.html"), "wait"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "writing"
        assert clean_stale_temps(reports) == [] and len(_temps(reports)) == 1
    finally:
        live.kill()
        live.wait()
    assert len(clean_stale_temps(reports)) == 1 and _temps(reports) == []  # its writer is gone now


def test_only_temporary_files_of_its_own_naming_are_cleaned(tmp_path):
    """Another writer's temporary file (a compiler's output, a mkstemp) is not this module's to remove."""
    (tmp_path / ".kernel.so.k3x9q2ab.tmp").write_bytes(b"being compiled")
    (tmp_path / ".notes.tmp").write_text("mine")
    write_text(tmp_path / "kernel.json", "{}")
    assert _temps(tmp_path) == [".kernel.so.k3x9q2ab.tmp", ".notes.tmp"]
