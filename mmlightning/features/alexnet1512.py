"""The paper's CNN: Oquab et al.'s AlexNet-style network with a 1512-way output, trainable with Lightning.

    python -m mmlightning fit --config configs/cnn1512.yaml        # (re)train on ImageNet-layout data
    bb = build_backbone("alexnet1512", checkpoint="checkpoints/cnn1512/last.ckpt", layer="fc7")

Network (input: the "imagenet" preprocessing scheme, (B, 3, 224, 224) pixels - 128):
  conv1 96x11x11/4 -> ReLU -> LRN -> maxpool 3/2      (B, 96, 27, 27)
  conv2 256x5x5    -> ReLU -> LRN -> maxpool 3/2      (B, 256, 13, 13)
  conv3 384x3x3 -> ReLU; conv4 384x3x3 -> ReLU; conv5 256x3x3 -> ReLU -> maxpool 3/2  (B, 256, 6, 6)
  fc6 6144 -> ReLU -> dropout; fc7 6144 -> ReLU -> dropout; fc8 1512 (1000 ILSVRC-2012 + 512 classes)
Features for extraction: "fc6" / "fc7" after their ReLU (sparse, as in the paper), "pooled" (flattened
pool5, 9216) or "logits". `width` scales conv channels and `fc_dim` the FC layers (tiny nets for tests).
Checkpoints are read with `torch.load(weights_only=True)`: one holding code (any non-plain object) is refused.

Training data: `ImageFolderDataModule` reads `train/<wnid>/*` (optional `val/<wnid>/*`); the class list
(ILSVRC-2012 wnids + the 512 extra wnids, in output order) comes from the config or a file with one
wnid per line; `mmlightning.images.read_shards.ShardDataModule` with `classes` reads shards whose .json has a label.
Augmentation: random 224 crop of the 256 x 256 square + horizontal flip. SGD with momentum, step decay;
top-1 / top-5 accuracy with torchmetrics.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy

from mmlightning.checkpoints import load_weights
from mmlightning.errors import UserError
from mmlightning.images.preprocess import get_scheme
from mmlightning.images.read_shards import read_classes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".ppm", ".tif", ".tiff"}


class AlexNet1512(nn.Module):
    """Five conv layers + FC6/FC7 of `fc_dim` + FC8 of `num_classes` (Oquab et al. 2014 layout)."""

    def __init__(self, num_classes: int = 1512, fc_dim: int = 6144, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = (max(4, round(c * width)) for c in (96, 256, 384, 384, 256))
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4, padding=2), nn.ReLU(inplace=True),      # (B, c1, 55, 55)
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),  # (B, c1, 27, 27)
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True),                 # (B, c2, 27, 27)
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),  # (B, c2, 13, 13)
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),                 # (B, c3, 13, 13)
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),                 # (B, c4, 13, 13)
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),  # (B, c5, 6, 6)
        )
        self.pool_dim = c5 * 6 * 6
        self.fc6 = nn.Linear(self.pool_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc8 = nn.Linear(fc_dim, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.fc_dim, self.num_classes = fc_dim, num_classes
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc8.weight, std=0.01)

    def layer_dim(self, layer: str) -> int:
        return {"pooled": self.pool_dim, "fc6": self.fc_dim, "fc7": self.fc_dim, "logits": self.num_classes}[layer]

    def features_at(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """(B, 3, 224, 224) pixels - 128 -> (B, layer_dim(layer)); dropout only acts in train mode."""
        h = self.features(x / 128.0).flatten(1)            # (B, pool_dim); inputs scaled to about [-1, 1]
        if layer == "pooled":
            return h
        h = F.relu(self.fc6(h))                            # (B, fc_dim)  fc6 after ReLU
        if layer == "fc6":
            return h
        h = F.relu(self.fc7(self.dropout(h)))              # (B, fc_dim)  fc7 after ReLU
        if layer == "fc7":
            return h
        return self.fc8(self.dropout(h))                   # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # (B, 3, 224, 224) -> (B, num_classes)
        return self.features_at(x, "logits")


NET_KEYS = ("num_classes", "fc_dim", "width", "dropout")


def load_network(checkpoint: str | None = None, **net_kwargs) -> AlexNet1512:
    """A random-init AlexNet1512(**net_kwargs), or the network of a `CNN1512` checkpoint / state dict."""
    if checkpoint is None:
        return AlexNet1512(**net_kwargs)
    path = Path(checkpoint)
    ckpt = load_weights(path, "alexnet1512 checkpoint")  # weights_only=True: a fit checkpoint is plain data
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        hp = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k in NET_KEYS}
        state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    else:
        hp, state = {}, ckpt
    net = AlexNet1512(**{**hp, **net_kwargs})
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: does not fit AlexNet1512({hp or net_kwargs}): {str(e).splitlines()[0]}") from None
    return net


class CNN1512(pl.LightningModule):
    """Trains AlexNet1512 with cross-entropy, SGD + momentum, step decay; logs top-1 / top-5."""

    preprocess = "imagenet"  # validation scheme (ShardDataModule reads it)

    def __init__(self, num_classes: int = 1512, fc_dim: int = 6144, width: float = 1.0, dropout: float = 0.5,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
                 lr_step_epochs: int = 30, lr_gamma: float = 0.1):
        """
        Args:
            num_classes: output classes (1000 ILSVRC-2012 + 512 extra in the paper).
            fc_dim: units of FC6 and FC7 (6144 in the paper).
            width: multiplier on the conv channels (1.0 = 96/256/384/384/256).
            dropout: dropout after FC6 and FC7.
            lr: initial SGD learning rate.
            momentum: SGD momentum.
            weight_decay: L2 weight decay.
            lr_step_epochs: multiply the learning rate by lr_gamma every this many epochs.
            lr_gamma: step decay factor.
        """
        super().__init__()
        self.save_hyperparameters()
        self.net = AlexNet1512(num_classes, fc_dim, width, dropout)
        k5 = min(5, num_classes)
        self.metrics = nn.ModuleDict({
            f"{split}_{name}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for split in ("train", "val") for name, k in (("top1", 1), ("top5", k5))})
        self.skipped: list[str] = []

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        n = getattr(dm, "num_classes", None)
        if n is not None and n > self.hparams.num_classes:
            raise UserError(f"is {self.hparams.num_classes} but the data has {n} classes", argument="num_classes", owner=self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 224, 224) -> (B, num_classes)
        return self.net(x)

    def _step(self, batch: dict, split: str):
        self.skipped.extend(batch.get("skipped", []))
        x, y = batch["images"], batch["labels"]            # (B, 3, 224, 224), (B,)
        if y.numel() == 0:
            return None
        logits = self.net(x)                               # (B, num_classes)
        loss = F.cross_entropy(logits, y)
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=len(y), on_epoch=True, on_step=split == "train")
        for name in ("top1", "top5"):
            m = self.metrics[f"{split}_{name}"]
            m(logits, y)
            self.log(f"{split}/{name}", m, batch_size=len(y), on_epoch=True, on_step=False, prog_bar=name == "top1")
        return loss

    def training_step(self, batch: dict, batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int):
        self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        if self.skipped:
            self.log("train/skipped", float(len(self.skipped)))
            log.warning("%d unreadable training images skipped, e.g. %s", len(self.skipped), self.skipped[:3])
            self.skipped.clear()

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step_epochs, gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": sched}


# ----------------------------------------------------------------------------------- ImageNet layout
class ImageFolder(Dataset):
    """(path, class index) pairs of `<root>/<wnid>/*`; unreadable images come back as None (skipped)."""

    def __init__(self, root: Path, classes: dict[str, int], scheme: str):
        self.scheme = scheme
        self.items = [(p, i) for wnid, i in classes.items() if (root / wnid).is_dir()
                      for p in sorted((root / wnid).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.items:
            raise UserError(f"{root}: no images in <wnid>/ folders for the {len(classes)} classes")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        try:
            with Image.open(path) as img:
                return get_scheme(self.scheme)(img), label, str(path)
        except Exception as e:  # bad file: skipped and listed by the model
            return None, label, f"{path} ({type(e).__name__}: {e})"


def collate_labelled(items: list) -> dict:
    """Stack the good samples: images (B, 3, 224, 224), labels (B,); list the skipped paths."""
    good = [(x, y) for x, y, _ in items if x is not None]
    return {"images": torch.stack([x for x, _ in good]) if good else torch.zeros(0, 3, 224, 224),
            "labels": torch.tensor([y for _, y in good], dtype=torch.int64),
            "skipped": [p for x, _, p in items if x is None]}


class ImageFolderDataModule(pl.LightningDataModule):
    """ImageNet layout: `train_dir/<wnid>/*` (+ optional `val_dir/<wnid>/*`) with a fixed class order."""

    def __init__(self, train_dir: str, val_dir: str | None = None, classes: list[str] | str | None = None,
                 batch_size: int = 128, num_workers: int = 4):
        """
        Args:
            train_dir: folder with one sub-folder of images per class (wnid).
            val_dir: same layout for validation (optional).
            classes: class names (wnids) in output order, or a file with one per line; None = sorted sub-folders.
            batch_size: images per batch.
            num_workers: data-loader worker processes.
        """
        super().__init__()
        self.train_dir, self.val_dir, self.classes = Path(train_dir), val_dir, classes
        self.batch_size, self.num_workers = batch_size, num_workers
        self.class_index: dict[str, int] | None = None

    def prepare_class_index(self) -> dict[str, int]:
        if self.class_index is None:
            if not self.train_dir.is_dir():
                raise UserError(f"{self.train_dir}: training folder not found")
            self.class_index = read_classes(self.classes) or \
                {d.name: i for i, d in enumerate(sorted(p for p in self.train_dir.iterdir() if p.is_dir()))}
        return self.class_index

    @property
    def num_classes(self) -> int:
        return len(self.prepare_class_index())

    def _loader(self, root: Path, scheme: str, shuffle: bool) -> DataLoader:
        return DataLoader(ImageFolder(root, self.prepare_class_index(), scheme), batch_size=self.batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, collate_fn=collate_labelled,
                          drop_last=False, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dir, "imagenet_train", shuffle=True)

    def val_dataloader(self):
        return self._loader(Path(self.val_dir), "imagenet", shuffle=False) if self.val_dir else []
