"""Output files: names that cannot leave their folder, the umask honoured, no temporary file left by a kill."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlightning.atomic import safe_child, write_text
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
