"""The `shard` command: WebDataset shards + manifest in the docs/FORMATS.md format, resumable, with coverage."""
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from mmlightning import cli
from mmlightning.errors import UserError
from mmlightning.images.write_shards import PROGRESS, resolve_words, sample_key, shard
from cli_helpers import assert_user_error, in_thread, run


def img(path: Path, size=(8, 6), color=(200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA" if len(color) == 4 else "RGB", size, color).save(path)
    return path


@pytest.fixture
def esp(tmp_path):
    """An ESP-layout source: 6 images, one shared by two words, one transparent, one undecodable."""
    root = tmp_path / "esp"
    tags = {"1": "dog\ngrass", "2": "dogs", "3": "cat", "4": "cat\nsky", "5": "sky", "6": "cat"}
    for name, t in tags.items():
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.png.desc").write_text(t)
        img(root / "images" / f"{name}.png")
    img(root / "images" / "4.png", size=(1000, 250), color=(255, 0, 0, 0))   # transparent, wide
    (root / "images" / "6.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")          # listed as skipped
    bench = tmp_path / "bench.txt"
    bench.write_text("dog cat 5\ncat sky 3\ndog grass 4\nemu sky 1\n")
    words = tmp_path / "words.txt"
    words.write_text("# concept words\ndog\ncat\nsky\ngrass\nemu\n")
    return root, bench, words


def read_shards(out: Path, manifest: dict) -> list[dict]:
    samples = {}
    for s in manifest["shards"]:
        with tarfile.open(out / s["name"]) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [dict(v, __key__=k) for k, v in sorted(samples.items())]


def test_shards_and_manifest(esp, tmp_path, capsys):
    root, bench, words = esp
    out = tmp_path / "out"
    path = shard("esp", str(out), root=str(root), words=str(words), benchmarks=[str(bench)],
                 n_per_word=5, seed=3, max_side=64, samples_per_shard=2, prefix="esp", workers=2)
    assert path == out / "manifest.json"
    m = json.loads(path.read_text())
    assert m["format"] == "mmlightning-shards/1" and m["source"] == "esp"
    assert (m["n_per_word"], m["seed"], m["max_side"]) == (5, 3, 64)
    assert [s["name"] for s in m["shards"]] == ["esp-000000.tar", "esp-000001.tar", "esp-000002.tar"]
    assert m["samples"] == sum(s["samples"] for s in m["shards"]) == 5      # 6 distinct images, 1 undecodable
    assert m["word_counts"] == {"cat": 2, "dog": 2, "grass": 1, "sky": 2}
    assert [s["path"].endswith("6.png") and "cannot decode" in s["reason"] for s in m["skipped"]] == [True]
    assert m["skipped"][0]["words"] == ["cat"]
    assert "emu" in m["missing_words"]
    assert m["coverage"]["bench"] == {"words": 5, "words_with_images": 4, "pairs": 4, "pairs_with_images": 3}
    assert "coverage bench: 4/5 words, 3/4 pairs with images" in capsys.readouterr().out
    assert not (out / PROGRESS).exists()

    samples = read_shards(out, m)
    with tarfile.open(out / "esp-000000.tar") as tar:    # webdataset's TarWriter, fixed metadata
        assert {(t.mtime, t.uname, t.mode) for t in tar.getmembers()} == {(0, "", 0o644)}
    assert len(samples) == 5 and all("." not in s["__key__"] for s in samples)
    meta = {Path(json.loads(s["json"])["path"]).name: json.loads(s["json"]) for s in samples}
    assert meta["1.png"]["words"] == ["dog", "grass"]                  # one sample, all its words
    assert meta["1.png"]["source"] == "esp" and meta["1.png"]["label"] is None
    wide = next(s for s in samples if s["__key__"].endswith("_4"))
    im = Image.open(__import__("io").BytesIO(wide["png"]))
    assert im.mode == "RGB" and im.size == (64, 16)                    # longest side capped
    assert im.getpixel((3, 3)) == (255, 255, 255)                      # transparency on white


def test_webdataset_reads_the_shards(esp, tmp_path):
    import webdataset as wds

    root, bench, words = esp
    out = tmp_path / "out"
    shard("esp", str(out), root=str(root), words=str(words), benchmarks=[str(bench)], samples_per_shard=10)
    ds = wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False).decode("pil")
    got = list(ds)
    assert len(got) == 5 and all(s["png"].mode == "RGB" and s["json"]["words"] for s in got)


def test_killed_run_resumes_and_other_settings_are_refused(esp, tmp_path, capsys, monkeypatch):
    import mmlightning.images.write_shards as shard_mod

    root, bench, words = esp
    kw = dict(root=str(root), words=str(words), benchmarks=[str(bench)], samples_per_shard=2)
    clean = tmp_path / "clean"
    shard("esp", str(clean), **kw)
    capsys.readouterr()
    shard("esp", str(clean), **kw)                                      # up to date: nothing rewritten
    assert "up to date" in capsys.readouterr().out

    out = tmp_path / "out"
    real_write, calls = shard_mod._write_tar, []

    def dies_on_second_shard(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(shard_mod, "_write_tar", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        shard("esp", str(out), **kw)
    assert not (out / "manifest.json").exists()                         # no half manifest
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar"]   # no half shard either
    mtime = (out / "shard-000000.tar").stat().st_mtime_ns
    monkeypatch.setattr(shard_mod, "_write_tar", real_write)
    shard("esp", str(out), **kw)
    assert (out / "shard-000000.tar").stat().st_mtime_ns == mtime      # finished shard reused
    assert (out / "manifest.json").read_text() == (clean / "manifest.json").read_text()
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == \
        {p.name: p.read_bytes() for p in clean.glob("*.tar")}
    with pytest.raises(UserError, match="other settings"):
        shard("esp", str(out), seed=1, n_per_word=1, **kw)
    shard("esp", str(out), n_per_word=1, overwrite=True, **kw)
    assert json.loads((out / "manifest.json").read_text())["n_per_word"] == 1


def test_same_seed_same_shards(esp, tmp_path):
    root, bench, words = esp
    kw = dict(root=str(root), words=str(words), benchmarks=[str(bench)], n_per_word=1)
    a = json.loads(shard("esp", str(tmp_path / "a"), seed=7, **kw).read_text())
    b = json.loads(shard("esp", str(tmp_path / "b"), seed=7, **kw).read_text())
    assert a["fingerprint"] == b["fingerprint"] and a["word_counts"] == b["word_counts"]
    tars = sorted(p.name for p in (tmp_path / "a").glob("*.tar"))
    assert tars and all((tmp_path / "a" / t).read_bytes() == (tmp_path / "b" / t).read_bytes() for t in tars)


def test_leftovers_are_removed_and_a_second_writer_is_refused(esp, tmp_path):
    from mmlightning.folder_lock import FolderLock

    root, bench, words = esp
    kw = dict(root=str(root), words=str(words), benchmarks=[str(bench)])
    out = tmp_path / "out"
    out.mkdir()
    (out / ".shard-000000.tar.abc123.tmp").write_bytes(b"half a shard")   # what a SIGKILL leaves
    with FolderLock(out, "another shard run"):
        with pytest.raises(UserError, match=r"\.lock: another shard run \(pid \d+ on .*is writing this folder"):
            shard("esp", str(out), **kw)
    shard("esp", str(out), **kw)
    assert not list(out.glob("*.tmp")) and json.loads((out / ".shard-record.json").read_text())["state"] == "done"


def test_resolve_words(tmp_path):
    assert "tiger" in resolve_words(None, ["men", "ws353"])
    assert len(resolve_words("ws353", [])) == len(resolve_words(None, ["ws353"]))
    bad = tmp_path / "w.txt"
    bad.write_text("cat\nhot dog\n")
    with pytest.raises(UserError, match=r"w.txt:2: expected one word per line"):
        resolve_words(str(bad), [])
    with pytest.raises(UserError, match="no such word list"):
        resolve_words(str(tmp_path / "none.txt"), [])


def test_sample_key_has_no_dots():
    assert sample_key(3, "/a/b/v.2_chip.x.png") == "0000003_v_2_chip_x"
    assert sample_key(12, "/t/n01.tar::n01/n01_5.JPEG") == "0000012_n01_5"


def test_cli_runs_and_reports_user_errors(esp, tmp_path, capsys):
    import logging
    import sys

    cli.setup_logging()
    for h in logging.getLogger("mmlightning").handlers:  # the CLI's log handler writes to this test's stderr
        if getattr(h, "_mmlightning", False):
            h.stream = sys.stderr
    root, bench, words = esp
    out = tmp_path / "cli"
    assert cli.main(["shard", "--source", "esp", "--root", str(root), "--output_dir", str(out),
                     "--words", str(words), "--benchmarks", f"[{bench}]", "--n_per_word", "2"]) == 0
    assert (out / "manifest.json").is_file()
    assert cli.main(["shard", "--source", "esp", "--root", str(tmp_path / "nowhere"),
                     "--output_dir", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and err[0].startswith("mmlightning shard: error:") and "no such folder" in err[0]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/tuxpaint/stamps").is_dir(), reason="needs tuxpaint-stamps-default")
def test_real_tuxpaint_shard(tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("apple\ncat\ntruck\nbanana\nunobtainium\n")
    m = json.loads(shard("tuxpaint", str(tmp_path / "tux"), words=str(words), benchmarks=["men"],
                         n_per_word=3).read_text())
    assert set(m["word_counts"]) == {"apple", "cat", "truck", "banana"} and not m["skipped"]
    assert all(c <= 3 for c in m["word_counts"].values())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/openclipart/svg").is_dir(), reason="needs openclipart-png/-svg")
def test_real_openclipart_giant_png_is_rendered_small():
    from mmlightning.images.sources.base import ImageRef
    from mmlightning.images.sources.imageio import load_image

    rel = "signs_and_symbols/stop_sign_miguel_s_nchez_"           # a 623-megapixel PNG
    ref = ImageRef(f"/usr/share/openclipart/png/{rel}.png", fallback_svg=f"/usr/share/openclipart/svg/{rel}.svg")
    im = load_image(ref, max_side=256)
    assert max(im.size) == 256 and im.mode == "RGB"


def test_min_shards_splits_a_small_source_for_every_worker(esp, tmp_path):
    """samples_per_shard 1000 on 5 images would make one shard: min_shards 3 makes three smaller ones."""
    from mmlightning.images.write_shards import shard_size

    assert shard_size(5, 1000, 1) == 1000 and shard_size(5, 1000, 3) == 2 and shard_size(5, 2, 2) == 2
    assert shard_size(1, 1000, 8) == 1
    root, bench, words = esp
    path = shard("esp", str(tmp_path / "out"), root=str(root), words=str(words), benchmarks=[str(bench)],
                 n_per_word=5, seed=3, max_side=64, samples_per_shard=1000, min_shards=3, workers=1)
    m = json.loads(path.read_text())
    assert len(m["shards"]) == 3 and m["samples"] == 5
    with pytest.raises(UserError, match="min_shards"):
        shard("esp", str(tmp_path / "bad"), root=str(root), words=str(words), min_shards=0)


def test_lock_waits_for_the_orphans_of_a_dead_holder_but_not_for_a_live_one(tmp_path, monkeypatch):
    """A killed run's loader workers keep its flock for a moment: the next run waits for them, not for a live run.

    No clock: the orphan holds the lock until the test closes its stdin, and the waiter reports each look at the
    holder; a generous join only fails a waiter that hangs (orphan_wait_s is far longer than the join)."""
    import socket
    import subprocess
    import sys
    import threading

    import mmlightning.folder_lock as folder_lock
    from mmlightning.folder_lock import FolderLock

    looks: list[bool] = []            # what each look at the holder found: dead (wait for its orphans) or alive
    looked = threading.Event()
    real_holder_dead = folder_lock._holder_dead

    def holder_dead(holder: str) -> bool:
        looks.append(real_holder_dead(holder))
        looked.set()
        return looks[-1]
    monkeypatch.setattr(folder_lock, "_holder_dead", holder_dead)

    def hold(pid: int) -> subprocess.Popen:
        """A process holding the folder's lock in the name of `pid` until its stdin is closed."""
        code = (f"import fcntl, os, sys; fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT); "
                f"fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
                f"os.write(fd, b'predict (pid {pid} on {socket.gethostname()}, since now)'); "
                f"print('held', flush=True); sys.stdin.read()")
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        return proc

    # a pid that does not exist: the holder is "dead", its orphan still holds the lock until released
    dead = hold(2 ** 22 + 12345)
    released = threading.Event()

    def take():
        with FolderLock(tmp_path, "predict", orphan_wait_s=600):
            return released.is_set()
    try:
        waiter, box = in_thread(take)
        assert looked.wait(120), "the waiter never looked at the holder"
        assert looks[0] is True and waiter.is_alive() and not box, (looks, box)  # waiting, not refusing
        released.set()
        dead.stdin.close()                       # the orphan exits: the kernel releases its lock
        dead.wait(timeout=120)
        waiter.join(timeout=120)
        assert not waiter.is_alive(), "the lock was not taken after the orphan exited (a hang)"
        assert box == {"value": True}, box       # taken, and only once the orphan was gone
    finally:
        dead.kill()
        dead.wait()
    looks.clear()
    alive = hold(os.getpid())  # a live holder: refused at once, after one look
    try:
        refuser, box = in_thread(lambda: FolderLock(tmp_path, "predict", orphan_wait_s=600).acquire())
        refuser.join(timeout=120)
        assert not refuser.is_alive(), "waited for a live holder (a hang)"
        assert isinstance(box.get("error"), UserError) and "is writing this folder" in str(box["error"]), box
        assert looks == [False]
    finally:
        alive.kill()
        alive.wait()


# ---------------------------------------------------------------- hostile inputs (issue 22)


def test_item08_word_list_with_a_bom(tmp_path):
    words = tmp_path / "w.txt"
    words.write_bytes(b"\xef\xbb\xbfdog\ncat\n")
    assert resolve_words(str(words), []) == ["cat", "dog"]


def _shard_within(timeout, fifos, *args, **kwargs):
    """shard(...) in a daemon thread; a regression that blocks on a FIFO fails the test instead of hanging it."""
    from test_sources import call_with_timeout

    return call_with_timeout(lambda: shard(*args, **kwargs), fifos, timeout)


def test_item12_fifo_in_a_word_folder_and_the_size_cap(tmp_path):
    root = tmp_path / "photos"
    img(root / "cat" / "a.png")
    img(root / "dog" / "b.png")
    noisy = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    noisy.save(root / "dog" / "big.png")                       # ~12 kB, over a 0.005 MiB cap
    os.mkfifo(root / "cat" / "zz.png")
    words = tmp_path / "w.txt"
    words.write_text("cat\ndog\n")
    kw = dict(root=str(root), words=str(words), benchmarks=[], workers=1)
    m = json.loads(_shard_within(120, [root / "cat" / "zz.png"], "folder", str(tmp_path / "out"), **kw).read_text())
    assert m["word_counts"] == {"cat": 1, "dog": 2}
    assert [(Path(s["path"]).name, "not a regular file" in s["reason"]) for s in m["skipped"]] == [("zz.png", True)]
    m = json.loads(shard("folder", str(tmp_path / "capped"), max_image_mb=0.005, **kw).read_text())
    assert m["word_counts"] == {"cat": 1, "dog": 1} and m["max_image_mb"] == 0.005
    reasons = {Path(s["path"]).name: s["reason"] for s in m["skipped"]}
    assert "larger than the 0.005 MiB cap" in reasons["big.png"]
    with pytest.raises(UserError, match="max_image_mb"):
        shard("folder", str(tmp_path / "bad"), max_image_mb=0, **kw)


def test_item15_disk_full_is_one_line_and_the_rerun_resumes(esp, tmp_path, monkeypatch, capsys):
    import errno

    import webdataset as wds

    import mmlightning.images.write_shards as shard_mod

    root, bench, words = esp
    kw = dict(root=str(root), words=str(words), benchmarks=[str(bench)], samples_per_shard=2, workers=1)
    clean = tmp_path / "clean"
    shard("esp", str(clean), **kw)
    out = tmp_path / "out"
    real_write, calls = wds.TarWriter.write, []

    def full_on_third_sample(self, obj):
        calls.append(obj["__key__"])
        if len(calls) == 3:                                      # the second shard's first sample
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, obj)

    monkeypatch.setattr(wds.TarWriter, "write", full_on_third_sample)
    with pytest.raises(UserError) as e:
        shard("esp", str(out), **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(out) in msg and "no space left" in msg.lower()
    assert "1 of 3 shards finished and kept" in msg and "rerun" in msg
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar"] and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(wds.TarWriter, "write", real_write)

    real_json = shard_mod.write_json

    def full_at_manifest(path, obj):
        if Path(path).name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_json(path, obj)

    monkeypatch.setattr(shard_mod, "write_json", full_at_manifest)
    with pytest.raises(UserError, match=r"3 of 3 shards finished and kept"):
        shard("esp", str(out), **kw)
    monkeypatch.setattr(shard_mod, "write_json", real_json)
    shard("esp", str(out), **kw)                                 # space freed: resumes
    assert (out / "manifest.json").read_text() == (clean / "manifest.json").read_text()
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {p.name: p.read_bytes() for p in clean.glob("*.tar")}
    assert cli.user_error_message(e.value) == msg


def test_minor_shard_prefix_cannot_leave_the_output_folder(esp, tmp_path, monkeypatch):
    root, bench, words = esp
    kw = dict(root=str(root), words=str(words), benchmarks=[str(bench)])
    monkeypatch.chdir(tmp_path / "esp")
    with pytest.raises(UserError, match="unknown image source"):   # the default output_dir names the source
        shard("../../escaped", **kw)
    for prefix in ("../escaped", "a/b", "", ".hidden", "x\0y"):
        with pytest.raises(UserError, match="prefix"):
            shard("esp", str(tmp_path / "out" / "inner"), prefix=prefix, **kw)
    assert not list(tmp_path.glob("**/escaped*")) and not (tmp_path / "out" / "escaped-000000.tar").exists()
    shard("esp", str(tmp_path / "ok"), prefix="esp_v2.1", **kw)
    assert (tmp_path / "ok" / "esp_v2.1-000000.tar").is_file()


# ---------------------------------------------------------------- bad input through the CLI (issue 11)
def test_item10_shard_output_dir_under_a_file(tmp_path, world, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(["shard", "--source", "folder", "--root", world / "images", "--benchmarks",
                        f"[{world / 'bench.txt'}]", "--output_dir", blocker / "shards"], capsys)
    assert_user_error(code, err, "shard", str(blocker / "shards"), f"{blocker} is a file")


def test_shard_unknown_source(tmp_path, capsys):
    code, _, err = run(["shard", "--source", "nosuchsource", "--output_dir", tmp_path / "out"], capsys)
    assert code == 2 and "Traceback" not in err and "nosuchsource" in err


def test_shard_missing_root(tmp_path, bench, capsys):
    code, _, err = run(["shard", "--source", "folder", "--root", tmp_path / "absent", "--benchmarks", f"[{bench}]",
                        "--output_dir", tmp_path / "out"], capsys)
    assert_user_error(code, err, "shard", "absent")
