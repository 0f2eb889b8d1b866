"""Shards through the webdataset library: brace specs, `pipe:` and http URLs give the local folder's result;
resume refuses rewritten shards; one writer per output folder; leftovers of a killed run are removed."""
import functools
import http.server
import threading

import pytest
import torch

from mmlightning.errors import UserError
from mmlightning.features.aggregates import load_aggregates
from mmlightning.features.extract import run_extraction
from mmlightning.features.writer import AggregateWriter


@pytest.fixture(scope="module")
def local(tmp_path_factory, make_shards, tiny_backbone):
    root = tmp_path_factory.mktemp("wds")
    shards = make_shards(root / "shards", n_shards=3, per_shard=4)
    ref = run_extraction(shards, root / "ref", batch_size=3, num_workers=0, **tiny_backbone)
    return root, shards, load_aggregates(ref / "aggregates.pt")


def _same(out, ref):
    a, meta = load_aggregates(out / "aggregates.pt")
    r, rmeta = ref
    assert meta["images"] == rmeta["images"] == 12 and a.words == r.words and torch.equal(a.count, r.count)
    assert torch.allclose(a.sum, r.sum, atol=1e-6) and torch.allclose(a.max, r.max, atol=1e-6)  # batching may differ
    assert meta["shards_done"] == rmeta["shards_done"]
    return meta


def test_brace_spec(tmp_path, local, tiny_backbone):
    root, shards, ref = local
    out = run_extraction(str(shards / "synth-{000000..000002}.tar"), tmp_path / "o", batch_size=3, num_workers=0,
                         **tiny_backbone)
    _same(out, ref)


def test_pipe_urls_in_two_workers(tmp_path, local, tiny_backbone):
    root, shards, ref = local
    urls = [f"pipe:cat {p}" for p in sorted(shards.glob("*.tar"))]
    out = run_extraction(urls, tmp_path / "o", batch_size=3, num_workers=2, **tiny_backbone)
    meta = _same(out, ref)
    assert all(fp.startswith("url:pipe:cat") for fp in meta["shard_fingerprints"].values())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_urls(tmp_path, local, tiny_backbone):
    root, shards, ref = local
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(shards)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        spec = f"http://127.0.0.1:{port}/synth-{{000000..000002}}.tar"
        out = run_extraction(spec, tmp_path / "o", batch_size=3, num_workers=0, **tiny_backbone)
        _same(out, ref)
        # a missing URL: curl fails, the run ends with the shard's name (issue 22.9: it was exit 0); allowed,
        # the shard is listed as missing and not marked done (a rerun retries it)
        bad = [f"http://127.0.0.1:{port}/none-000000.tar"]
        with pytest.raises(UserError, match="1 of 1 shards could not be read: none-000000.tar .*error: 404"):
            run_extraction(bad, tmp_path / "bad", batch_size=3, num_workers=0, **tiny_backbone)
        run_extraction(bad, tmp_path / "bad", batch_size=3, num_workers=0, allow_missing=True, **tiny_backbone)
        _, meta = load_aggregates(tmp_path / "bad" / "aggregates.pt")
        assert meta["shards_done"] == [] and meta["shards_missing"][0]["shard"] == "none-000000.tar"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_duplicate_shard_entries_are_read_once(tmp_path, local, tiny_backbone):
    root, shards, ref = local
    tars = [str(p) for p in sorted(shards.glob("*.tar"))]
    out = run_extraction(tars + tars[:1] + [str(shards)], tmp_path / "o", batch_size=3, num_workers=0, **tiny_backbone)
    _same(out, ref)


def test_rewritten_shards_are_refused_on_resume(tmp_path, make_shards, tiny_backbone):
    shards = make_shards(tmp_path / "s", n_shards=2, per_shard=3)
    out = run_extraction(shards, tmp_path / "o", batch_size=3, num_workers=0, **tiny_backbone)
    make_shards(tmp_path / "s", n_shards=2, per_shard=5, seed=1)  # same names, other images
    with pytest.raises(UserError, match="holds results for shard synth-000000.tar of other content"):
        run_extraction(shards, out, batch_size=3, num_workers=0, **tiny_backbone)


def test_second_writer_is_refused_and_leftovers_are_removed(tmp_path, make_shards, tiny_backbone):
    from mmlightning.folder_lock import FolderLock

    shards = make_shards(tmp_path / "s", n_shards=1, per_shard=2)
    out = tmp_path / "o"
    (out / "parts").mkdir(parents=True)
    (out / "parts" / ".x.pt.k2j3.tmp").write_bytes(b"half")  # left by a SIGKILL inside atomic_path
    with FolderLock(out, "predict"):
        with pytest.raises(UserError, match=r"\.lock: predict \(pid \d+ on .* is writing this folder"):
            run_extraction(shards, out, batch_size=3, num_workers=0, **tiny_backbone)
    run_extraction(shards, out, batch_size=3, num_workers=0, **tiny_backbone)
    assert not list(out.rglob("*.tmp")) and (out / "aggregates.pt").is_file()


def test_writer_settings_are_checked():
    with pytest.raises(UserError, match="save_every_s"):
        AggregateWriter("x", save_every_s=-1)
