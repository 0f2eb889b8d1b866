"""Per-word visual features: a frozen backbone under Lightning `predict`, aggregated by a prediction writer.

    python -m mmlightning predict --config configs/extract.yaml
    python -m mmlightning predict --config configs/extract.yaml --trainer.devices 4 --trainer.strategy ddp
    run_extraction(Path("checkpoints/shards/tux"), Path("checkpoints/features/tux-effnet"))  # from Python
    # several nodes: Lightning's own launchers (the same command on every node)
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m mmlightning predict --config configs/extract.yaml --trainer.num_nodes 2 --trainer.devices 8 --trainer.strategy ddp
    srun --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 python -m mmlightning predict \
        --config configs/extract.yaml --trainer.num_nodes 2 --trainer.devices 8 --trainer.strategy ddp   # SLURM

Pieces:
- `FeatureExtractor` (LightningModule): builds a backbone by registry name (mmlightning.features.backbones),
  freezes it (Lightning's `BaseFinetuning.freeze`, and it stays in eval mode), and maps each batch of
  `mmlightning.images.read_shards` to `{"features": (B, D), "keys", "words", "shards", "shards_done", "skipped"}`.
  It knows nothing about what the backbone is: any registered backbone, with its own preprocessing.
- `AggregateWriter` (BasePredictionWriter): keeps per-word count / sum / max / sum of L2-normalised
  features per shard being read, commits a shard when the pipeline reports it done, checkpoints the
  committed state to `<output_dir>/parts/` every `save_every_s`, and at the end reduces the ranks'
  aggregates with collectives (all_reduce SUM / MAX: every image counts once, as each shard is read by
  exactly one rank and worker), merges what earlier runs finished, and writes atomically:
    aggregates.pt (docs/FORMATS.md; meta: backbone, layer, preprocess, manifest, shards_done, skipped)
    mean.txt, max.txt (word2vec text: CNN-Mean, CNN-Max); features/<shard>.pt if save_features.
  Resume: a rerun with the same output_dir skips every shard recorded as done in aggregates.pt or
  parts/*.pt, so a killed run loses at most the shards in flight and the result equals an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning, BasePredictionWriter

from mmlightning.features.aggregates import Aggregate, export_word2vec, load_aggregates, save_aggregates
from mmlightning.atomic import atomic_path
from mmlightning.features.backbones import build_backbone
from mmlightning.errors import UserError

FORMAT = "mmlightning-aggregates/1"

# Batches carry their own keys; Lightning's batch indices are meaningless for these iterable datasets.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")


class FeatureExtractor(pl.LightningModule):
    """A frozen feature backbone for `predict`: a batch of images -> (B, D) features + its bookkeeping."""

    def __init__(self, backbone: str = "efficientnet_lite0", backbone_kwargs: dict | None = None,
                 layer: str | None = None, channels_last: bool = False):
        """
        Args:
            backbone: registry name (efficientnet_lite0, alexnet1512, torchvision, alexnet, resnet50, bovw, ...).
            backbone_kwargs: options of that backbone (e.g. {checkpoint: ...} for alexnet1512, {codebook: ...} for bovw).
            layer: feature layer (fc6, fc7, pooled, ...); None = the backbone's default.
            channels_last: run the backbone in channels-last memory format (often faster on GPU).
        """
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(backbone_kwargs or {})
        if layer is not None:
            kwargs["layer"] = layer
        self.backbone = build_backbone(backbone, **kwargs)
        BaseFinetuning.freeze(self.backbone, train_bn=False)  # no gradients, batch-norm statistics fixed
        self.backbone.eval()
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    @property
    def preprocess(self) -> str:
        """The backbone's preprocessing scheme (the data module applies it in its workers)."""
        return self.backbone.preprocess

    def describe(self) -> dict:
        return {"backbone": self.hparams.backbone, "backbone_kwargs": dict(self.hparams.backbone_kwargs or {}),
                "layer": self.backbone.layer, "preprocess": self.preprocess, "backbone_info": self.backbone.describe()}

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode (dropout, batch norm)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D) float32
        if self.hparams.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images).float()

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        if len(batch["keys"]) == 0:  # a batch that only reports shard completion / skipped samples
            feats = torch.zeros(0, self.backbone.feature_dim, device=self.device)
        else:
            feats = self(batch["images"])  # (B, D)
        return {"features": feats, **{k: batch[k] for k in ("keys", "words", "shards", "shards_done", "skipped")}}


# ------------------------------------------------------------------------------------ state on disk
def _load_prior(output_dir: Path) -> list[tuple[Aggregate, dict, Path]]:
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


def _reduce(agg: Aggregate, device: torch.device) -> Aggregate:
    """Sum counts/sums and max the maxima of every rank's aggregate (identity without DDP)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
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


def _gather_lists(items: list) -> list:
    """Concatenate a picklable list over ranks (identity without DDP)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    lists: list = [None] * dist.get_world_size()
    dist.all_gather_object(lists, list(items))
    return [x for lst in lists for x in lst]


class AggregateWriter(BasePredictionWriter):
    """Accumulates per-word aggregates from `FeatureExtractor.predict_step` and writes them (see module doc)."""

    def __init__(self, output_dir: str, save_features: bool = False, save_every_s: float = 60.0):
        """
        Args:
            output_dir: where aggregates.pt, mean.txt, max.txt (and parts/, features/) go; reused to resume.
            save_features: also save every image's feature vector, one file per shard (features/<shard>.pt).
            save_every_s: checkpoint the finished shards at most this often (seconds; 0 = after every shard).
        """
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.save_features, self.save_every_s = save_features, save_every_s

    # ------------------------------------------------------------------------------- lifecycle
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        if not hasattr(pl_module, "backbone"):
            raise UserError("AggregateWriter needs model: mmlightning.features.extract.FeatureExtractor")
        self.dim = pl_module.backbone.feature_dim
        self.describe = pl_module.describe()
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "scheme"):
            self.describe["preprocess"] = dm.scheme()  # a data-module override is what the features saw
        self.prior = _load_prior(self.output_dir)
        for _, meta, path in self.prior:
            for key in ("backbone", "backbone_kwargs", "layer", "preprocess", "feature_dim"):
                want = self.dim if key == "feature_dim" else json.loads(json.dumps(self.describe[key], default=str))
                if key in meta and meta[key] != want:
                    raise UserError(f"{path}: holds {key}={meta[key]!r}, this run has {want!r}; "
                                    f"use another output_dir or delete it")
        self.done_before = {s for _, meta, _ in self.prior for s in meta.get("shards_done", [])}
        if dm is not None and hasattr(dm, "exclude_shards"):
            dm.exclude_shards = set(self.done_before)  # the pipeline skips shards finished earlier
        self.committed = Aggregate(self.dim)
        self.open: dict[str, Aggregate] = {}
        self.open_images: dict[str, int] = {}
        self.open_feats: dict[str, list] = {}
        self.shards_done: list[str] = []
        self.skipped: list[dict] = []
        self.images = 0
        self.part = self.output_dir / "parts" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-rank{trainer.global_rank}.pt"
        self.last_save = time.monotonic()

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The writer is the output: keeping every batch's features in memory would grow with the images.
        trainer.predict_loop.return_predictions = False

    def write_on_batch_end(self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        feats = prediction["features"].detach().float().cpu()  # (B, D)
        shards, words, keys = prediction["shards"], prediction["words"], prediction["keys"]
        for shard in dict.fromkeys(shards):
            idx = [i for i, s in enumerate(shards) if s == shard]
            self.open.setdefault(shard, Aggregate(self.dim)).update(feats[idx], [words[i] for i in idx])
            self.open_images[shard] = self.open_images.get(shard, 0) + len(idx)
            if self.save_features:
                self.open_feats.setdefault(shard, []).append(([keys[i] for i in idx], [words[i] for i in idx], feats[idx]))
        self.skipped.extend(prediction["skipped"])
        for shard in prediction["shards_done"]:
            self._commit(shard)
        if prediction["shards_done"] and time.monotonic() - self.last_save >= self.save_every_s:
            self._save_part()

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for shard in list(self.open):  # cannot happen with a complete stream; keep the data anyway
            self._commit(shard)
        self._save_part()
        new = _reduce(self.committed, pl_module.device)
        done = _gather_lists(self.shards_done)
        skipped = _gather_lists(self.skipped)
        images = sum(_gather_lists([self.images]))
        if trainer.is_global_zero:
            self._write_final(trainer, new, done, skipped, images)
        trainer.strategy.barrier("aggregate-writer")

    # --------------------------------------------------------------------------------- helpers
    def _commit(self, shard: str) -> None:
        agg = self.open.pop(shard, None)
        if agg is not None:
            self.committed.merge(agg)
        self.images += self.open_images.pop(shard, 0)
        self.shards_done.append(shard)
        if self.save_features:
            chunks = self.open_feats.pop(shard, [])
            keys = [k for c in chunks for k in c[0]]
            words = [w for c in chunks for w in c[1]]
            feats = torch.cat([c[2] for c in chunks]) if chunks else torch.zeros(0, self.dim)
            with atomic_path(self.output_dir / "features" / f"{shard}.pt") as tmp:
                torch.save({"keys": keys, "words": words, "features": feats}, tmp)  # (n, D) float32

    def _meta(self, **extra) -> dict:
        meta = {"format": FORMAT, **self.describe, "feature_dim": self.dim, **extra}
        return json.loads(json.dumps(meta, default=str))  # plain types only: loadable with weights_only=True

    def _save_part(self) -> None:
        """Checkpoint this rank's committed shards (only shards fully read are ever in here)."""
        if self.shards_done:
            save_aggregates(self.part, self.committed,
                            self._meta(shards_done=list(self.shards_done), skipped=list(self.skipped), images=self.images))
        self.last_save = time.monotonic()

    def _write_final(self, trainer, new: Aggregate, done: list[str], skipped: list[dict], images: int) -> None:
        total = Aggregate(self.dim)
        all_done, all_skipped = [], []
        for agg, meta, _ in self.prior:
            total.merge(agg)
            all_done += meta.get("shards_done", [])
            all_skipped += meta.get("skipped", [])
            images += int(meta.get("images", 0))
        total.merge(new)
        all_done += done
        all_skipped += skipped
        dm = trainer.datamodule
        manifest = getattr(dm, "manifest", None)
        meta = self._meta(shards_done=sorted(set(all_done)), skipped=all_skipped, n_skipped=len(all_skipped),
                          images=images, words=len(total), manifest=manifest,
                          shards=str(getattr(dm, "shards", "")), world_size=trainer.world_size)
        save_aggregates(self.output_dir / "aggregates.pt", total, meta)
        export_word2vec(total, self.output_dir)
        for _, _, path in self.prior:  # parts merged into aggregates.pt are no longer needed
            if path.parent.name == "parts":
                path.unlink(missing_ok=True)
        for part in (self.output_dir / "parts").glob("*.pt"):
            part_meta = torch.load(part, map_location="cpu", weights_only=True).get("meta", {})
            if set(part_meta.get("shards_done", [])) <= set(all_done):
                part.unlink(missing_ok=True)
        print(f"mmlightning predict: {images} images, {len(total)} words, {len(all_skipped)} skipped samples "
                  f"-> {self.output_dir / 'aggregates.pt'}", file=sys.stderr)


# --------------------------------------------------------------------------------- Python entry point
def run_extraction(shards: Path, output_dir: Path, backbone: str = "efficientnet_lite0",
                   backbone_kwargs: dict | None = None, layer: str | None = None, batch_size: int = 64,
                   num_workers: int = 2, devices: int | str = 1, accelerator: str = "auto",
                   strategy: str = "auto", save_features: bool = False, save_every_s: float = 60.0,
                   preprocess: str | None = None, precision: str | None = None) -> Path:
    """Extract per-word aggregates of `shards` into `output_dir`, like `predict --config configs/extract.yaml`.

    Args:
        shards: shard directory (with manifest.json), a .tar, a glob or a list of .tar files.
        output_dir: receives aggregates.pt, mean.txt, max.txt; an existing one is resumed (done shards reused).
        backbone: backbone registry name; backbone_kwargs: its options; layer: its feature layer (None = default).
        batch_size, num_workers: data pipeline settings.
        devices, accelerator, strategy: Lightning Trainer settings; several devices run `python -m mmlightning
            predict` in a subprocess so that Lightning's DDP launcher re-executes a command that only extracts.
        save_features: also save per-image features (features/<shard>.pt).
        save_every_s: how often finished shards are checkpointed for resuming.
        preprocess: override the backbone's preprocessing scheme; precision: Trainer precision (e.g. "16-mixed").
    Returns:
        output_dir.
    """
    output_dir = Path(output_dir)
    model_args = {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "layer": layer}
    data_args = {"shards": str(shards) if not isinstance(shards, (list, tuple)) else [str(s) for s in shards],
                 "batch_size": batch_size, "num_workers": num_workers, "preprocess": preprocess}
    writer_args = {"output_dir": str(output_dir), "save_features": save_features, "save_every_s": save_every_s}
    if _several_processes(devices, accelerator) or strategy not in ("auto", None):
        return _run_cli(output_dir, model_args, data_args, writer_args, devices, accelerator, strategy, precision)
    from mmlightning.images.read_shards import ShardDataModule

    model = FeatureExtractor(**model_args)
    dm = ShardDataModule(**data_args)
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                         default_root_dir=str(output_dir),
                         callbacks=[AggregateWriter(**writer_args)], enable_model_summary=False,
                         **({"precision": precision} if precision else {}))
    trainer.predict(model, datamodule=dm, return_predictions=False)
    return output_dir


def _several_processes(devices, accelerator: str) -> bool:
    """Whether these Trainer settings start more than one process (then DDP needs a re-executable command)."""
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int):
        return devices > 1 or (devices == -1 and accelerator != "cpu" and torch.cuda.device_count() > 1)
    return accelerator != "cpu" and torch.cuda.device_count() > 1  # "auto": all visible GPUs


def _run_cli(output_dir: Path, model_args: dict, data_args: dict, writer_args: dict, devices, accelerator,
             strategy, precision) -> Path:
    """Run `python -m mmlightning predict` on a generated config (the multi-process path)."""
    import yaml

    config = {"model": {"class_path": "mmlightning.features.extract.FeatureExtractor", "init_args": model_args},
              "data": {"class_path": "mmlightning.images.read_shards.ShardDataModule", "init_args": data_args},
              "trainer": {"accelerator": accelerator, "devices": devices, "strategy": strategy, "logger": False,
                          "default_root_dir": str(output_dir),  # LightningCLI saves its config.yaml there
                          "enable_model_summary": False,
                          "callbacks": [{"class_path": "mmlightning.features.extract.AggregateWriter", "init_args": writer_args}],
                          **({"precision": precision} if precision else {})},
              "return_predictions": False}
    path = output_dir / "extract_config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text("# python -m mmlightning predict --config " + str(path) + "\n" + yaml.safe_dump(config))
    rc = subprocess.call([sys.executable, "-m", "mmlightning", "predict", "--config", str(path)])
    if rc != 0:
        raise UserError(f"{path}: extraction failed (exit code {rc}); rerun to resume")
    return output_dir
