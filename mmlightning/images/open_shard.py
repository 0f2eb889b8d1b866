"""Opening one shard for reading: every remote read has a timeout, retries are bounded.

    limits = ReadLimits(connect_timeout_s=30, stall_timeout_s=60, shard_timeout_s=3600, retries=2)
    stream = open_shard("https://host/a-000001.tar", limits)       # .read(n), .close(); ShardReadError on failure
    stream = open_shard("pipe:aws s3 cp s3://b/a-000001.tar -", limits)

What is trusted: local paths and `pipe:` commands come from the user's own config (a command runs in a
shell as written). What is not: remote servers and what a command does. A server may refuse to connect,
stall mid-body, answer an error status, or serve anything (an HTML login page) with status 200; a command
may never end or exit non-zero. The tar reader (read_shards) decides whether the bytes are a tar.

- http(s): curl without a shell: --fail (an error status is a failure), --connect-timeout, --speed-limit 1
  with --speed-time (a stall), --max-time (the whole shard), redirects to http(s) only.
- pipe: `sh -c <command>` in its own process group, stdin closed; killed as a group on a timeout or an
  early close; a non-zero exit status is a failure.
Both: a read that waits over stall_timeout_s for data, or a shard not finished within shard_timeout_s,
fails. A failure before the first byte reached the reader is retried up to `retries` times after
retry_backoff_s, 2 x retry_backoff_s, ... (an HTTP 4xx other than 408 / 429 is not retried); after the
first byte the shard fails (its bytes are consumed) and a rerun reads it again.
"""
from __future__ import annotations

import math
import os
import re
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import InitVar, dataclass

from mmlightning.errors import UserError

SCHEMES = ("pipe:", "http://", "https://")


@dataclass(frozen=True)
class ReadLimits:
    """Timeouts (seconds) and retries of reading one remote or `pipe:` shard (`owner`: the object whose arguments
    they are, e.g. the ShardDataModule, named in a bad value's UserError)."""

    connect_timeout_s: float = 30.0
    stall_timeout_s: float = 60.0
    shard_timeout_s: float = 3600.0
    retries: int = 2
    retry_backoff_s: float = 1.0
    owner: InitVar[object] = None

    def __post_init__(self, owner):
        for name in ("connect_timeout_s", "stall_timeout_s", "shard_timeout_s", "retry_backoff_s"):
            v = getattr(self, name)
            number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not number or not (v >= 0 if name == "retry_backoff_s" else v > 0):
                raise UserError(f"{v!r}; it must be a finite number of seconds "
                                f"{'>= 0' if name == 'retry_backoff_s' else '> 0'}", argument=name, owner=owner)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise UserError(f"{self.retries!r}; it must be an integer >= 0", argument="retries", owner=owner)


class ShardReadError(OSError):
    """A shard whose bytes could not be read (error status, timeout, command failed)."""


def curl_argv(url: str, limits: ReadLimits) -> list[str]:
    return ["curl", "--fail", "--silent", "--show-error", "--location", "--max-redirs", "5",
            "--proto", "=http,https", "--proto-redir", "=http,https",
            "--connect-timeout", f"{limits.connect_timeout_s:g}", "--speed-limit", "1",
            "--speed-time", str(max(1, math.ceil(limits.stall_timeout_s))),
            "--max-time", f"{limits.shard_timeout_s:g}", "--", url]


def open_shard(url: str, limits: ReadLimits | None = None):
    """A binary stream of the shard at `url` (a local path, `file:`, `pipe:` or http(s) URL)."""
    limits = limits or ReadLimits()
    if url.startswith("pipe:"):
        return CommandStream(url[5:], limits, shell=True, what="command")
    if url.startswith(("http://", "https://")):
        return CommandStream(curl_argv(url, limits), limits, shell=False, what="curl")
    if url.startswith("file:"):
        url = url[7:] if url.startswith("file://") else url[5:]
    return open(url, "rb")


def _http_status(text: str) -> int | None:
    m = re.search(r"error:? (\d{3})", text)
    return int(m.group(1)) if m else None


class CommandStream:
    """A command's stdout, read under the limits (module docstring); `error` holds why it failed."""

    def __init__(self, cmd: str | list[str], limits: ReadLimits, shell: bool, what: str):
        self.cmd, self.limits, self.shell, self.what = cmd, limits, shell, what
        self.t0 = time.monotonic()
        self.delivered, self.tries = 0, 0
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        self.tries += 1
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, shell=self.shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        self.eof = False

    # ----------------------------------------------------------------------------- reading
    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        while True:
            if self.error is not None:
                raise ShardReadError(self.error)
            try:
                data = self._read_some(n)
            except ShardReadError as e:
                if not self._retry(str(e)):
                    self.error = str(e)
                    raise
                continue
            self.delivered += len(data)
            return data

    def _left(self) -> float:
        return self.t0 + self.limits.shard_timeout_s - time.monotonic()

    def _read_some(self, n: int) -> bytes:
        if self.eof:
            return b""
        fd = self.proc.stdout.fileno()
        wait = min(self.limits.stall_timeout_s, self._left())
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if wait <= 0 or not poller.poll(wait * 1000):
            self._kill()
            if self._left() <= 0:
                raise ShardReadError(f"{self.what} not finished within shard_timeout_s={self.limits.shard_timeout_s:g}")
            raise ShardReadError(f"{self.what} sent no data for {self.limits.stall_timeout_s:g} s (stall_timeout_s)")
        data = os.read(fd, n)
        if not data:
            self.eof = True
            self._check_exit()
        return data

    def _check_exit(self) -> None:
        try:
            status = self.proc.wait(timeout=max(0.1, min(self.limits.stall_timeout_s, self._left())))
        except subprocess.TimeoutExpired:
            self._kill()
            raise ShardReadError(f"{self.what} closed its output but did not exit") from None
        if status != 0:
            raise ShardReadError(f"{self.what} exited with status {status}{self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            text = self.stderr.read()[-300:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {' '.join(text.split())}" if text else ""

    def _retry(self, reason: str) -> bool:
        """Start again after a backoff when nothing was delivered yet, tries are left and it may help."""
        status = _http_status(reason) if self.what == "curl" else None
        if self.delivered or self.tries > self.limits.retries or (status and 400 <= status < 500
                                                                  and status not in (408, 429)):
            return False
        pause = self.limits.retry_backoff_s * 2 ** (self.tries - 1)
        if pause >= self._left():
            return False
        self._kill()
        self._close_files()
        time.sleep(pause)
        self._start()
        return True

    # ----------------------------------------------------------------------------- ending
    def _kill(self) -> None:
        """SIGKILL the command's process group (its children too, e.g. what `sh -c` started)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _close_files(self) -> None:
        for f in (self.proc.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the command (and its children) if it still runs; nothing is raised. Closing twice is a no-op."""
        if self.proc is not None:
            self._kill()
            self._close_files()
            self.proc = None

    def __str__(self) -> str:
        return f"<{self.what} {self.cmd if self.shell else self.cmd[-1]}>"
