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
locked while a run writes it (`mmlightning.folder_lock`; the lock file goes with the run, as do merged
parts/ and the emptied folder); temporary files a killed run left are removed.

Several ranks: rank 0's record is the truth. It alone reads the folder (`shard_urls.read_records`: no
shard merged twice) and broadcasts the finished shards, so ranks with an output folder each (one per
node) agree on what is done; a shard another rank sends that the record already holds is refused.
A shard that could not be read (`shards_failed`) is never marked done: the run ends with a UserError
listing them, finished shards kept for the rerun, unless `allow_missing` (then they are listed in
`meta.shards_missing`). `skipped` holds the skipped samples and tar problems of the finished shards,
each shard's once (`n_skipped`: samples). A full disk is one line; what was checkpointed stays.
Shard names are not trusted as paths: features/<shard>.pt is a sanitised file name inside the folder.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError
from mmlightning.features.aggregates import Aggregate, export_word2vec, load_aggregates, save_aggregates
from mmlightning.features.collectives import gather_objects, reduce_aggregate
from mmlightning.folder_lock import FolderLock
from mmlightning.images.shard_urls import read_records

log = logging.getLogger(__name__)
FORMAT = "mmlightning-aggregates/1"
CHECKED = ("backbone", "backbone_kwargs", "layer", "feature_dim")


def load_prior(output_dir: Path) -> list[tuple[Aggregate, dict, Path]]:
    """What earlier runs finished: aggregates.pt, plus parts/*.pt not already merged into it (read_records)."""
    return [(*load_aggregates(path), path) for path, _ in read_records(output_dir)]


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def features_file(output_dir: Path, shard: str) -> Path:
    """features/<shard>.pt for a plain file name; any other name (a path, a URL, a command) becomes a
    sanitised name plus a hash of the whole name, so it stays in the folder and two names never meet."""
    name = shard
    if not SAFE_NAME.fullmatch(shard):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", shard).strip("._-")[-80:] or "shard"
        name = f"{stem}-{hashlib.sha256(shard.encode()).hexdigest()[:12]}"
    return output_dir / "features" / f"{name}.pt"


def _samples(skipped: list[dict]) -> int:
    """How many of these skip entries are samples (the others are shard-level problems)."""
    return sum(1 for e in skipped if e.get("key") is not None)


def remove_leftovers(output_dir: Path) -> int:
    """Delete the `.*.tmp` files of atomic writes that a killed run left; returns how many."""
    n = 0
    for sub in (output_dir, output_dir / "parts", output_dir / "features"):
        for tmp in sub.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or gone): kept
        folder.rmdir()


class AggregateWriter(BasePredictionWriter):
    """Accumulates per-word aggregates from `FeatureExtractor.predict_step` and writes them (see module doc)."""

    def __init__(self, output_dir: str, save_features: bool = False, save_every_s: float = 60.0,
                 allow_missing: bool = False):
        """
        Args:
            output_dir: where aggregates.pt, mean.txt, max.txt (and parts/, features/) go; reused to resume.
                Several nodes: give every node the same (shared) folder; with one folder per node, rank 0's
                is the record (the others only hold checkpoints of an unfinished run).
            save_features: also save every image's feature vector, one file per shard (features/<shard>.pt).
            save_every_s: checkpoint the finished shards at most this often (seconds, >= 0; 0 = after every shard).
            allow_missing: finish (write aggregates.pt, mean.txt, max.txt) although some shards could not be read
                (an HTTP error, a timeout, a failed command, not a tar); they are logged, listed in
                `meta.shards_missing` and read again by a rerun. False: the run ends with an error listing them.
        """
        super().__init__(write_interval="batch")
        if not isinstance(save_every_s, (int, float)) or save_every_s < 0:
            raise UserError(f"AggregateWriter.save_every_s: {save_every_s!r}; it must be a number >= 0")
        if not isinstance(allow_missing, bool):
            raise UserError(f"AggregateWriter.allow_missing: {allow_missing!r}; it must be true or false")
        self.output_dir = Path(output_dir)
        self.save_features, self.save_every_s = save_features, float(save_every_s)
        self.allow_missing = allow_missing
        self.lock = FolderLock(self.output_dir, "predict", remove=True)  # no .lock left behind

    # ------------------------------------------------------------------------------- lifecycle
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        if not hasattr(pl_module, "describe") or not hasattr(pl_module, "backbone"):
            raise UserError("AggregateWriter needs model: mmlightning.features.extract.FeatureExtractor")
        try:
            self._setup(trainer, pl_module)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dim = pl_module.backbone.feature_dim
        self.describe = {**pl_module.describe(), "feature_dim": self.dim}
        self.prior: list[tuple[Aggregate, dict, Path]] = []
        agreed: dict = {"error": None}
        if trainer.global_rank == 0:  # rank 0's folder is the record; every rank gets its finished shards
            try:
                agreed = self._read_record()
            except Exception as e:  # noqa: BLE001 - raised on every rank below, not only here
                agreed = {"error": e}
        agreed = trainer.strategy.broadcast(agreed, src=0)
        if agreed["error"] is not None:
            raise agreed["error"]
        self.done_before: dict[str, str] = agreed["done"]
        self.prior_schemes: list[tuple[str, str]] = agreed["schemes"]
        self.scheme: str | None = None
        self.source: dict | None = None
        self.committed = Aggregate(self.dim)
        self.open: dict[str, Aggregate] = {}
        self.open_images: dict[str, int] = {}
        self.open_feats: dict[str, list] = {}
        self.open_skipped: dict[str, list[dict]] = {}
        self.fingerprints: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.skipped: list[dict] = []
        self.images = 0
        self.part = self.output_dir / "parts" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-rank{trainer.global_rank}.pt"
        self.last_save = self.started = time.monotonic()
        self.summary: str | None = None  # rank 0's closing line (on_predict_end)

    def _read_record(self) -> dict:
        """Rank 0: lock the folder, load what earlier runs finished and check it fits this run."""
        self.lock.acquire()
        if remove_leftovers(self.output_dir):
            log.info("predict: removed temporary files left by an interrupted run in %s", self.output_dir)
        self.prior = load_prior(self.output_dir)
        for _, meta, path in self.prior:
            for key in CHECKED:
                want = json.loads(json.dumps(self.describe[key], default=str))
                if key in meta and meta[key] != want:
                    raise UserError(f"{path}: holds {key}={meta[key]!r}, this run has {want!r}; "
                                    f"use another output_dir or delete it")
        done = {s: meta.get("shard_fingerprints", {}).get(s, "") for _, meta, _ in self.prior
                for s in meta.get("shards_done", [])}
        return {"error": None, "done": done, "schemes": [(str(p), m["preprocess"]) for _, m, p in self.prior
                                                         if m.get("preprocess")]}

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.lock.release()

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The writer is the output: keeping every batch's features in memory would grow with the images.
        trainer.predict_loop.return_predictions = False

    def _check_scheme(self, scheme: str) -> None:
        """The first batch says which preprocessing the features saw; a resume must have seen the same."""
        self.scheme = scheme
        for path, had in self.prior_schemes:
            if had != scheme:
                raise UserError(f"{path}: holds preprocess={had!r}, this run has {scheme!r}; "
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
        for entry in prediction["skipped"]:
            shard = entry.get("shard")
            if shard in self.fingerprints:
                self.skipped.append(entry)
            elif shard not in self.done_before:
                self.open_skipped.setdefault(shard, []).append(entry)
        for shard in prediction.get("shards_failed", []):  # not done: read again by the next run
            if shard not in self.done_before:
                self._fail(shard)
        for shard in prediction["shards_done"]:
            if shard in self.done_before:
                self._check_refinished(shard, prediction["fingerprints"].get(shard, ""))
            else:
                self._commit(shard, prediction["fingerprints"].get(shard, ""))
        if prediction["shards_done"] and time.monotonic() - self.last_save >= self.save_every_s:
            self._save_part()

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for shard in list(dict.fromkeys([*self.open, *self.open_skipped])):  # none with a complete stream
            self._fail(shard, "its end was never reported")
        self._save_part()
        new = reduce_aggregate(self.committed, pl_module.device)
        state = gather_objects({"fingerprints": self.fingerprints, "skipped": self.skipped, "images": self.images,
                                "scheme": self.scheme, "source": self.source, "failed": self.failed})
        error = None
        if trainer.is_global_zero:
            try:
                self._write_final(trainer, new, state)
            except UserError as e:  # raised on every rank below
                error = e
        error = trainer.strategy.broadcast(error, src=0)
        trainer.strategy.barrier("aggregate-writer")
        if error is not None:
            raise error
        if not trainer.is_global_zero:  # merged by rank 0 (in its own folder, when each node has one)
            self.part.unlink(missing_ok=True)
            _remove_if_empty(self.part.parent)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.summary is not None:  # rank 0; through the bar, which keeps the line whole
            (getattr(trainer.progress_bar_callback, "print", None) or print)(
                f"{self.summary} ({time.monotonic() - self.started:.1f} s)")

    # --------------------------------------------------------------------------------- helpers
    @contextmanager
    def _space(self):
        """A full disk or quota: one line naming the folder and what was kept."""
        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise UserError(f"{self.output_dir}: {os.strerror(e.errno).lower()} while writing the outputs; "
                            f"finished shards kept (aggregates.pt, parts/): rerun the same command after "
                            f"freeing space and it resumes") from None

    def _fail(self, shard: str, reason: str | None = None) -> None:
        """A shard that could not be read: its data is dropped, it is not done."""
        self.open.pop(shard, None), self.open_images.pop(shard, None), self.open_feats.pop(shard, None)
        entries = self.open_skipped.pop(shard, [])
        reason = reason or "; ".join(e["reason"] for e in entries if e.get("key") is None) or "could not be read"
        self.failed[shard] = reason[:500]
        log.warning("predict: shard %s could not be read (%s); not marked done, a rerun reads it again", shard,
                    self.failed[shard])

    def _commit(self, shard: str, fingerprint: str) -> None:
        agg = self.open.pop(shard, None)
        if agg is not None:
            self.committed.merge(agg)
        self.images += self.open_images.pop(shard, 0)
        self.fingerprints[shard] = fingerprint
        self.skipped += self.open_skipped.pop(shard, [])
        self.failed.pop(shard, None)
        if self.save_features:
            self._save_features(shard, self.open_feats.pop(shard, []))

    def _save_features(self, shard: str, chunks: list) -> None:
        path = features_file(self.output_dir, shard)
        if path.is_file():  # a file of the same name: this shard's (a rerun) or, sanitised alike, another's
            other = torch.load(path, map_location="cpu", weights_only=True).get("shard")
            if other is not None and other != shard:
                raise UserError(f"{path}: holds the features of shard {other!r}, not of {shard!r}; rename a shard")
        keys = [k for c in chunks for k in c[0]]
        words = [w for c in chunks for w in c[1]]
        feats = torch.cat([c[2] for c in chunks]) if chunks else torch.zeros(0, self.dim)
        with self._space(), atomic_path(path) as tmp:
            torch.save({"shard": shard, "keys": keys, "words": words, "features": feats}, tmp)  # (n, D) float32

    def _meta(self, **extra) -> dict:
        meta = {"format": FORMAT, **self.describe, "preprocess": self.scheme, **extra}
        return json.loads(json.dumps(meta, default=str))  # plain types only: loadable with weights_only=True

    def _save_part(self) -> None:
        """Checkpoint this rank's committed shards (only shards fully read are ever in here)."""
        if self.fingerprints:
            with self._space():
                save_aggregates(self.part, self.committed, self._meta(
                    shards_done=list(self.fingerprints), shard_fingerprints=dict(self.fingerprints),
                    skipped=list(self.skipped), n_skipped=_samples(self.skipped), images=self.images))
        self.last_save = time.monotonic()

    def _check_new(self, state: list[dict], prior: set[str]) -> dict[str, str]:
        """The shards that could not be read; refuses a shard sent twice or already in the record."""
        seen = set(prior)
        for s in state:
            again = sorted(seen & set(s["fingerprints"]))
            if again:
                raise UserError(f"{self.output_dir}: shard {again[0]} ({len(again)} in all) was read again although "
                                f"already merged; nothing written. Rerun the same command (the record decides what "
                                f"is done); with several nodes, give them one shared output_dir")
            seen |= set(s["fingerprints"])
        failed = {name: why for s in state for name, why in s["failed"].items() if name not in seen}
        if failed and not self.allow_missing:
            names = list(failed)
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            raise UserError(f"{len(names)} of {len(seen) + len(names)} shards could not be read: "
                            f"{', '.join(names[:10])}{more} ({names[0]}: {failed[names[0]]}); the finished shards "
                            f"are kept in {self.output_dir}: rerun to read the missing ones again, or set "
                            f"allow_missing: true on the writer (AggregateWriter) to finish without them")
        return failed

    def _write_final(self, trainer, new: Aggregate, state: list[dict]) -> None:
        total = Aggregate(self.dim)
        fps, skipped, images = {}, [], 0
        for agg, meta, _ in self.prior:
            done = meta.get("shards_done", [])
            total.merge(agg)
            fps.update({s: meta.get("shard_fingerprints", {}).get(s, "") for s in done})
            skipped += [e for e in meta.get("skipped", []) if e.get("shard") in done]  # older records: failures too
            images += int(meta.get("images", 0))
        failed = self._check_new(state, set(fps))
        total.merge(new)
        run_skipped = [e for s in state for e in s["skipped"]]
        for s in state:
            fps.update(s["fingerprints"])
            images += s["images"]
        skipped += run_skipped
        scheme = next((s["scheme"] for s in state if s["scheme"]), None) or next(
            (m.get("preprocess") for _, m, _ in self.prior), None)
        source = next((s["source"] for s in state if s["source"]), None) or next(
            (m.get("source") for _, m, _ in self.prior), None)
        self.scheme = scheme
        missing = [{"shard": name, "reason": why} for name, why in failed.items()]
        meta = self._meta(shards_done=sorted(fps), shard_fingerprints=dict(sorted(fps.items())), skipped=skipped,
                          n_skipped=_samples(skipped), shards_missing=missing, images=images, words=len(total),
                          source=source, world_size=trainer.world_size)
        with self._space():
            save_aggregates(self.output_dir / "aggregates.pt", total, meta)
            export_word2vec(total, self.output_dir)
        self._remove_merged_parts(set(fps))
        if missing:
            log.warning("predict: %d shards could not be read and are missing from %s (allow_missing): %s",
                        len(missing), self.output_dir, ", ".join(m["shard"] for m in missing[:10]))
        self.summary = (f"predict: {sum(s['images'] for s in state)} images read ({images} in all), {len(total)} words, "
                        f"{_samples(run_skipped)} skipped samples, {sum(len(s['fingerprints']) for s in state)} shards "
                        f"done ({len(fps)} in all), {len(missing)} missing -> {self.output_dir}")

    def _remove_merged_parts(self, done: set[str]) -> None:
        """Parts merged into aggregates.pt (and leftovers whose shards it holds) are no longer needed."""
        for _, _, path in self.prior:
            if path.parent.name == "parts":
                path.unlink(missing_ok=True)
        for part in (self.output_dir / "parts").glob("*.pt"):
            part_meta = torch.load(part, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
            if set(part_meta.get("shards_done", [])) <= done:
                part.unlink(missing_ok=True)
        _remove_if_empty(self.output_dir / "parts")
