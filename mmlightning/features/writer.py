"""The prediction writer of extraction: per-word aggregates from the in-band batches, checkpointed per shard.

`AggregateWriter` (BasePredictionWriter) keeps per-word count / sum / max / sum of L2-normalised features
per shard being read, commits a shard when the pipeline reports it done (in-band: `shards_done` with its
`fingerprints`), checkpoints the committed state to `<output_dir>/parts/` every `save_every_s`, and at the
end reduces the ranks' aggregates with collectives (all_reduce SUM / MAX: every image counts once, as each
shard is read by exactly one rank and worker), merges what earlier runs finished, and writes atomically:
    aggregates.pt (docs/FORMATS.md; meta: backbone, layer, preprocess, source, shards_done,
    shard_fingerprints, skipped), mean.txt, max.txt (word2vec text: CNN-Mean, CNN-Max), features/<shard>.pt.

It learns everything about the data from the predictions (`FeatureExtractor.predict_step` passes the
batch's bookkeeping through) and never touches the data module. Resume: finished shards are recorded
with their fingerprints; the data module skips them when given the same folder (`skip_done_in`), and the
writer drops any it receives again. A finished shard whose content changed is refused. The folder is
locked while a run writes it (`mmlightning.folder_lock`); temporary files a killed run left are removed.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError
from mmlightning.features.aggregates import Aggregate, export_word2vec, load_aggregates, save_aggregates
from mmlightning.folder_lock import FolderLock

log = logging.getLogger(__name__)
FORMAT = "mmlightning-aggregates/1"
CHECKED = ("backbone", "backbone_kwargs", "layer", "feature_dim")


def load_prior(output_dir: Path) -> list[tuple[Aggregate, dict, Path]]:
    """What earlier runs finished: aggregates.pt, plus parts/*.pt not already merged into it."""
    found = []
    final = output_dir / "aggregates.pt"
    merged: set[str] = set()
    if final.is_file():
        agg, meta = load_aggregates(final)
        found.append((agg, meta, final))
        merged = set(meta.get("shards_done", []))
    for part in sorted((output_dir / "parts").glob("*.pt")):
        agg, meta = load_aggregates(part)
        shards = set(meta.get("shards_done", []))
        if shards and shards <= merged:
            continue  # a leftover of a run whose final write succeeded
        if shards & merged:
            raise UserError(f"{part}: overlaps shards already in {final}; delete {output_dir / 'parts'}")
        found.append((agg, meta, part))
        merged |= shards
    return found


def remove_leftovers(output_dir: Path) -> int:
    """Delete the `.*.tmp` files of atomic writes that a killed run left; returns how many."""
    n = 0
    for sub in (output_dir, output_dir / "parts", output_dir / "features"):
        for tmp in sub.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def reduce_aggregate(agg: Aggregate, device: torch.device) -> Aggregate:
    """Sum counts/sums and max the maxima of every rank's aggregate (identity without DDP)."""
    dist = _dist()
    if dist is None:
        return agg
    vocab: list = [None] * dist.get_world_size()
    dist.all_gather_object(vocab, agg.words)
    union = sorted(set().union(*vocab))
    u, d = len(union), agg.feature_dim
    pos = {w: i for i, w in enumerate(union)}
    rows = torch.tensor([pos[w] for w in agg.words], dtype=torch.int64)  # (V,) this rank's rows in the union
    count = torch.zeros(u, dtype=torch.int64)                         # (U,)
    total = torch.zeros(u, d, dtype=torch.float64)                    # (U, D)
    sumn = torch.zeros(u, d, dtype=torch.float64)                     # (U, D)
    mx = torch.full((u, d), float("-inf"), dtype=torch.float32)       # (U, D)
    if len(agg):
        count[rows], total[rows], sumn[rows], mx[rows] = agg.count, agg.sum, agg.sum_normalized, agg.max
    out = []
    for t, op in ((count, dist.ReduceOp.SUM), (total, dist.ReduceOp.SUM), (sumn, dist.ReduceOp.SUM),
                  (mx, dist.ReduceOp.MAX)):
        t = t.to(device)
        dist.all_reduce(t, op=op)
        out.append(t.cpu())
    return Aggregate.from_dict({"words": union, "count": out[0], "sum": out[1], "sum_normalized": out[2],
                                "max": out[3]})


def gather_objects(obj: Any) -> list:
    """Every rank's `obj` (a one-element list without DDP)."""
    dist = _dist()
    if dist is None:
        return [obj]
    objs: list = [None] * dist.get_world_size()
    dist.all_gather_object(objs, obj)
    return objs


class AggregateWriter(BasePredictionWriter):
    """Accumulates per-word aggregates from `FeatureExtractor.predict_step` and writes them (see module doc)."""

    def __init__(self, output_dir: str, save_features: bool = False, save_every_s: float = 60.0):
        """
        Args:
            output_dir: where aggregates.pt, mean.txt, max.txt (and parts/, features/) go; reused to resume.
            save_features: also save every image's feature vector, one file per shard (features/<shard>.pt).
            save_every_s: checkpoint the finished shards at most this often (seconds, >= 0; 0 = after every shard).
        """
        super().__init__(write_interval="batch")
        if not isinstance(save_every_s, (int, float)) or save_every_s < 0:
            raise UserError(f"AggregateWriter.save_every_s: {save_every_s!r}; it must be a number >= 0")
        self.output_dir = Path(output_dir)
        self.save_features, self.save_every_s = save_features, float(save_every_s)
        self.lock = FolderLock(self.output_dir, "predict")

    # ------------------------------------------------------------------------------- lifecycle
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        if not hasattr(pl_module, "describe") or not hasattr(pl_module, "backbone"):
            raise UserError("AggregateWriter needs model: mmlightning.features.extract.FeatureExtractor")
        if trainer.global_rank == 0:
            self.lock.acquire()
            if remove_leftovers(self.output_dir):
                log.info("predict: removed temporary files left by an interrupted run in %s", self.output_dir)
        try:
            self._setup(trainer, pl_module)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dim = pl_module.backbone.feature_dim
        self.describe = {**pl_module.describe(), "feature_dim": self.dim}
        self.prior = load_prior(self.output_dir)
        for _, meta, path in self.prior:
            for key in CHECKED:
                want = json.loads(json.dumps(self.describe[key], default=str))
                if key in meta and meta[key] != want:
                    raise UserError(f"{path}: holds {key}={meta[key]!r}, this run has {want!r}; "
                                    f"use another output_dir or delete it")
        self.done_before = {s: meta.get("shard_fingerprints", {}).get(s, "")
                            for _, meta, _ in self.prior for s in meta.get("shards_done", [])}
        self.scheme: str | None = None
        self.source: dict | None = None
        self.committed = Aggregate(self.dim)
        self.open: dict[str, Aggregate] = {}
        self.open_images: dict[str, int] = {}
        self.open_feats: dict[str, list] = {}
        self.fingerprints: dict[str, str] = {}
        self.skipped: list[dict] = []
        self.images = 0
        self.part = self.output_dir / "parts" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-rank{trainer.global_rank}.pt"
        self.last_save = time.monotonic()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.lock.release()

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The writer is the output: keeping every batch's features in memory would grow with the images.
        trainer.predict_loop.return_predictions = False

    def _check_scheme(self, scheme: str) -> None:
        """The first batch says which preprocessing the features saw; a resume must have seen the same."""
        self.scheme = scheme
        for _, meta, path in self.prior:
            if meta.get("preprocess", scheme) != scheme:
                raise UserError(f"{path}: holds preprocess={meta['preprocess']!r}, this run has {scheme!r}; "
                                f"use another output_dir or delete it")

    def _check_refinished(self, shard: str, fp: str) -> None:
        if self.done_before[shard] != fp:
            raise UserError(f"{self.output_dir}: holds results for shard {shard} of other content (recorded "
                            f"fingerprint {self.done_before[shard] or 'none'}, now {fp}); use another output_dir "
                            f"or delete it")
        log.warning("predict: shard %s was already done in %s and is ignored (give the data module "
                    "skip_done_in: %s to skip reading it)", shard, self.output_dir, self.output_dir)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.lock.release()

    def write_on_batch_end(self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        if self.scheme is None:
            self._check_scheme(prediction["preprocess"])
        self.source = prediction.get("source", self.source)
        feats = prediction["features"].detach().float().cpu()  # (B, D)
        shards, words, keys = prediction["shards"], prediction["words"], prediction["keys"]
        for shard in dict.fromkeys(shards):
            if shard in self.done_before:
                continue  # finished by an earlier run (checked when the shard ends)
            idx = [i for i, s in enumerate(shards) if s == shard]
            self.open.setdefault(shard, Aggregate(self.dim)).update(feats[idx], [words[i] for i in idx])
            self.open_images[shard] = self.open_images.get(shard, 0) + len(idx)
            if self.save_features:
                self.open_feats.setdefault(shard, []).append(([keys[i] for i in idx], [words[i] for i in idx], feats[idx]))
        self.skipped.extend(prediction["skipped"])
        for shard in prediction.get("shards_failed", []):  # read again by the next run
            self.open.pop(shard, None), self.open_images.pop(shard, None), self.open_feats.pop(shard, None)
        for shard in prediction["shards_done"]:
            if shard in self.done_before:
                self._check_refinished(shard, prediction["fingerprints"].get(shard, ""))
            else:
                self._commit(shard, prediction["fingerprints"].get(shard, ""))
        if prediction["shards_done"] and time.monotonic() - self.last_save >= self.save_every_s:
            self._save_part()

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for shard in list(self.open):  # cannot happen with a complete stream; keep the data anyway
            self._commit(shard, "")
        self._save_part()
        new = reduce_aggregate(self.committed, pl_module.device)
        state = gather_objects({"fingerprints": self.fingerprints, "skipped": self.skipped, "images": self.images,
                                "scheme": self.scheme, "source": self.source})
        if trainer.is_global_zero:
            self._write_final(trainer, new, state)
        trainer.strategy.barrier("aggregate-writer")

    # --------------------------------------------------------------------------------- helpers
    def _commit(self, shard: str, fingerprint: str) -> None:
        agg = self.open.pop(shard, None)
        if agg is not None:
            self.committed.merge(agg)
        self.images += self.open_images.pop(shard, 0)
        self.fingerprints[shard] = fingerprint
        if self.save_features:
            chunks = self.open_feats.pop(shard, [])
            keys = [k for c in chunks for k in c[0]]
            words = [w for c in chunks for w in c[1]]
            feats = torch.cat([c[2] for c in chunks]) if chunks else torch.zeros(0, self.dim)
            with atomic_path(self.output_dir / "features" / f"{shard}.pt") as tmp:
                torch.save({"keys": keys, "words": words, "features": feats}, tmp)  # (n, D) float32

    def _meta(self, **extra) -> dict:
        meta = {"format": FORMAT, **self.describe, "preprocess": self.scheme, **extra}
        return json.loads(json.dumps(meta, default=str))  # plain types only: loadable with weights_only=True

    def _save_part(self) -> None:
        """Checkpoint this rank's committed shards (only shards fully read are ever in here)."""
        if self.fingerprints:
            save_aggregates(self.part, self.committed, self._meta(
                shards_done=list(self.fingerprints), shard_fingerprints=dict(self.fingerprints),
                skipped=list(self.skipped), images=self.images))
        self.last_save = time.monotonic()

    def _write_final(self, trainer, new: Aggregate, state: list[dict]) -> None:
        total = Aggregate(self.dim)
        fps, skipped, images = {}, [], 0
        for agg, meta, _ in self.prior:
            total.merge(agg)
            fps.update(meta.get("shard_fingerprints", {s: "" for s in meta.get("shards_done", [])}))
            skipped += meta.get("skipped", [])
            images += int(meta.get("images", 0))
        total.merge(new)
        for s in state:
            fps.update(s["fingerprints"])
            skipped += s["skipped"]
            images += s["images"]
        scheme = next((s["scheme"] for s in state if s["scheme"]), None) or next(
            (m.get("preprocess") for _, m, _ in self.prior), None)
        source = next((s["source"] for s in state if s["source"]), None) or next(
            (m.get("source") for _, m, _ in self.prior), None)
        self.scheme = scheme
        meta = self._meta(shards_done=sorted(fps), shard_fingerprints=dict(sorted(fps.items())), skipped=skipped,
                          n_skipped=len(skipped), images=images, words=len(total), source=source,
                          world_size=trainer.world_size)
        save_aggregates(self.output_dir / "aggregates.pt", total, meta)
        export_word2vec(total, self.output_dir)
        for _, _, path in self.prior:  # parts merged into aggregates.pt are no longer needed
            if path.parent.name == "parts":
                path.unlink(missing_ok=True)
        for part in (self.output_dir / "parts").glob("*.pt"):
            part_meta = torch.load(part, map_location="cpu", weights_only=True).get("meta", {})
            if set(part_meta.get("shards_done", [])) <= set(fps):
                part.unlink(missing_ok=True)
        log.info("predict: %d images, %d words, %d skipped samples -> %s", images, len(total), len(skipped),
                 self.output_dir / "aggregates.pt")
