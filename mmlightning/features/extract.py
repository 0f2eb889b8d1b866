"""Per-word visual features: a frozen backbone under Lightning `predict`, aggregated by a prediction writer.

    python -m mmlightning predict --config configs/extract.yaml
    python -m mmlightning predict --config configs/extract.yaml --trainer.devices 4 --trainer.strategy ddp
    python -m mmlightning predict --config configs/extract.yaml \
        --data.shards "pipe:aws s3 cp s3://bucket/shards-{000000..000099}.tar -"          # shards in object storage
    run_extraction(Path("checkpoints/shards/tux"), Path("checkpoints/features/tux-effnet"))  # from Python
    # several nodes: Lightning's own launchers (the same command on every node)
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m mmlightning predict --config configs/extract.yaml --trainer.num_nodes 2 --trainer.devices 8 --trainer.strategy ddp
    srun --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 python -m mmlightning predict \
        --config configs/extract.yaml --trainer.num_nodes 2 --trainer.devices 8 --trainer.strategy ddp   # SLURM

Pieces:
- `FeatureExtractor` (LightningModule): builds a backbone by registry name (mmlightning.features.backbones),
  freezes it (Lightning's `BaseFinetuning.freeze`, and it stays in eval mode), and maps each batch of
  `mmlightning.images.read_shards` to `{"features": (B, D), ...the batch's bookkeeping...}`. JPEG bytes left
  by a data module with decode="device" are decoded and preprocessed here, on the model's device.
- `AggregateWriter` (mmlightning.features.writer): the prediction writer that aggregates and resumes.
- `show_total`: the progress bar's total (and so its ETA) from the shard manifests' sample counts.
- `extraction_config`: the one config (model, data, trainer with the writer) that both the in-process run and
  the multi-process run (`python -m mmlightning predict --config`, for DDP) are built from.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning

from mmlightning.atomic import atomic_path
from mmlightning.errors import UserError
from mmlightning.features.backbones import build_backbone
from mmlightning.features.writer import AggregateWriter  # noqa: F401 (configs name it here too)
from mmlightning.images.batching import batch_images

# Batches carry their own keys; Lightning's batch indices are meaningless for these iterable datasets.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
warnings.filterwarnings("ignore", message="You have overridden `transfer_batch_to_device`")  # ours keeps JPEG bytes on CPU
PASSED = ("keys", "words", "shards", "shards_done", "fingerprints", "shards_failed", "skipped", "preprocess", "source")


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
        """The backbone's own preprocessing scheme (what run_extraction gives the data module by default)."""
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

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """As Lightning's, except JPEG bytes stay on the CPU (torchvision's decoders read them from there)."""
        if isinstance(batch, dict) and "encoded" in batch:
            encoded = batch["encoded"]
            moved = super().transfer_batch_to_device({k: v for k, v in batch.items() if k != "encoded"}, device,
                                                     dataloader_idx)
            return {**moved, "encoded": encoded}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_predict_start(self) -> None:
        show_total(self.trainer)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        images, keep, failed = batch_images(batch, self.device)  # (B_ok, C, H, W), (B,) bool, skipped
        if images.shape[0] == 0:  # a batch that only reports shard completion / skipped samples
            feats = torch.zeros(0, self.backbone.feature_dim, device=self.device)
        else:
            feats = self(images)  # (B_ok, D)
        out = {"features": feats, **{k: batch.get(k) for k in PASSED}}
        if failed:
            kept = keep.tolist()
            for k in ("keys", "words", "shards"):
                out[k] = [x for x, ok in zip(batch[k], kept) if ok]
            out["skipped"] = list(batch["skipped"]) + failed
        return out


def show_total(trainer: pl.Trainer) -> None:
    """Give the progress bar its total (so an ETA) where the dataset knows its batch count (`expected_batches`,
    from the shard manifests): the loop's `max_batches`, which the bar reads, is replaced by a new list. The
    loop took its limits from the old one, still infinite: a wrong count never ends the epoch early (a
    dataset `__len__` would, as Lightning stops at len() for iterable datasets too)."""
    loop = trainer.predict_loop
    loaders = trainer.predict_dataloaders
    loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
    counts = [getattr(getattr(dl, "dataset", None), "expected_batches", lambda _: None)(getattr(dl, "num_workers", 0))
              for dl in loaders]
    if len(counts) == len(loop.max_batches) and any(n is not None for n in counts):
        loop.max_batches = [m if n is None else min(m, n) for m, n in zip(loop.max_batches, counts)]


# --------------------------------------------------------------------------------- one config, two runners
def extraction_config(shards, output_dir: Path, backbone: str = "efficientnet_lite0",
                      backbone_kwargs: dict | None = None, layer: str | None = None, batch_size: int = 64,
                      num_workers: int = 2, devices: int | str = 1, accelerator: str = "auto",
                      strategy: str = "auto", save_features: bool = False, save_every_s: float = 60.0,
                      preprocess: str | None = None, precision: str | None = None, decode: str = "pil",
                      allow_missing: bool = False, read_options: dict | None = None) -> dict:
    """The `predict` config (model, data, trainer with the writer) as `python -m mmlightning predict` reads it."""
    output_dir = Path(output_dir)
    data_args = {"shards": str(shards) if not isinstance(shards, (list, tuple)) else [str(s) for s in shards],
                 "batch_size": batch_size, "num_workers": num_workers, "preprocess": preprocess, "decode": decode,
                 "skip_done_in": str(output_dir), **(read_options or {})}
    return {"model": {"class_path": "mmlightning.features.extract.FeatureExtractor",
                      "init_args": {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "layer": layer}},
            "data": {"class_path": "mmlightning.images.read_shards.ShardDataModule", "init_args": data_args},
            "trainer": {"accelerator": accelerator, "devices": devices, "strategy": strategy, "logger": False,
                        "default_root_dir": str(output_dir),  # LightningCLI saves its config.yaml there
                        "enable_model_summary": False,
                        "callbacks": [{"class_path": "mmlightning.features.writer.AggregateWriter",
                                       "init_args": {"output_dir": str(output_dir), "save_features": save_features,
                                                     "save_every_s": save_every_s, "allow_missing": allow_missing}}],
                        **({"precision": precision} if precision else {})},
            "return_predictions": False}


def instantiate(spec: dict) -> Any:
    """{class_path, init_args} -> an object (what jsonargparse does for the CLI)."""
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def run_extraction(shards, output_dir: Path, backbone: str = "efficientnet_lite0",
                   backbone_kwargs: dict | None = None, layer: str | None = None, batch_size: int = 64,
                   num_workers: int = 2, devices: int | str = 1, accelerator: str = "auto",
                   strategy: str = "auto", save_features: bool = False, save_every_s: float = 60.0,
                   preprocess: str | None = None, precision: str | None = None, decode: str = "pil",
                   allow_missing: bool = False, read_options: dict | None = None) -> Path:
    """Extract per-word aggregates of `shards` into `output_dir`, like `predict --config configs/extract.yaml`.

    Args:
        shards: shard folder (with manifest.json), a .tar, a glob, a brace spec, `pipe:`/http(s) URLs or a list.
        output_dir: receives aggregates.pt, mean.txt, max.txt; an existing one is resumed (done shards reused).
        backbone: backbone registry name; backbone_kwargs: its options; layer: its feature layer (None = default).
        batch_size, num_workers: data pipeline settings.
        devices, accelerator, strategy: Lightning Trainer settings; several devices run `python -m mmlightning
            predict` in a subprocess so that Lightning's DDP launcher re-executes a command that only extracts.
        save_features: also save per-image features (features/<shard>.pt).
        save_every_s: how often finished shards are checkpointed for resuming.
        preprocess: the scheme (None = the backbone's own); precision: Trainer precision (e.g. "16-mixed").
        decode: "pil" (in the loader workers) or "device" (JPEGs decoded and resized on the model's device).
        allow_missing: finish without the shards that could not be read (listed in meta.shards_missing)
            instead of ending with a UserError that lists them (AggregateWriter.allow_missing).
        read_options: timeouts and retries of remote / `pipe:` shards, as ShardDataModule's arguments
            (connect_timeout_s, stall_timeout_s, shard_timeout_s, retries, retry_backoff_s).
    Returns:
        output_dir.
    """
    settings = dict(backbone=backbone, backbone_kwargs=backbone_kwargs, layer=layer, batch_size=batch_size,
                    num_workers=num_workers, devices=devices, accelerator=accelerator, strategy=strategy,
                    save_features=save_features, save_every_s=save_every_s, preprocess=preprocess,
                    precision=precision, decode=decode, allow_missing=allow_missing, read_options=read_options)
    output_dir = Path(output_dir)
    config = extraction_config(shards, output_dir, **settings)
    model = None
    if config["data"]["init_args"]["preprocess"] is None:  # the backbone's own scheme: ask the backbone
        model = instantiate(config["model"])
        config["data"]["init_args"]["preprocess"] = model.preprocess
    trainer_args = config["trainer"]
    if _several_processes(trainer_args["devices"], trainer_args["accelerator"]) or trainer_args["strategy"] not in ("auto", None):
        return _run_cli(output_dir, config)
    model, dm = model or instantiate(config["model"]), instantiate(config["data"])
    trainer = pl.Trainer(**{**trainer_args, "callbacks": [instantiate(c) for c in trainer_args["callbacks"]]})
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


def _run_cli(output_dir: Path, config: dict) -> Path:
    """Run `python -m mmlightning predict` on the config (the multi-process path)."""
    import yaml

    path = output_dir / "extract_config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text("# python -m mmlightning predict --config " + str(path) + "\n" + yaml.safe_dump(config))
    rc = subprocess.call([sys.executable, "-m", "mmlightning", "predict", "--config", str(path)])
    if rc == 2:
        raise UserError(f"{path}: extraction refused (see the error above)")
    if rc != 0:
        raise UserError(f"{path}: extraction failed (exit code {rc}); rerun to resume")
    return output_dir
