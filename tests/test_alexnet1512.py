"""The 1512-way CNN trains under `fit --config configs/cnn1512.yaml` and reloads into the extractor."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmlightning.features.alexnet1512 import AlexNet1512, ImageFolderDataModule, load_network
from mmlightning.features.backbones import build_backbone
from mmlightning.cli import main
from mmlightning.errors import UserError
from mmlightning.images.preprocess import get_scheme

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cnn1512.yaml"
COLOURS = {"n00000001": (220, 30, 30), "n00000002": (30, 200, 40), "n00000003": (40, 50, 210)}


def imagenet_layout(root: Path, per_class: int = 6) -> Path:
    """train/<wnid>/*.JPEG: noisy images whose dominant colour and stripe direction give the class."""
    rng = np.random.default_rng(0)
    for k, (wnid, colour) in enumerate(COLOURS.items()):
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(per_class):
            a = rng.normal(colour, 40, (72, 96, 3)).clip(0, 255).astype(np.uint8)
            if k == 1:
                a[::8] = 255
            Image.fromarray(a).save(root / "train" / wnid / f"{wnid}_{i}.JPEG", quality=90)
    (root / "train" / "n00000001" / "broken.JPEG").write_bytes(b"not a jpeg")  # skipped and listed
    return root / "train"


def test_fit_loss_falls_accuracy_rises_and_checkpoint_reloads(tmp_path):
    train = imagenet_layout(tmp_path)
    out = tmp_path / "ckpt"
    rc = main(["fit", "--config", str(CONFIG),
               "--model.init_args.num_classes", "3", "--model.init_args.fc_dim", "64",
               "--model.init_args.width", "0.125", "--model.init_args.dropout", "0.0",
               "--model.init_args.lr", "0.02",
               "--data.init_args.train_dir", str(train), "--data.init_args.val_dir", "null",
               "--data.init_args.classes", "[n00000001, n00000002, n00000003]",
               "--data.init_args.batch_size", "6", "--data.init_args.num_workers", "0",
               "--trainer.max_epochs", "8", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out),
               "--trainer.log_every_n_steps", "1",  # 4 batches an epoch: fewer than Lightning's default 50
               "--trainer.logger.init_args.save_dir", str(out),
               "--trainer.callbacks.init_args.dirpath", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(next(out.rglob("metrics.csv")))))
    epochs = [r for r in rows if r.get("train/loss_epoch")]
    first, last = epochs[0], epochs[-1]
    assert float(last["train/loss_epoch"]) < 0.5 * float(first["train/loss_epoch"]), epochs
    assert float(last["train/top1"]) > float(first["train/top1"]) and float(last["train/top1"]) >= 0.9
    assert any(r.get("train/skipped") for r in rows)  # the broken file was counted
    ckpt = out / "last.ckpt"
    bb = build_backbone("alexnet1512", checkpoint=str(ckpt), layer="fc7").eval()
    state = torch.load(ckpt, weights_only=True)                      # fit's checkpoint holds only plain data
    net = AlexNet1512(num_classes=3, fc_dim=64, width=0.125, dropout=0.0)
    net.load_state_dict({k[4:]: v for k, v in state["state_dict"].items() if k.startswith("net.")})
    x = torch.stack([get_scheme("imagenet")(Image.open(p)) for p in sorted(train.rglob("*_0.JPEG"))])
    with torch.no_grad():
        assert torch.equal(bb(x), net.eval().features_at(x, "fc7"))
        assert bb.feature_dim == 64 and net(x).argmax(1).tolist() == [0, 1, 2]


def test_network_shapes_and_bad_checkpoint(tmp_path):
    net = AlexNet1512(num_classes=1512, fc_dim=6144).eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        assert net(x).shape == (1, 1512)
        assert net.features_at(x, "pooled").shape == (1, 9216)
    assert sum(p.numel() for p in net.parameters()) > 90_000_000  # FC6/FC7 of 6144 dominate
    torch.save({"fc6.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="does not fit"):
        load_network(str(tmp_path / "bad.pt"))
    with pytest.raises(UserError, match="training folder not found"):
        ImageFolderDataModule(str(tmp_path / "none")).num_classes


class OpensFile:
    """Unpickling this creates `path`: the marker that a checkpoint was unpickled with weights_only=False."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_code_in_it_is_refused_unrun(tmp_path):
    net = AlexNet1512(num_classes=3, fc_dim=8, width=0.05)
    ckpt = {"state_dict": {"net." + k: v for k, v in net.state_dict().items()},
            "hyper_parameters": {"num_classes": 3, "fc_dim": 8, "width": 0.05, "x": OpensFile(tmp_path / "ran")}}
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(UserError) as e:
        load_network(str(tmp_path / "evil.ckpt"))
    assert not (tmp_path / "ran").exists()
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "evil.ckpt")) and "weights_only" in msg and "\n" not in msg
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.ckpt: not a readable alexnet1512 checkpoint"):
        load_network(str(tmp_path / "junk.ckpt"))


def test_top5_with_more_classes_than_k():
    """Top-5 over 8 classes: a label ranked 6th is a miss (with 3 classes top-5 would always be 1.0)."""
    from mmlightning.features.alexnet1512 import CNN1512

    model = CNN1512(num_classes=8, fc_dim=16, width=0.1)
    logits = torch.arange(8.0).flip(0).repeat(4, 1)     # (4, 8): class 0 ranked first, class 7 last
    y = torch.tensor([0, 4, 5, 7])                      # ranks 1, 5, 6, 8
    top5, top1 = model.metrics["val_top5"], model.metrics["val_top1"]
    assert float(top5(logits, y)) == 0.5 and float(top1(logits, y)) == 0.25


def test_fit_on_labelled_shards(tmp_path, make_shards):
    """The same model trains from WebDataset shards whose .json carries the class (wnid); the logged
    top-5 over 8 classes equals the one computed by hand on the validation shards."""
    import pytorch_lightning as pl

    from mmlightning.features.alexnet1512 import CNN1512
    from mmlightning.images.read_shards import ShardDataModule

    wnids = [f"n{i:02d}" for i in range(1, 9)]
    shards = make_shards(tmp_path / "s", n_shards=2, per_shard=8, labels=wnids)
    dm = ShardDataModule(str(shards), batch_size=4, num_workers=0, classes=wnids, val_shards=str(shards),
                         shuffle_buffer=4)
    model = CNN1512(num_classes=8, fc_dim=32, width=0.1, dropout=0.0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss_epoch"])
    hits, n = 0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            if batch["labels"].numel() == 0:                              # skipped by the model too
                continue
            top = model.eval()(batch["images"]).topk(5, dim=1).indices    # (B, 5)
            hits += int((top == batch["labels"].unsqueeze(1)).any(1).sum())
            n += len(batch["labels"])
    assert n == 16
    assert float(m["val/top5"]) == pytest.approx(hits / n) and float(m["val/top1"]) <= float(m["val/top5"])
