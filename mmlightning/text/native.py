"""The compiled SGNS kernel (sgns_kernel.c): built once per machine with the system's C compiler, called via ctypes.

    from mmlightning.text.native import NativeKernel
    kernel = NativeKernel.load()                   # None (with the reason in NativeKernel.why_not) without a compiler
    pairs = kernel.train(syn0, syn1, ids, sent, keep, table, window=5, negative=5, lr0=0.025, lr1=0.02,
                         seed=stretch_seed(1, 0, 3))
    listed = kernel.list_pairs(ids, sent, keep, table, window=5, negative=5, seed=...)   # (P, 2 + K), no training

Why a hand-written kernel: on a CPU the torch update (gathers, a batched dot, two index_add_) spends its
time moving (B, K+1, D) temporaries, and the numpy pairs cost as much again; word2vec.c's loop (one pair
at a time, the vectors in cache, the dot product and the two axpy in SIMD registers) does neither.

The build: `cc -O3 -march=native -fopenmp-simd -shared` into `$MMLIGHTNING_NATIVE_DIR` (default
~/.cache/mmlightning/native), the file named by a hash of the source, the flags, the compiler and this
CPU's flags, written atomically (compile to a temporary name, rename), with its size and SHA-256 in
`sgns_kernel-<key>.json` beside it. A folder is used only if it is yours, not a symbolic link, and not
writable by group or others (new ones are made mode 0700); else the temporary folder's
`mmlightning-native-<uid>` under the same rule, else a fresh private folder for this process only. A
cached build is opened only if its size and SHA-256 match its record (a truncated or damaged library
would crash the process in `dlopen`, before any check could run) and then only used if it reports the
source hash it was built from; else it is rebuilt. ctypes releases the GIL for the call, so threads and
DataLoader worker processes train at once (Hogwild, as word2vec's threads).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmlightning.atomic import write_json
from mmlightning.errors import UserError
from mmlightning.text.sgns import linear_lr

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("sgns_kernel.c")
MAX_NATIVE_DIM = 4096  # the kernel's gradient buffer (sgns_kernel.c)
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11"]
_i64, _f64, _u64, _i32 = ctypes.c_int64, ctypes.c_double, ctypes.c_uint64, ctypes.c_int32
_p = ctypes.c_void_p


def _cpu_signature() -> str:
    """The CPU's model and flags (a build with -march=native runs only where these match)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return os.uname().machine
    keep = [l for l in lines if l.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep))) or os.uname().machine


def build_dir() -> Path:
    """Where builds are kept: $MMLIGHTNING_NATIVE_DIR, else ~/.cache/mmlightning/native."""
    env = os.environ.get("MMLIGHTNING_NATIVE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mmlightning" / "native"


class NativeKernel:
    """The loaded kernel. `load()` builds or reuses it; `train` and `list_pairs` wrap its one C function."""

    why_not: str = ""  # why the last load() gave None
    _loaded: "NativeKernel | None" = None

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.mml_init()
        fn = lib.mml_train_stretch
        fn.restype = _i64
        fn.argtypes = [_p, _p, _i64, _i64, _p, _p, _i64, _p, _p, _p, _i32, _i32, _f64, _f64, _u64, _i64, _p,
                       _p, _i64]
        self._fn = fn

    @classmethod
    def load(cls) -> "NativeKernel | None":
        """The kernel of this process (built on first use, cached per machine), or None if it cannot be built."""
        if cls._loaded is None:
            try:
                cls._loaded = cls(_build_or_reuse())
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                cls.why_not = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                return None
        return cls._loaded

    def train(self, syn0: torch.Tensor, syn1: torch.Tensor, ids: np.ndarray, sent: np.ndarray, keep: np.ndarray,
              table: tuple[np.ndarray, np.ndarray], window: int, negative: int, lr0: float, lr1: float, seed: int,
              loss_every: int = 64) -> tuple[int, float]:
        """Train (V, D) float32 CPU tables in place on one stretch; returns (pairs trained, mean sampled loss)."""
        V, D = syn0.shape
        if syn0.dtype != torch.float32 or syn0.device.type != "cpu" or not syn0.is_contiguous() \
                or not syn1.is_contiguous() or syn1.shape != syn0.shape:
            raise ValueError("native kernel: needs contiguous float32 CPU tables of one shape")
        ids, sent = np.ascontiguousarray(ids, np.int32), np.ascontiguousarray(sent, np.int32)
        loss = np.zeros(2)
        n = self._call(syn0.data_ptr(), syn1.data_ptr(), V, D, ids, sent, keep, table, window, negative, lr0, lr1,
                       seed, loss_every, loss, None, 0)
        return n, float(loss[0] / loss[1]) if loss[1] else float("nan")

    def list_pairs(self, ids: np.ndarray, sent: np.ndarray, keep: np.ndarray, table: tuple[np.ndarray, np.ndarray],
                   window: int, negative: int, seed: int) -> np.ndarray:
        """int64 (P, 2 + K) rows (centre, context, K negatives) the stretch would train, in order; trains nothing."""
        ids, sent = np.ascontiguousarray(ids, np.int32), np.ascontiguousarray(sent, np.int32)
        cap = max(len(ids) * 2 * window, 1)
        out = np.zeros((cap, 2 + negative), np.int64)
        n = self._call(None, None, len(keep), 1, ids, sent, keep, table, window, negative, 0.0, 0.0, seed, 0, None,
                       out, cap)
        return out[:n]

    def _call(self, p0, p1, V, D, ids, sent, keep, table, window, negative, lr0, lr1, seed, loss_every, loss,
              out, cap) -> int:
        keep = np.ascontiguousarray(keep, np.float64)
        accept, alias = (np.ascontiguousarray(table[0], np.float64), np.ascontiguousarray(table[1], np.int64))
        if not (len(keep) == len(accept) == len(alias) == V) or len(ids) != len(sent):
            raise ValueError("native kernel: keep / alias table / ids / sentence ids of inconsistent lengths")
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= V):
            raise ValueError(f"native kernel: word ids outside 0..{V - 1}")
        ptr = (lambda a: None if a is None else a.ctypes.data)
        n = self._fn(p0, p1, V, D, ptr(ids), ptr(sent), len(ids), ptr(keep), ptr(accept), ptr(alias), window,
                     negative, lr0, lr1, seed & 0xFFFFFFFFFFFFFFFF, loss_every, ptr(loss), ptr(out), cap)
        if n < 0:
            why = {-1: "pair buffer too small", -2: f"dim > {MAX_NATIVE_DIM}", -3: "out of memory"}.get(n, "unknown")
            raise RuntimeError(f"native kernel: error {n} ({why})")
        return int(n)


def _source_hash(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    h = hashlib.sha1()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode(), _cpu_signature().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _build_or_reuse() -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    key = _source_hash(cc)
    folder, scratch = _private_folder()
    target = folder / f"sgns_kernel-{key}.so"
    try:
        if not scratch and target.exists():
            lib = _open_verified(target, key)
            if lib is not None:
                return lib
        return _build(cc, key, target)
    finally:
        if scratch:  # the library stays mapped once loaded
            shutil.rmtree(folder, ignore_errors=True)


def _private_folder() -> tuple[Path, bool]:
    """A folder for builds that only this user can write: (folder, True if made for this process only)."""
    for folder in (build_dir(), Path(tempfile.gettempdir()) / f"mmlightning-native-{os.getuid()}"):
        why = _why_not_private(folder)
        if why is None:
            return folder, False
        log.warning("%s: not used for the native kernel's builds", why)
    fresh = Path(tempfile.mkdtemp(prefix="mmlightning-native-"))  # mode 0700
    log.warning("building the native kernel in %s, for this process only", fresh)
    return fresh, True


def _why_not_private(folder: Path) -> str | None:
    """None if `folder` (made mode 0700 if missing) is a real folder of this user that only it can write; else why."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as e:
        return f"{folder}: {e.strerror or e}"
    if stat.S_ISLNK(st.st_mode):
        return f"{folder} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    if st.st_uid != os.getuid():
        return f"{folder} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{folder} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}; chmod go-w it to use it)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return None


def _build(cc: str, key: str, target: Path) -> ctypes.CDLL:
    """Compile the kernel to a temporary name, open it, then rename it to `target` with its record beside it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *FLAGS, f'-DMML_SOURCE_HASH="{key}"', "-o", tmp, str(SOURCE), "-lm"],
                             capture_output=True, text=True, timeout=300)
        if res.returncode:
            raise RuntimeError(f"{cc} failed on {SOURCE.name}: {(res.stderr or res.stdout).strip()[:300]}")
        record = _file_record(Path(tmp))
        lib = _open(Path(tmp), key)  # opened under the temporary name: no other process writes that file
        if lib is None:
            raise RuntimeError(f"{target}: the fresh build does not report its source hash")
        os.replace(tmp, target)
        write_json(_record_path(target), record)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("built the native SGNS kernel: %s", target)
    return lib


def _record_path(target: Path) -> Path:
    return target.with_suffix(".json")


def _file_record(path: Path) -> dict:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _open_verified(target: Path, key: str) -> ctypes.CDLL | None:
    """The cached build at `target` if its size and SHA-256 match its record and it reports `key`, else None."""
    try:
        record = json.loads(_record_path(target).read_text())
        ok = isinstance(record, dict) and record.get("size") == target.stat().st_size \
            and _file_record(target) == {"size": record["size"], "sha256": record.get("sha256")}
    except (OSError, ValueError):
        ok = False
    lib = _open(target, key) if ok else None
    if lib is None:
        log.warning("%s: not the build its record describes (damaged, or no record); rebuilding", target)
    return lib


def _open(path: Path, key: str) -> ctypes.CDLL | None:
    """The library at `path` if it loads and reports `key` as its source hash, else None."""
    try:
        lib = ctypes.CDLL(str(path))
        lib.mml_source_hash.restype = ctypes.c_char_p
        return lib if lib.mml_source_hash().decode() == key else None
    except (OSError, AttributeError):
        return None


@dataclass
class Sampling:
    """What the kernel samples with: keep (V,) float64 probabilities, the alias table of unigram^0.75, window, K."""

    keep: np.ndarray
    table: tuple[np.ndarray, np.ndarray]
    window: int
    negative: int


class NativeTrainer:
    """The native pair mode's `training.ChunkTraining`: trains native chunks {'tokens', 'sent', 'seed', 'epoch',
    'chunk', 'n_chunks'} on (V, D) tables, in place, whole (`parts` must be 1).

    The learning rate runs linearly over the whole run, as ChunkTrainer's: chunk c of n in epoch e spans
    progress (e + c / n) / epochs .. (e + (c + 1) / n) / epochs. Returns {'loss': mean sampled loss, 'pairs'}.
    With `threads` > 1 the chunk is cut into that many contiguous parts (each its own seed and share of
    the learning-rate span) trained at once, lock-free on the same tables (the kernel runs without the GIL);
    pairs across a cut are lost, as across chunks, and the result depends on the number of threads.
    """

    def __init__(self, kernel: NativeKernel, sampling: Sampling, lr: float, min_lr: float, max_epochs: int,
                 threads: int = 1):
        self.kernel, self.sampling = kernel, sampling
        self.lr, self.min_lr, self.max_epochs, self.threads = lr, min_lr, max_epochs, threads
        self._pool = None

    def __call__(self, syn0: torch.Tensor, syn1: torch.Tensor, batch: dict, part: int = 0, parts: int = 1) -> dict:
        if parts != 1:
            raise ValueError("native chunks are trained whole (parts must be 1)")
        s, e = self.sampling, int(batch["epoch"])
        c, n = int(batch["chunk"]), int(batch["n_chunks"])
        lr0 = linear_lr((e + c / n) / self.max_epochs, self.lr, self.min_lr)
        lr1 = linear_lr((e + (c + 1) / n) / self.max_epochs, self.lr, self.min_lr)
        ids, sent, seed = np.asarray(batch["tokens"]), np.asarray(batch["sent"]), int(batch["seed"])
        T = self.threads if len(ids) >= 1024 * self.threads else 1
        if T == 1:
            pairs, loss = self.kernel.train(syn0, syn1, ids, sent, s.keep, s.table, s.window, s.negative, lr0, lr1,
                                            seed)
            return {"loss": loss, "pairs": pairs}
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.threads)
        cuts = np.linspace(0, len(ids), T + 1).astype(int)
        span = lambda f: lr0 + (lr1 - lr0) * f / len(ids)  # noqa: E731 (the rate at corpus position f)
        futures = [self._pool.submit(self.kernel.train, syn0, syn1, ids[a:b], sent[a:b], s.keep, s.table, s.window,
                                     s.negative, span(a), span(b), _part_seed(seed, p))
                   for p, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
        results = [f.result() for f in futures]
        losses = [loss for _, loss in results if loss == loss]
        return {"loss": float(np.mean(losses)) if losses else float("nan"), "pairs": sum(p for p, _ in results)}

    def before_fork(self, V: int, D: int, K1: int) -> None:
        """Nothing to make: workers inherit the loaded kernel."""

    def close(self) -> None:
        """Stop the threads (if any were started)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _part_seed(seed: int, part: int) -> int:
    """The seed of part `part` of a chunk cut for threads (part 0 keeps the chunk's own)."""
    return seed if part == 0 else int(np.random.SeedSequence([seed, part]).generate_state(1, np.uint64)[0]) >> 1


_warned: list[bool] = []  # the fallback is said once per process


def resolve_pairs(pairs: str, device_type: str, argument: str = "pairs", owner: object = None) -> str:
    """'auto' made concrete for a device type: device on an accelerator; on CPU native if the kernel builds, else host.

    A refusal (native without its kernel) names `argument` of `owner` (the datamodule's `pairs`, by default).
    """
    if pairs != "auto":
        if pairs == "native" and NativeKernel.load() is None:
            raise UserError(f"native needs the compiled kernel, which could not be built ({NativeKernel.why_not}); "
                            "use host", argument=argument, owner=owner)
        return pairs
    if device_type != "cpu":
        return "device"
    if NativeKernel.load() is None:
        if not _warned:
            log.warning("the native skip-gram kernel could not be built (%s); making pairs with numpy (slower)",
                        NativeKernel.why_not)
            _warned.append(True)
        return "host"
    return "native"
