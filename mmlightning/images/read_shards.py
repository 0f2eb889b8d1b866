"""Reading WebDataset shards (docs/FORMATS.md) as a pipeline of small named stages.

    dm = ShardDataModule("checkpoints/shards/tuxpaint", batch_size=64, num_workers=2)
    # predict: each batch is a dict (see `collate`), built inside the data-loader workers:
    #   images (B, C, H, W) float32 | keys [B] | words [B][*] | shards [B] | labels (B,) int64 (-1: none)
    #   shards_done [shard names whose last sample is in this batch or before] | skipped [{shard, key, reason}]

Stages, in order (each a plain function or generator, testable alone):
  list_shards      a directory (its manifest.json, else *.tar), a .tar, a glob or a list -> shard paths
  assign_shards    split by rank (DDP) and then by data-loader worker: every shard is read by one reader
  read_shard       tar members grouped by `__key__` -> raw samples; a truncated/corrupt tar ends the shard
  decode_sample    raw sample -> (PIL image, meta) or a skip reason (empty, not an image, bad json, ...)
  batch_samples    preprocess, collate and attach shard completion / skipped samples to each batch
Bad samples never stop a run: they are skipped, counted and listed in `skipped` of the batch that
follows them, so the consumer (the extraction writer) can record them. Shard completion is reported
in-band because Lightning's batch indices are not trustworthy for iterable datasets under DDP.
"""
from __future__ import annotations

import glob
import io
import json
import random
import tarfile
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmlightning.errors import UserError
from mmlightning.images.preprocess import get_scheme

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "gif", "tif", "tiff")


# --------------------------------------------------------------------------------- list_shards
def list_shards(spec: str | Path | Sequence[str | Path]) -> tuple[list[Path], dict | None]:
    """Shard paths (sorted, as listed by the manifest if there is one) and the manifest dict or None.

    `spec`: a shard folder, its manifest.json (what `shard` returns), a .tar, a glob, or a list of .tar.
    """
    if isinstance(spec, (str, Path)) and Path(spec).name == "manifest.json" and Path(spec).is_file():
        spec = Path(spec).parent
    if isinstance(spec, (list, tuple)):
        paths = [Path(p) for p in spec]
        manifest = None
    else:
        p = Path(spec)
        manifest = None
        if p.is_dir():
            mpath = p / "manifest.json"
            if mpath.is_file():
                try:
                    manifest = json.loads(mpath.read_text(encoding="utf-8"))
                    paths = [p / s["name"] for s in manifest["shards"]]
                except (ValueError, KeyError, TypeError) as e:
                    raise UserError(f"{mpath}:1: not a shard manifest ({type(e).__name__}: {e})") from None
            else:
                paths = sorted(p.glob("*.tar"))
        elif p.is_file():
            paths = [p]
        else:
            paths = [Path(x) for x in sorted(glob.glob(str(spec)))]
    if not paths:
        raise UserError(f"{spec}: no WebDataset shards (*.tar) found")
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: shard listed but missing ({len(missing)} missing in all)")
    return paths, manifest


# ------------------------------------------------------------------------------- assign_shards
def assign_shards(shards: Sequence[Path], rank: int = 0, world_size: int = 1,
                  worker: int = 0, num_workers: int = 1) -> list[Path]:
    """The shards this (rank, worker) reads: round-robin by rank, then by worker within the rank."""
    mine = list(shards)[rank::world_size]
    return mine[worker::num_workers]


# ---------------------------------------------------------------------------------- read_shard
def read_shard(path: Path, problems: list[dict]) -> Iterator[dict]:
    """Raw samples `{"__key__", "<ext>": bytes, ...}` of one tar; a tar error is appended to `problems`."""
    current: dict | None = None
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                if "." not in base:
                    continue
                prefix = member.name[: len(member.name) - len(base)]
                key, ext = base.split(".", 1)
                key = prefix + key
                data = tar.extractfile(member).read()
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key}
                current[ext.lower()] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        problems.append({"shard": path.name, "key": current["__key__"] if current else None,
                         "reason": f"truncated or corrupt tar ({type(e).__name__}: {e}); rest of shard lost"})
        return
    if current is not None:
        yield current


# ------------------------------------------------------------------------------- decode_sample
def decode_sample(raw: dict) -> tuple[Image.Image | None, dict | None, str | None]:
    """(image, json meta, None) for a good sample, else (None, None, reason it is skipped)."""
    ext = next((e for e in IMAGE_EXTS if e in raw), None)
    if ext is None:
        return None, None, f"no image member (has {', '.join(sorted(k for k in raw if k != '__key__'))})"
    data = raw[ext]
    if not data:
        return None, None, f"empty .{ext}"
    try:
        meta = json.loads(raw["json"]) if "json" in raw else {}
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as e:
        return None, None, f"bad .json ({e})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette/EXIF chatter from PIL
            img = Image.open(io.BytesIO(data))
            img.load()  # decode now: truncated files fail here, not later
    except Exception as e:  # PIL raises many types for bad data
        return None, None, f"not a decodable image ({type(e).__name__}: {e})"
    if img.width < 1 or img.height < 1:
        return None, None, "zero-size image"
    return img, meta, None


def sample_words(meta: dict) -> list[str]:
    """The words a sample counts for: `words` (list) or a single `word`."""
    words = meta.get("words", meta.get("word", []))
    if isinstance(words, str):
        words = [words]
    return [str(w) for w in words if str(w).strip()]


# ---------------------------------------------------------------------------------------- collate
def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack; inside a data-loader worker straight into shared memory (as torch's default_collate
    does), so sending the batch costs no second copy and the worker's heap does not balloon."""
    if get_worker_info() is None:
        return torch.stack(images)
    out = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype).share_memory_()
    return torch.stack(images, out=out)


def collate(samples: list[dict], shards_done: list[str], skipped: list[dict]) -> dict:
    """Stack preprocessed samples into one batch dict that carries keys, words and shard bookkeeping."""
    return {
        "images": _stack([s["image"] for s in samples]) if samples else torch.zeros(0),  # (B, C, H, W)
        "keys": [s["key"] for s in samples],
        "words": [s["words"] for s in samples],
        "shards": [s["shard"] for s in samples],
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),  # (B,)
        "shards_done": list(shards_done),
        "skipped": list(skipped),
    }


# ---------------------------------------------------------------------------------- batch_samples
def batch_samples(shards: Iterable[Path], scheme: str, batch_size: int,
                  classes: dict[str, int] | None = None, require_words: bool = True,
                  shuffle_buffer: int = 0) -> Iterator[dict]:
    """Read, decode, preprocess and collate `shards` in order; yield batch dicts (see `collate`).

    A shard is listed in `shards_done` of the batch holding its last sample (or of the next batch, or of
    a final empty batch, when its tail was skipped). With `classes`, samples need a known `label`.
    `shuffle_buffer` > 0 shuffles samples within a window (training), which delays shard completion.
    """
    fn = get_scheme(scheme)
    buf: list[dict] = []
    pending_done: list[tuple[int, str]] = []  # (samples emitted-or-buffered when the shard ended, name)
    skipped: list[dict] = []
    seen = 0  # samples accepted so far

    def flush(n: int):
        nonlocal buf
        out, buf = buf[:n], buf[n:]
        emitted = seen - len(buf)
        done = [name for pos, name in pending_done if pos <= emitted]
        pending_done[:] = [(pos, name) for pos, name in pending_done if pos > emitted]
        batch = collate(out, done, skipped)
        skipped.clear()
        return batch

    for path in shards:
        problems: list[dict] = []
        for raw in read_shard(path, problems):
            img, meta, reason = decode_sample(raw)
            words = sample_words(meta) if meta is not None else []
            label = -1
            if reason is None and require_words and not words:
                reason = "no words in .json"
            if reason is None and classes is not None:
                label = classes.get(str(meta.get("label")), -1)
                if label < 0:
                    reason = f"label {meta.get('label')!r} not among the {len(classes)} classes"
            if reason is None:
                try:
                    image = fn(img)
                except Exception as e:  # a broken image can still fail in convert/resize
                    reason = f"preprocessing failed ({type(e).__name__}: {e})"
            if reason is not None:
                skipped.append({"shard": path.name, "key": raw["__key__"], "reason": reason})
                continue
            sample = {"image": image, "key": raw["__key__"], "words": words, "shard": path.name, "label": label}
            if shuffle_buffer > 0:
                buf.insert(random.randint(0, len(buf)), sample)
            else:
                buf.append(sample)
            seen += 1
            if len(buf) >= batch_size + shuffle_buffer:
                yield flush(batch_size)
        skipped.extend(problems)
        pending_done.append((seen, path.name))
    while buf:
        yield flush(batch_size)
    if pending_done or skipped:
        yield flush(0)  # an empty batch that only reports the last shards done / skipped samples


# ------------------------------------------------------------------------------------- datasets
class ShardStream(IterableDataset):
    """The pipeline for one (rank, world): each data-loader worker reads its own shards and batches."""

    def __init__(self, shards: Sequence[Path], scheme: str, batch_size: int, rank: int = 0,
                 world_size: int = 1, classes: dict[str, int] | None = None, require_words: bool = True,
                 shuffle: bool = False, shuffle_buffer: int = 0, seed: int = 0):
        self.shards, self.scheme, self.batch_size = list(shards), scheme, batch_size
        self.rank, self.world_size, self.classes = rank, world_size, classes
        self.require_words, self.shuffle, self.shuffle_buffer, self.seed = require_words, shuffle, shuffle_buffer, seed

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        mine = assign_shards(self.shards, self.rank, self.world_size, worker, num_workers)
        if self.shuffle:  # each reader shuffles its own share: the split stays a partition
            random.seed(self.seed + torch.initial_seed())  # torch reseeds workers every epoch
            random.shuffle(mine)
        yield from batch_samples(mine, self.scheme, self.batch_size, self.classes, self.require_words,
                                 self.shuffle_buffer)


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


class ShardDataModule(pl.LightningDataModule):
    """WebDataset shards for `predict` (feature extraction) and, with `classes`, for `fit` (labels)."""

    def __init__(self, shards: str | list[str], batch_size: int = 64, num_workers: int = 2,
                 preprocess: str | None = None, classes: list[str] | str | None = None,
                 val_shards: str | list[str] | None = None, train_preprocess: str = "imagenet_train",
                 shuffle_buffer: int = 256, seed: int = 0):
        """
        Args:
            shards: shard directory (with manifest.json), a .tar, a glob pattern or a list of .tar files.
            batch_size: images per batch (batched inside the workers).
            num_workers: data-loader worker processes (each reads whole shards).
            preprocess: scheme name (mmlightning.images.preprocess); None = the model's backbone's own scheme.
            classes: for training: class names (wnids) in output order, or a file with one per line.
            val_shards: shards for validation during fit (optional).
            train_preprocess: augmentation scheme used for fit.
            shuffle_buffer: samples shuffled within this window during fit.
            seed: seed for the shard order during fit.
        """
        super().__init__()
        self.shards, self.batch_size, self.num_workers = shards, batch_size, num_workers
        self.preprocess, self.classes, self.val_shards = preprocess, classes, val_shards
        self.train_preprocess, self.shuffle_buffer, self.seed = train_preprocess, shuffle_buffer, seed
        self.exclude_shards: set[str] = set()  # names already done (set by the extraction writer)
        self.manifest: dict | None = None

    def shard_paths(self) -> list[Path]:
        paths, self.manifest = list_shards(self.shards)
        return paths

    def scheme(self) -> str:
        """The preprocessing scheme applied: `preprocess` if given, else the model's backbone's own."""
        if self.preprocess:
            return self.preprocess
        model = self.trainer.lightning_module if self.trainer is not None else None
        return getattr(model, "preprocess", None) or "imagenet"

    def _loader(self, dataset: ShardStream) -> DataLoader:
        cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=cuda,
                          prefetch_factor=4 if self.num_workers > 0 else None,
                          persistent_workers=False)

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def predict_dataloader(self) -> DataLoader:
        todo = [p for p in self.shard_paths() if p.name not in self.exclude_shards]
        rank, world = self._rank()
        return self._loader(ShardStream(todo, self.scheme(), self.batch_size, rank, world))

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        return self._loader(ShardStream(self.shard_paths(), self.train_preprocess, self.batch_size, rank, world,
                                        classes=read_classes(self.classes), require_words=False, shuffle=True,
                                        shuffle_buffer=self.shuffle_buffer, seed=self.seed))

    def val_dataloader(self):
        if self.val_shards is None:
            return []
        rank, world = self._rank()
        paths, _ = list_shards(self.val_shards)
        return self._loader(ShardStream(paths, self.scheme(), self.batch_size, rank, world,
                                        classes=read_classes(self.classes), require_words=False))
