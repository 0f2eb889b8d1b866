"""Feature backbones: frozen image networks that map a preprocessed batch to one vector per image.

    bb = build_backbone("efficientnet_lite0")      # registry name -> FeatureBackbone
    feats = bb(batch)                              # (B, C, H, W) -> (B, bb.feature_dim)

Every backbone declares `feature_dim` and `preprocess` (the name of a scheme in
`mmlightning.preprocess`, applied per image in the data pipeline). New backbones register themselves
with `@register_backbone("name")` on a factory function.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mmlightning.errors import UserError

_REGISTRY: dict[str, Callable[..., "FeatureBackbone"]] = {}


class FeatureBackbone(nn.Module):
    """Base class: subclasses set `feature_dim`, `preprocess` and implement `forward`."""

    feature_dim: int
    preprocess: str = "imagenet"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, feature_dim)
        raise NotImplementedError


def register_backbone(name: str):
    """Decorator: register a factory `(**kwargs) -> FeatureBackbone` under `name`."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(name: str, **kwargs) -> FeatureBackbone:
    """Build the backbone registered as `name` (unknown names are a UserError listing the known ones)."""
    if name not in _REGISTRY:
        raise UserError(f"unknown backbone {name!r}; known: {', '.join(available_backbones())}")
    return _REGISTRY[name](**kwargs)
