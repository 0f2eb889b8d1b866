"""Remote and command shards under hostile servers (issue 22, items 9-11): a local http.server in a thread that
stalls, answers 503, 404 or an HTML page; `pipe:` commands that fail or never end. Every read has a timeout,
retries are bounded, a shard that could not be read is never marked done and ends the run with exit 2 (unless
allow_missing), and skipped-sample counts do not grow across reruns."""
import functools
import http.server
import shutil
import threading
import time
import types

import pytest

from mmlightning.errors import UserError
from mmlightning.features.aggregates import load_aggregates
from mmlightning.features.extract import run_extraction
from mmlightning.images.open_shard import ReadLimits
from mmlightning.images.read_shards import ShardDataModule, batch_samples
from mmlightning.images.shard_urls import ShardRef
from cli_helpers import HangGuard as hang_guard   # SIGALRM: a hang fails the test

FAST = {"connect_timeout_s": 1.0, "stall_timeout_s": 1.0, "shard_timeout_s": 5.0, "retries": 1,
        "retry_backoff_s": 0.05}


class Handler(http.server.SimpleHTTPRequestHandler):
    """/ok/<file> serves the shard folder; /404/, /503/, /html/ and /stall/ misbehave; /flaky/ answers 503 once."""

    release = threading.Event()
    hits: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, _, rest = self.path.lstrip("/").partition("/")
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if kind == "ok" or (kind == "flaky" and Handler.hits[self.path] > 1):
            self.path = "/" + rest
            return super().do_GET()
        if kind in ("404", "503", "flaky"):
            self.send_error(404 if kind == "404" else 503)
        elif kind == "html":
            body = b"<!doctype html><html><body>Sign in to continue</body></html>" * 40
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif kind == "stall":
            data = (self.directory and open(f"{self.directory}/{rest}", "rb").read()) or b""
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:2048])
            self.wfile.flush()
            Handler.release.wait(30)  # the rest never comes (until the test ends)


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_shards):
    shards = make_shards(tmp_path_factory.mktemp("remote") / "shards", n_shards=2, per_shard=3)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(shards)))
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", shards
    Handler.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def read(urls, **limits):
    """(keys, done, failed, problems) of reading `urls` in this process."""
    refs = [ShardRef(u, u.rsplit("/", 1)[-1], "url:" + u) for u in urls]
    keys, done, failed, problems = [], [], [], []
    for b in batch_samples(refs, "imagenet", 4, limits=ReadLimits(**{**FAST, **limits})):
        keys += b["keys"]
        done += b["shards_done"]
        failed += b["shards_failed"]
        problems += b["skipped"]
    return keys, done, failed, problems


def test_a_server_that_stalls_mid_body_times_out(server):
    url, _ = server
    with hang_guard(40):  # the server holds the body back until the module ends
        keys, done, failed, problems = read([f"{url}/stall/synth-000000.tar"])
    assert failed == ["synth-000000.tar"] and done == [] and keys == []
    assert any("synth-000000.tar" == p["shard"] for p in problems)
    # ended by the stall timeout of FAST (1 s), not by the server giving up or the shard timeout
    assert any("sent no data for 1 s (stall_timeout_s)" in p["reason"] for p in problems), problems


def test_503_is_retried_a_bounded_number_of_times_quickly(server, monkeypatch):
    import mmlightning.images.open_shard as open_shard

    url, _ = server
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        time.sleep(seconds)
    # the reader's own pauses only (not subprocess' polls): its `time` module with a recording sleep
    clock = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    clock.sleep = sleep
    monkeypatch.setattr(open_shard, "time", clock)
    with hang_guard(40):
        keys, done, failed, _ = read([f"{url}/503/synth-000000.tar"], retries=2)
    assert failed == ["synth-000000.tar"]
    assert pauses == [0.05, 0.1]  # retry_backoff_s, then twice that: no other wait between the tries
    assert Handler.hits["/503/synth-000000.tar"] == 3  # the first try and 2 retries
    keys, done, failed, _ = read([f"{url}/flaky/synth-000001.tar"])  # 503 once, then the shard
    assert done == ["synth-000001.tar"] and len(keys) == 3 and not failed


def test_404_and_html_with_200_are_failed_shards(server):
    url, _ = server
    with hang_guard(40):
        keys, done, failed, problems = read([f"{url}/404/synth-000000.tar", f"{url}/html/synth-000001.tar"])
    assert failed == ["synth-000000.tar", "synth-000001.tar"] and done == []
    assert Handler.hits["/404/synth-000000.tar"] == 1  # a 404 is not retried
    assert any("not a tar" in p["reason"] for p in problems if p["shard"] == "synth-000001.tar")


def test_a_pipe_command_that_never_ends_is_killed(tmp_path):
    with hang_guard(40):  # far less than the command's 100 s: only the stall timeout can end it in time
        keys, done, failed, problems = read(["pipe:sleep 100 # a.tar", "pipe:false # b.tar"], retries=0)
    assert failed == ["pipe:sleep 100 # a.tar", "pipe:false # b.tar"]
    reasons = " ".join(p["reason"] for p in problems)
    assert "no data for 1" in reasons and "status 1" in reasons
    never_ends = next(p["reason"] for p in problems if p["shard"] == "pipe:sleep 100 # a.tar")
    assert "sent no data for 1 s (stall_timeout_s)" in never_ends


def test_read_settings_are_checked():
    for bad in ({"stall_timeout_s": 0}, {"retries": -1}, {"shard_timeout_s": "x"}):
        with pytest.raises(UserError):
            ShardDataModule("x", **bad)


def test_unreadable_shards_end_the_run_with_their_list_unless_allowed(tmp_path, server, tiny_backbone):
    url, shards = server
    spec = [f"{url}/ok/synth-000000.tar", f"{url}/404/synth-000001.tar", "pipe:false # c.tar"]
    out = tmp_path / "o"
    with hang_guard(60), pytest.raises(UserError, match=r"2 of 3 shards could not be read: synth-000001.tar, "
                                                       r"c.tar.*allow_missing"):
        run_extraction(spec, out, batch_size=4, num_workers=0, read_options=FAST, **tiny_backbone)
    assert not (out / "aggregates.pt").exists() and not (out / "mean.txt").exists()
    for _ in range(2):  # allowed: written, listed; a rerun retries them and the counts do not grow
        with hang_guard(60):
            run_extraction(spec, out, batch_size=4, num_workers=0, read_options=FAST, allow_missing=True,
                           **tiny_backbone)
        _, meta = load_aggregates(out / "aggregates.pt")
        assert meta["shards_done"] == ["synth-000000.tar"] and meta["images"] == 3
        assert [m["shard"] for m in meta["shards_missing"]] == ["synth-000001.tar", "c.tar"]
        assert meta["n_skipped"] == 0 and meta["skipped"] == []
    shutil.copy(shards / "synth-000001.tar", tmp_path / "b.tar")
    spec[1:] = [f"pipe:cat {tmp_path / 'b.tar'}"]  # the shard is back: the rerun reads only it
    run_extraction(spec, out, batch_size=4, num_workers=0, read_options=FAST, **tiny_backbone)
    _, meta = load_aggregates(out / "aggregates.pt")
    assert meta["images"] == 6 and meta["shards_missing"] == [] and len(meta["shards_done"]) == 2


def test_a_reader_that_stops_early_leaves_no_command_running(server):
    import subprocess

    from mmlightning.images.read_shards import tar_samples

    _, shards = server
    url = f"pipe:cat {shards / 'synth-000000.tar'}; sleep 97"
    samples = tar_samples([{"url": url}], {url: ShardRef(url, "a.tar", "")}, ReadLimits(**FAST))
    assert next(samples)["__key__"] == "s0_000"
    samples.close()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 97" not in ps
