"""The native kernel's build cache under hostile conditions: folders of other users, truncated or corrupted builds."""
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mmlightning.text.native as native
from mmlightning.text.native import NativeKernel


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory):
    """A working build, as another user would compile it."""
    folder = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMLIGHTNING_NATIVE_DIR", str(folder))
        mp.setattr(NativeKernel, "_loaded", None)
        assert NativeKernel.load() is not None, NativeKernel.why_not
    return folder / f"sgns_kernel-{_key()}.so"


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLIGHTNING_NATIVE_DIR", str(tmp_path / "builds"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(NativeKernel, "_loaded", None)
    return tmp_path / "builds"


def _key() -> str:
    return native._source_hash(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))


def _plant(build: Path, folder: Path) -> Path:
    """A copy of `build` with a matching record, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    so = folder / build.name
    data = build.read_bytes()
    so.write_bytes(data)
    so.with_suffix(".json").write_text(json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    return so


def _loaded_from() -> Path:
    assert NativeKernel.load() is not None, NativeKernel.why_not
    return Path(NativeKernel._loaded.lib._name).parent


def test_a_world_writable_fallback_folder_is_not_trusted(reference_build, fresh_build, tmp_path, monkeypatch, caplog):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MMLIGHTNING_NATIVE_DIR", str(tmp_path / "file" / "sub"))  # unusable: the fallback is tried
    planted = tmp_path / "tmp" / f"mmlightning-native-{os.getuid()}"
    _plant(reference_build, planted)
    planted.chmod(0o777)  # pre-created by another user, open to all
    with caplog.at_level(logging.WARNING):
        where = _loaded_from()
    assert where != planted and "writable by group or others" in caplog.text
    assert not where.exists()  # the private one-off folder is removed once the library is loaded


def test_a_folder_of_another_user_or_a_symlink_is_not_trusted(reference_build, fresh_build, tmp_path, monkeypatch,
                                                              caplog):
    _plant(reference_build, fresh_build)
    fallback = tmp_path / "tmp" / f"mmlightning-native-{os.getuid()}"
    _plant(reference_build, fallback)
    real_uid = os.getuid()
    monkeypatch.setattr(native.os, "getuid", lambda: real_uid + 4242)  # both folders now belong to "someone else"
    (tmp_path / "tmp" / f"mmlightning-native-{real_uid + 4242}").symlink_to(fallback)
    with caplog.at_level(logging.WARNING):
        where = _loaded_from()
    assert where not in (fresh_build, fallback) and "owned by uid" in caplog.text and "symbolic link" in caplog.text


def test_new_build_folders_are_private(fresh_build, tmp_path, monkeypatch):
    assert _loaded_from() == fresh_build
    assert fresh_build.stat().st_mode & 0o077 == 0
    NativeKernel._loaded = None
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MMLIGHTNING_NATIVE_DIR", str(tmp_path / "file" / "sub"))
    where = _loaded_from()
    assert where.parent == tmp_path / "tmp" and where.stat().st_mode & 0o077 == 0


_LOAD = """
import numpy as np
from mmlightning.text.native import NativeKernel
k = NativeKernel.load()
assert k is not None, NativeKernel.why_not
table = (np.ones(50), np.zeros(50, np.int64))
rows = k.list_pairs(np.arange(50, dtype=np.int32), np.zeros(50, np.int32), np.ones(50), table, 2, 1, 7)
print("pairs", len(rows), k.lib._name)
"""


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_cached_build_is_rebuilt_not_run(reference_build, fresh_build, damage):
    so = _plant(reference_build, fresh_build)
    size = so.stat().st_size
    data = bytearray(so.read_bytes())
    if damage == "truncated":
        data = data[:12000]
    else:  # the code pages: the load check would call into them
        data[size // 3: size // 3 + 4000] = bytes(range(256)) * 15 + bytes(160)
    so.write_bytes(bytes(data))
    res = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert "pairs" in res.stdout and so.stat().st_size == size and "rebuilding" in res.stderr
    assert so.read_bytes() != bytes(data)


def test_a_build_without_its_record_is_rebuilt(reference_build, fresh_build, caplog):
    so = _plant(reference_build, fresh_build)
    so.with_suffix(".json").unlink()
    with caplog.at_level(logging.WARNING):
        assert _loaded_from() == fresh_build
    assert "rebuilding" in caplog.text and json.loads(so.with_suffix(".json").read_text())["size"] == so.stat().st_size
    assert sorted(p.name for p in fresh_build.iterdir()) == sorted([so.name, so.with_suffix(".json").name])
