"""The stage cache: relocatable, verified on reuse, keyed by the content of the files a stage reads."""
from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from mmlightning.errors import UserError
from mmlightning.pipeline import fingerprint
from mmlightning.pipeline.config import ReproduceConfig
from mmlightning.pipeline.fingerprint import Fingerprints
from mmlightning.pipeline.stages import Planned, Runner, StageDef, plan
from mmlightning.pipeline.table import STAGES
from pipeline_world import cached_statuses, first_run, run_tiny, scores, tiny_settings


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """(world, out, summary) of one complete tiny run (shared by the pipeline tests)."""
    return first_run(tmp_path_factory)


def test_cache_copied_elsewhere_is_reused_from_a_third_folder(first, tmp_path, monkeypatch):
    world, out, _ = first
    copy = tmp_path / "elsewhere" / "checkpoints"
    shutil.copytree(out / "ck", copy)
    third = tmp_path / "third"
    # the silent case of issue 11.2: a different stage folder of the same name in the working folder
    for stage in (out / "ck").glob("skipgram-*"):
        decoy = third / "checkpoints" / stage.name
        shutil.copytree(stage, decoy)
        (decoy / "vectors.txt").write_text("2 16\n" + "".join(f"w{i} " + " ".join(["0.5"] * 16) + "\n"
                                                              for i in range(2)))
    monkeypatch.chdir(third)
    again = run_tiny(world, tmp_path, checkpoints=str(copy), reports="reports")
    assert set(cached_statuses(again).values()) == {"reused"}
    assert all(str(copy) in s["dir"] for s in again["stages"] if "dir" in s)
    assert scores(third / "reports") == scores(out / "rep")


def test_a_changed_output_is_not_reused(first, tmp_path):
    world, out, _ = first
    shutil.copytree(out / "ck", tmp_path / "ck")
    vectors = next((tmp_path / "ck").glob("skipgram-*/vectors.txt"))
    vectors.write_text(vectors.read_text().replace("cat ", "cot ", 1))
    again = run_tiny(world, tmp_path)
    assert cached_statuses(again) == {"skipgram": "ran", "shard:pics": "reused", "extract:pics": "reused",
                                      "bovw:pics": "reused"}
    assert scores(tmp_path / "rep") == scores(out / "rep")  # recomputed bit for bit


def test_inputs_are_keyed_by_content_not_by_path(first, tmp_path):
    """A copy of the corpus elsewhere reuses every stage; one changed line recomputes skip-gram only."""
    world, out, _ = first
    shutil.copytree(out / "ck", tmp_path / "ck")
    corpus = tmp_path / "moved" / "corpus.txt"
    corpus.parent.mkdir()
    shutil.copyfile(world / "corpus.txt", corpus)
    same = run_tiny(world, tmp_path, corpus=[str(corpus)])
    assert set(cached_statuses(same).values()) == {"reused"}
    with corpus.open("a") as f:
        f.write("cat dog horse cow the and of\n")
    changed = run_tiny(world, tmp_path, corpus=[str(corpus)])
    assert cached_statuses(changed) == {"skipgram": "ran", "shard:pics": "reused", "extract:pics": "reused",
                                        "bovw:pics": "reused"}


def keys(world: Path, tmp_path: Path, **over) -> dict[str, str]:
    cfg = ReproduceConfig(**tiny_settings(world, tmp_path, **over))
    return {p.label: p.key for p in plan(cfg, STAGES, tmp_path / "ck", Fingerprints()) if p.key}


def test_a_changed_image_or_checkpoint_changes_exactly_the_keys_that_read_it(first, tmp_path):
    world = tmp_path / "w"
    shutil.copytree(first[0], world)
    ckpt = tmp_path / "net.ckpt"
    ckpt.write_bytes(b"weights v1")
    over = {"backbone_kwargs": {"checkpoint": str(ckpt)}}
    before = keys(world, tmp_path, **over)
    assert keys(world, tmp_path, **over) == before  # stable
    ckpt.write_bytes(b"weights v2")                 # same path, new content
    after = keys(world, tmp_path, **over)
    assert {k for k in before if before[k] != after[k]} == {"extract:pics"}
    img = world / "images" / "cat" / "cat0.png"
    img.write_bytes(img.read_bytes() + b"\0")       # one image changes: the shards and what reads them
    again = keys(world, tmp_path, **over)
    assert {k for k in after if after[k] != again[k]} == {"shard:pics", "extract:pics", "bovw:pics"}
    (world / "images" / "cat" / "new.png").write_bytes(img.read_bytes())  # a file added to the folder
    assert keys(world, tmp_path, **over)["shard:pics"] != again["shard:pics"]


def _same_size_edit_mtime_kept(path: Path, old: bytes, new: bytes) -> None:
    """What `cp -p`, `rsync -t` or `touch -r` leave: other bytes, same size, the old modification time."""
    st = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_same_size_edit_with_the_mtime_restored_is_not_reused(first, tmp_path):
    world, out, _ = first
    shutil.copytree(out / "ck", tmp_path / "ck")
    corpus = tmp_path / "corpus.txt"
    shutil.copyfile(world / "corpus.txt", corpus)
    same = run_tiny(world, tmp_path, corpus=[str(corpus)])  # the fingerprint cache now knows this file
    assert set(cached_statuses(same).values()) == {"reused"}
    _same_size_edit_mtime_kept(corpus, b"cat", b"cow")
    changed = run_tiny(world, tmp_path, corpus=[str(corpus)])
    assert cached_statuses(changed)["skipgram"] == "ran"


def test_small_files_are_hashed_on_every_run(tmp_path, monkeypatch):
    calls = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda p, n: calls.append(p) or real(p, n))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha")
    (data / "b.txt").write_text("beta")
    fp = Fingerprints(tmp_path / "fp.json")
    first = fp.of(data)
    assert fp.of(data) == first and len(calls) == 2  # once per run
    fp.save()
    assert Fingerprints(tmp_path / "fp.json").of(data) == first and len(calls) == 4  # again on the next run


def test_huge_files_are_cached_by_size_times_and_inode(tmp_path, monkeypatch):
    """A hash too slow to redo every run is reused while (size, mtime, ctime, inode) hold: ctime changes on
    every write and cannot be set back, so a same-size edit with the mtime restored is seen."""
    calls = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda p, n: calls.append(p) or real(p, n))
    monkeypatch.setattr(fingerprint, "FULL_HASH_MAX", 8)
    big = tmp_path / "big.bin"
    big.write_bytes(b"0123456789" * 10)
    fresh = Fingerprints(tmp_path / "fp.json")
    first = fresh.of(big)
    fresh.save()
    assert Fingerprints(tmp_path / "fp.json").of(big) == first and len(calls) == 2  # just written: not trusted
    monkeypatch.setattr(fingerprint, "RACY_S", 0.0)
    fp = Fingerprints(tmp_path / "fp.json")
    assert fp.of(big) == first and len(calls) == 3
    fp.save()
    assert Fingerprints(tmp_path / "fp.json").of(big) == first and len(calls) == 3  # not read again
    time.sleep(0.05)  # past the clock tick of the file system's timestamps
    _same_size_edit_mtime_kept(big, b"0123", b"abcd")
    assert Fingerprints(tmp_path / "fp.json").of(big) != first and len(calls) == 4


def test_a_huge_tree_is_keyed_by_size_times_and_inode_without_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "BIG_FOLDER_FILES", 1)
    monkeypatch.setattr(fingerprint, "_hash_file", lambda p, n: pytest.fail(f"{p} read"))
    tree = tmp_path / "train" / "n01"
    tree.mkdir(parents=True)
    (tree / "a.jpg").write_bytes(b"jpeg-a")
    (tree / "b.jpg").write_bytes(b"jpeg-b")
    before = Fingerprints().of(tmp_path / "train")
    assert Fingerprints().of(tmp_path / "train") == before
    time.sleep(0.05)
    _same_size_edit_mtime_kept(tree / "a.jpg", b"a", b"A")
    assert Fingerprints().of(tmp_path / "train") != before


def _row(run) -> Planned:
    return Planned(StageDef("boom", reads=(), run=run), None, "boom", [], record={"x": 1}, key="k")


def test_a_failed_stage_leaves_no_empty_folder(tmp_path):
    def fail(ctx):
        raise UserError("no image could be read")

    p = _row(fail)
    p.dir = tmp_path / "ck" / "boom-k"
    with pytest.raises(UserError):
        Runner(None, tmp_path / "ck", Fingerprints(), set()).run(p)
    assert not p.dir.exists()

    def partial(ctx):
        (ctx.dir / "part-0.pt").write_bytes(b"x")  # work an interrupted stage resumes from
        raise KeyboardInterrupt

    p = _row(partial)
    p.dir = tmp_path / "ck" / "boom-k"
    with pytest.raises(KeyboardInterrupt):
        Runner(None, tmp_path / "ck", Fingerprints(), set()).run(p)
    assert (p.dir / "part-0.pt").is_file()


def test_unwritable_checkpoints_fail_in_one_line_before_any_stage(first, tmp_path):
    world = first[0]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the stage outputs") as e:
        run_tiny(world, tmp_path, checkpoints=str(blocker / "ck"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "rep").exists()


def deny_writes_under(monkeypatch, folder: Path) -> None:
    """Creating anything below `folder` raises PermissionError(EACCES), as a chmod 555 folder does for a user
    that is not root (root writes there anyway, so chmod alone cannot test this as root): new folders
    (os.mkdir, hence Path.mkdir / os.makedirs), files opened for writing (Path.open, hence Path.write_*; os.open,
    hence tempfile.mkstemp) and Path.touch."""
    top = os.path.abspath(folder)

    def below(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(top + os.sep)

    def denied(path) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_mkdir, real_os_open, real_open, real_touch = os.mkdir, os.open, Path.open, Path.touch

    def mkdir(path, *args, **kwargs):
        if below(path) and not os.path.exists(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if below(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def path_open(self, mode="r", *args, **kwargs):
        if below(self) and set(mode) & set("wax+"):
            raise denied(self)
        return real_open(self, mode, *args, **kwargs)

    def touch(self, *args, **kwargs):
        if below(self):
            raise denied(self)
        return real_touch(self, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(Path, "open", path_open)
    monkeypatch.setattr(Path, "touch", touch)


def test_read_only_checkpoints_fail_in_one_line(first, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes_under(monkeypatch, ro)  # a read-only folder, for root too
    with pytest.raises(UserError, match="cannot write") as e:
        run_tiny(first[0], tmp_path, checkpoints=str(ro))
    assert "\n" not in str(e.value) and os.strerror(errno.EACCES) in str(e.value), str(e.value)
    assert list(ro.iterdir()) == []


def test_a_read_only_finished_cache_is_still_reused(first, tmp_path, monkeypatch):
    """Reuse writes nothing into checkpoints/ (the fingerprint cache is best effort)."""
    world, out, _ = first
    shutil.copytree(out / "ck", tmp_path / "ck")
    def read_only(*args):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(fingerprint, "write_json", read_only)
    from mmlightning.pipeline import preflight

    real = preflight.check_writable
    seen = []
    monkeypatch.setattr("mmlightning.pipeline.reproduce.check_writable",
                        lambda folder, what: seen.append(what) or real(folder, what))
    again = run_tiny(world, tmp_path)
    assert set(cached_statuses(again).values()) == {"reused"}
    assert seen == ["the reports"]  # checkpoints/ was not even probed
