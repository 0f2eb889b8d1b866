"""Reading WebDataset shards (docs/FORMATS.md) with the `webdataset` library, as a pipeline of named stages.

    dm = ShardDataModule("checkpoints/shards/tuxpaint", batch_size=64, num_workers=2, preprocess="efficientnet")
    dm = ShardDataModule("pipe:aws s3 cp s3://bucket/shards-{000000..000099}.tar -", preprocess="imagenet")
    # predict: each batch is a dict (mmlightning.images.batching.collate), built inside the loader workers

Stages (`webdataset.DataPipeline`, each a plain generator, testable alone):
  wds.SimpleShardList  the shard URLs (mmlightning.images.shard_urls: folders, manifests, globs, brace specs,
                       `pipe:` and http(s) URLs, duplicates dropped)
  split_by_rank        shards of this DDP rank (webdataset's split_by_node, with the rank given explicitly)
  wds.split_by_worker  shards of this data-loader worker: every shard is read by exactly one reader
  tar_samples          open_shard (remote and `pipe:` reads with timeouts and bounded retries) + wds tar
                       iterators + wds.group_by_keys with a handler that records bad members instead of
                       raising; a truncated tar ends its shard (the samples before the cut are kept); an
                       end-of-shard marker follows each shard
  batching.batch_stage decode (PIL, or JPEG bytes left for the accelerator), preprocess, collate, and carry
                       shard completion, shard fingerprints and skipped samples in-band
Bad samples never stop a run: they are skipped, counted and listed in `skipped` of the next batch. Shard
completion travels in-band because Lightning's batch indices are not trustworthy for iterable datasets
under DDP. A shard whose stream fails (a `pipe:` command or curl exiting non-zero, a timeout) or whose
bytes are not a tar (an HTML error page served with status 200, an empty download) is reported in
`shards_failed`, not done: the writer lists it and a rerun reads it again.
`ShardStream.expected_batches`: the batches of one rank from the manifest's sample counts (the progress
bar's total; not a `__len__`, which Lightning would take as a limit).

Trusted: the config (paths, `pipe:` commands). Not trusted: shard bytes, sample .json (bad or too deeply
nested: a counted skip), manifests (a bad one is one UserError; entries must stay inside the shard
folder), remote servers (open_shard). Every rank reads rank 0's record of finished shards.
"""
from __future__ import annotations

import logging
import random
import tarfile
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pytorch_lightning as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmlightning.errors import UserError
from mmlightning.images.batching import (batch_count, batch_stage, decode_sample, pad_batches,  # noqa: F401
                                         sample_words)
from mmlightning.images.preprocess import device_supported, get_scheme
from mmlightning.images.open_shard import ReadLimits, ShardReadError, open_shard
from mmlightning.images.shard_urls import ShardRef, finished_shards, shard_refs

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- list_shards
def list_shards(spec: str | Path | Sequence[str | Path]) -> tuple[list[Path], dict | None]:
    """Local shard paths (manifest order) and the manifest dict or None (for readers of local files only)."""
    refs, manifest = shard_refs(spec)
    remote = [r.url for r in refs if not r.local]
    if remote:
        raise UserError(f"{remote[0]}: a remote shard; this command reads local shard files only")
    return [Path(r.url) for r in refs], manifest


def assign_shards(shards: Sequence, rank: int = 0, world_size: int = 1, worker: int = 0,
                  num_workers: int = 1) -> list:
    """The shards one (rank, worker) reads: round-robin by rank, then by worker (= split_by_rank + split_by_worker)."""
    return list(shards)[rank::world_size][worker::num_workers]


# ---------------------------------------------------------------------------------- stages
def split_by_rank(src: Iterable, rank: int = 0, world_size: int = 1) -> Iterator:
    """webdataset's split_by_node with the rank passed in (loader workers may not see the process group)."""
    yield from islice(src, rank, None, world_size) if world_size > 1 else src


def _members(stream, problems: list[dict], shard: str, stats: dict) -> Iterator[dict]:
    """webdataset's tar member iterator, stopping cleanly (and recording why) at a damaged tar; a stream that
    failed (ShardReadError) just ends it: the caller reports it."""
    def handler(exn: Exception) -> bool:
        if isinstance(exn, ShardReadError):
            return False
        problems.append({"shard": shard, "key": None, "reason": f"bad tar member ({type(exn).__name__}: {exn})"})
        return True

    try:
        for f in wds.tariterators.tar_file_iterator(stream, handler=handler):
            f["__url__"] = shard
            stats["members"] += 1
            yield f
    except ShardReadError:
        pass
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        problems.append({"shard": shard, "key": None, "io": isinstance(e, OSError),
                         "reason": f"truncated or corrupt tar ({type(e).__name__}: {e}); rest of shard lost"})


class _Tail:
    """A read-only stream wrapper that remembers how many bytes passed, the first 32 and the last 1024.

    Python's tarfile ends a stream quietly when it is cut inside a header; a tar written to the end has
    a length that is a multiple of 512 and ends in two zero blocks, so `intact()` tells the two apart."""

    def __init__(self, stream):
        self.stream, self.total, self.head, self.tail = stream, 0, b"", b""

    def read(self, n: int = -1) -> bytes:
        b = self.stream.read(n)
        self.total += len(b)
        self.head = self.head or b[:32]
        self.tail = (self.tail + b[-1024:])[-1024:]
        return b

    def drain(self) -> None:
        while self.read(1 << 16):
            pass

    def intact(self) -> bool:
        return self.total % 512 == 0 and self.total >= 1024 and not self.tail.strip(b"\0")


def _end(stream, tail: _Tail, problems: list[dict], name: str, members: int) -> None:
    """After a shard's members: read the rest, close, and record what makes it failed or truncated."""
    try:
        tail.drain()
    except Exception as e:  # ShardReadError (a timeout, a command or curl that failed) or an I/O error
        problems.append({"shard": name, "key": None, "io": True, "reason": f"stream failed ({e})"})
    finally:
        stream.close()
    if any(p.get("io") for p in problems):
        return
    if members == 0 and not tail.intact():  # an error page, an empty download, garbage: not a failed read of 0 samples
        problems.append({"shard": name, "key": None, "io": True, "reason": f"not a tar ({tail.total} bytes, "
                         f"starting {tail.head!r})"})
    elif not problems and not tail.intact():
        problems.append({"shard": name, "key": None, "reason": f"truncated or corrupt tar (ends "
                         f"after {tail.total} bytes without the end-of-archive blocks)"})


def tar_samples(src: Iterable[dict], refs: dict[str, ShardRef], limits: ReadLimits | None = None) -> Iterator[dict]:
    """{"url"} dicts -> raw samples {"__key__", "__shard__", "<ext>": bytes}, then one end marker per shard:
    {"__end__": name, "__fingerprint__": fp, "__problems__": [...], "__failed__": bool}."""
    for item in src:
        ref = refs[item["url"]]
        problems: list[dict] = []
        stream = None
        try:
            stream = open_shard(ref.url, limits)
        except Exception as e:  # a missing file, a command that cannot start
            problems.append({"shard": ref.name, "key": None, "io": True, "reason": f"cannot open ({e})"})
        if stream is not None:
            def grouping_error(exn: Exception, name=ref.name) -> bool:
                problems.append({"shard": name, "key": None, "reason": f"bad sample ({exn})"})
                return True

            tail, stats = _Tail(stream), {"members": 0}
            members = _members(tail, problems, ref.name, stats)
            try:
                for sample in wds.tariterators.group_by_keys(members, handler=grouping_error):
                    sample["__shard__"] = ref.name
                    sample.pop("__url__", None)
                    yield sample
                _end(stream, tail, problems, ref.name, stats["members"])
            finally:  # also when the reader stops early: no command left running
                stream.close()
        failed = any(p.pop("io", False) for p in problems)  # not done: the writer lists it, a rerun reads it again
        yield {"__end__": ref.name, "__fingerprint__": ref.fingerprint, "__problems__": problems, "__failed__": failed}


def read_shard(path: Path, problems: list[dict]) -> Iterator[dict]:
    """Raw samples of one local tar (for readers outside the data module); its problems go to `problems`."""
    ref = ShardRef(str(path), Path(path).name, "")
    for item in tar_samples([{"url": ref.url}], {ref.url: ref}):
        if "__end__" in item:
            problems.extend(item["__problems__"])
        else:
            item.pop("__shard__", None)
            yield item


def shuffled(src: Iterable, seed: int) -> Iterator:
    """This reader's shards in a seeded random order (its share stays a partition)."""
    items = list(src)
    random.Random(seed).shuffle(items)
    yield from items


def batch_samples(shards: Sequence[Path | str | ShardRef], scheme: str, batch_size: int,
                  limits: ReadLimits | None = None, **kwargs) -> Iterator[dict]:
    """The batches of `shards` read in order in this process (tests, tools); kwargs as `batch_stage`."""
    refs = [s if isinstance(s, ShardRef) else ShardRef(str(s), Path(s).name, "") for s in shards]
    by_url = {r.url: r for r in refs}
    yield from batch_stage(tar_samples(({"url": r.url} for r in refs), by_url, limits), scheme, batch_size, **kwargs)


# ------------------------------------------------------------------------------------- datasets
class ShardStream(IterableDataset):
    """The pipeline for one rank: each data-loader worker reads its own shards and batches them."""

    def __init__(self, shards: Sequence[ShardRef | Path | str], scheme: str, batch_size: int, rank: int = 0,
                 world_size: int = 1, classes: dict[str, int] | None = None, require_words: bool = True,
                 shuffle: bool = False, shuffle_buffer: int = 0, seed: int = 0, decode: str = "pil",
                 source: dict | None = None, limits: ReadLimits | None = None,
                 samples: Sequence[int | None] | None = None):
        self.refs = [s if isinstance(s, ShardRef) else ShardRef(str(s), Path(s).name, "") for s in shards]
        self.samples = list(samples) if samples is not None else [None] * len(self.refs)  # per shard, if known
        self.scheme, self.batch_size, self.rank, self.world_size = scheme, batch_size, rank, world_size
        self.classes, self.require_words, self.shuffle = classes, require_words, shuffle
        self.shuffle_buffer, self.seed, self.decode, self.source = shuffle_buffer, seed, decode, source
        self.limits = limits

    def pipeline(self) -> wds.DataPipeline:
        """The webdataset pipeline (shard list -> rank -> worker -> tar -> batches)."""
        by_url = {r.url: r for r in self.refs}
        stages = [wds.SimpleShardList(list(by_url)) if by_url else (lambda: iter(())),
                  partial(split_by_rank, rank=self.rank, world_size=self.world_size), wds.split_by_worker]
        if self.shuffle:  # torch reseeds workers every epoch
            stages.append(partial(shuffled, seed=self.seed + torch.initial_seed()))
        stages += [partial(tar_samples, refs=by_url, limits=self.limits),
                   partial(batch_stage, scheme=self.scheme, batch_size=self.batch_size, classes=self.classes,
                           require_words=self.require_words, shuffle_buffer=self.shuffle_buffer,
                           decode=self.decode, source=self.source)]
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        want = self.expected_batches(info.num_workers, info.id) if info else self.expected_batches()
        return pad_batches(self.pipeline(), want, self.scheme, self.source)

    def expected_batches(self, num_workers: int = 0, worker: int | None = None) -> int | None:
        """The batches this rank's loader (`num_workers` readers; or only reader `worker`) yields, or None when
        a shard's sample count is unknown: the manifests' counts, with empty batches where samples were skipped
        (pad_batches), so exact unless a manifest undercounts (then more batches come).

        Deliberately not `__len__`: Lightning ends a predict epoch at len() even for an iterable dataset, so a
        wrong count would drop batches (and the end of their shards); it only gives the progress bar a total."""
        counts = list({r.url: n for r, n in zip(self.refs, self.samples)}.values())  # the pipeline's de-duplication
        if self.shuffle or any(n is None for n in counts):
            return None
        readers = max(1, num_workers)
        return sum(batch_count(sum(assign_shards(counts, self.rank, self.world_size, w, readers)), self.batch_size)
                   for w in (range(readers) if worker is None else [worker]))


ILSVRC2012_WNIDS = Path(__file__).parents[1] / "data" / "imagenet" / "ilsvrc2012_wnids.txt"


def _class_file(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: classes file not found")
    return [ln.split()[0] for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")]


def read_classes(classes: Sequence[str] | str | None) -> dict[str, int] | None:
    """Class names (e.g. wnids) -> index, in order, from names, files (one name per line, # comments)
    and the alias `ilsvrc2012` (the 1000 ILSVRC-2012 wnids shipped with the package), concatenated."""
    if classes is None:
        return None
    names: list[str] = []
    for item in [classes] if isinstance(classes, str) else list(classes):
        if item == "ilsvrc2012":
            names += _class_file(ILSVRC2012_WNIDS)
        elif isinstance(classes, str) or "/" in item or item.endswith(".txt"):
            names += _class_file(Path(item))
        else:
            names.append(item)
    if len(set(names)) != len(names):
        raise UserError(f"{classes if isinstance(classes, str) else 'classes'}: duplicate class names")
    return {n: i for i, n in enumerate(names)}


def source_record(spec, manifest: dict | None) -> dict:
    """What the extraction output records about its input (a few manifest fields, not the whole file)."""
    keep = ("format", "source", "n_per_word", "seed", "max_side", "fingerprint", "samples")
    return {"shards": spec if isinstance(spec, str) else [str(s) for s in spec],
            "manifest": {k: manifest[k] for k in keep if k in manifest} if manifest else None}


def manifest_samples(spec, manifest: dict | None, refs: Sequence[ShardRef]) -> list[int | None]:
    """Each shard's sample count as the shard folder's manifest states it (None: no manifest or no count)."""
    counts: dict[str, int] = {}
    if manifest is not None:
        first = Path(spec if isinstance(spec, (str, Path)) else spec[0])
        folder = first if first.is_dir() else first.parent
        for entry in manifest["shards"]:
            n = entry.get("samples")
            if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                counts.setdefault(str(folder / entry["name"]), n)
    return [counts.get(r.url) for r in refs]


class ShardDataModule(pl.LightningDataModule):
    """WebDataset shards for `predict` (feature extraction) and, with `classes`, for `fit` (labels)."""

    def __init__(self, shards: str | list[str], batch_size: int = 64, num_workers: int = 2,
                 preprocess: str | None = None, decode: str = "pil", skip_done_in: str | None = None,
                 classes: list[str] | str | None = None, val_shards: str | list[str] | None = None,
                 train_preprocess: str = "imagenet_train", shuffle_buffer: int = 256, seed: int = 0,
                 connect_timeout_s: float = 30.0, stall_timeout_s: float = 60.0, shard_timeout_s: float = 3600.0,
                 retries: int = 2, retry_backoff_s: float = 1.0):
        """
        Args:
            shards: shard folder (with manifest.json), a .tar, a glob, a brace spec (a-{000000..000099}.tar), a
                `pipe:` or http(s):// URL (e.g. "pipe:aws s3 cp s3://bucket/a-{000000..000099}.tar -"), or a list.
            batch_size: images per batch (batched inside the workers); >= 1.
            num_workers: data-loader worker processes (each reads whole shards); >= 0.
            preprocess: scheme name (mmlightning.images.preprocess) for predict and validation, e.g. efficientnet
                for efficientnet_lite0, imagenet for alexnet1512, gray for bovw; needed for predict.
            decode: "pil" (decode and preprocess in the workers) or "device" (workers pass JPEG bytes; the model
                decodes them with torchvision.io.decode_jpeg on its device and resizes there; other images use PIL).
            skip_done_in: an extraction output folder (the writer's output_dir): shards it records as finished,
                with the same fingerprint, are not read again; a finished shard whose content changed is refused.
            classes: for training: class names (wnids) in output order, or a file with one per line.
            val_shards: shards for validation during fit (optional).
            train_preprocess: augmentation scheme used for fit.
            shuffle_buffer: samples shuffled within this window during fit.
            seed: seed for the shard order during fit.
            connect_timeout_s: http(s) shards: seconds to connect.
            stall_timeout_s: remote and `pipe:` shards: seconds without data before the read fails.
            shard_timeout_s: remote and `pipe:` shards: seconds one shard may take in all (retries included).
            retries: a remote or `pipe:` shard that fails before its first byte is tried again this many
                times (not after an HTTP 4xx other than 408/429), after retry_backoff_s, then twice that, ...
            A shard that still cannot be read is not marked done: the writer lists it and ends the run with
            an error (AggregateWriter.allow_missing finishes without it); a rerun reads it again.
        """
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"{batch_size!r}; it must be an integer >= 1", argument="batch_size", owner=self)
        if not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(f"{num_workers!r}; it must be an integer >= 0 (0: read in the main process)",
                            argument="num_workers", owner=self)
        if decode not in ("pil", "device"):
            raise UserError(f"{decode!r}; use pil or device", argument="decode", owner=self)
        for name in (preprocess, train_preprocess):
            if name is not None:
                get_scheme(name)  # unknown scheme -> UserError now, not in a worker
        if decode == "device" and preprocess is not None and not device_supported(preprocess):
            raise UserError(f"device decoding has no version of scheme {preprocess!r}; use decode: pil",
                            argument="decode", owner=self)
        self.shards, self.batch_size, self.num_workers = shards, batch_size, num_workers
        self.preprocess, self.decode, self.skip_done_in = preprocess, decode, skip_done_in
        self.classes, self.val_shards = classes, val_shards
        self.train_preprocess, self.shuffle_buffer, self.seed = train_preprocess, shuffle_buffer, seed
        self.limits = ReadLimits(connect_timeout_s, stall_timeout_s, shard_timeout_s, retries, retry_backoff_s, self)

    def _loader(self, dataset: ShardStream) -> DataLoader:
        cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=cuda,
                          prefetch_factor=2 if self.num_workers > 0 else None, persistent_workers=False)

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def todo(self) -> tuple[list[ShardRef], dict, list[int | None]]:
        """The shards still to read (finished ones in `skip_done_in` left out), the source record and the
        manifest's sample count of each shard to read (None where unknown)."""
        refs, manifest = shard_refs(self.shards)
        done = finished_shards(self.skip_done_in)
        if self.trainer is not None:  # every rank reads rank 0's record (an output folder per node: issue 22.18)
            done = self.trainer.strategy.broadcast(done, src=0)
        for r in refs:
            if r.name in done and done[r.name] != r.fingerprint:
                raise UserError(f"{self.skip_done_in}: holds results for shard {r.name} of other content (recorded "
                                f"fingerprint {done[r.name] or 'none'}, now {r.fingerprint}); the shards were rewritten: "
                                f"use another output folder or delete this one")
        if done:
            log.info("predict: %d of %d shards already done in %s", sum(r.name in done for r in refs), len(refs),
                     self.skip_done_in)
        todo = [(r, n) for r, n in zip(refs, manifest_samples(self.shards, manifest, refs)) if r.name not in done]
        return [r for r, _ in todo], source_record(self.shards, manifest), [n for _, n in todo]

    def predict_dataloader(self) -> DataLoader:
        todo, source, samples = self.todo()
        if self.preprocess is None:
            raise UserError("name the preprocessing scheme for predict (efficientnet for efficientnet_lite0, imagenet "
                            "for alexnet1512, torchvision, gray for bovw, ...)", argument="preprocess", owner=self)
        rank, world = self._rank()
        if todo and world > 1 and not todo[rank::world]:
            log.warning("predict: rank %d of %d has no shard to read (%d shards left for %d processes); it only "
                        "waits for the others", rank, world, len(todo), world)
        return self._loader(ShardStream(todo, self.preprocess, self.batch_size, rank, world, decode=self.decode,
                                        source=source, limits=self.limits, samples=samples))

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        return self._loader(ShardStream(shard_refs(self.shards)[0], self.train_preprocess, self.batch_size, rank,
                                        world, classes=read_classes(self.classes), require_words=False,
                                        shuffle=True, shuffle_buffer=self.shuffle_buffer, seed=self.seed,
                                        limits=self.limits))

    def val_dataloader(self):
        if self.val_shards is None:
            return []
        rank, world = self._rank()
        return self._loader(ShardStream(shard_refs(self.val_shards)[0], self.preprocess or "imagenet",
                                        self.batch_size, rank, world, classes=read_classes(self.classes),
                                        require_words=False, limits=self.limits))
