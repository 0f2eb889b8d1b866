"""Backbone registry: the ImageNet-trained default, torchvision weights policy, layers, plugins."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmlightning.features import backbones
from mmlightning.features.backbones import available_backbones, build_backbone
from mmlightning.errors import UserError
from mmlightning.features.extract import FeatureExtractor
from mmlightning.images.preprocess import get_scheme


def imagenet_class_names() -> list[str]:
    """The 1000 ILSVRC-2012 class names in output order, as shipped inside torchvision (BSD-3)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def test_efficientnet_lite0_is_imagenet_trained():
    """Top-5 on real photos bundled with scikit-image (Chelsea the cat; a cup of coffee) is sensible."""
    skdata = pytest.importorskip("skimage.data")
    names = imagenet_class_names()
    bb = build_backbone("efficientnet_lite0", layer="logits").eval()
    pre = get_scheme(bb.preprocess)
    x = torch.stack([pre(Image.fromarray(skdata.chelsea())), pre(Image.fromarray(skdata.coffee()))])
    with torch.no_grad():
        top5 = bb(x).topk(5, dim=1).indices  # (2, 5)
    cat = [names[i] for i in top5[0]]
    cup = [names[i] for i in top5[1]]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(cat[:3]), cat
    assert {"espresso", "cup", "coffee mug"} & set(cup[:2]), cup


def test_default_backbone_pooled_features_and_freezing():
    model = FeatureExtractor()  # efficientnet_lite0, pooled
    assert model.backbone.feature_dim == 1280 and model.preprocess == "efficientnet"
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.backbone.training  # frozen backbone stays in eval mode
    f = model(torch.zeros(2, 3, 224, 224))
    assert f.shape == (2, 1280) and torch.isfinite(f).all()


def test_torchvision_weights_are_local_unless_download_is_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match="download=True"):
        build_backbone("resnet18")
    net = build_backbone("torchvision", arch="resnet18", weights=None)
    assert net.feature_dim == 512 and net.preprocess == "torchvision"
    import torchvision

    sd = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(sd, tmp_path / "alexnet.pth")
    fc6 = build_backbone("alexnet", weights=str(tmp_path / "alexnet.pth"), layer="fc6").eval()
    fc7 = build_backbone("alexnet", weights=str(tmp_path / "alexnet.pth"), layer="fc7").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        h7 = fc7(x)
        want = torch.relu(torch.nn.functional.linear(fc6(x), sd["classifier.4.weight"], sd["classifier.4.bias"]))
    assert fc6.feature_dim == fc7.feature_dim == 4096 and torch.allclose(h7, want, atol=1e-5)
    with pytest.raises(UserError, match="no layer"):
        build_backbone("resnet18", weights=None, layer="fc7")


def test_registry_errors_and_plugins(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown backbone"):
        build_backbone("nope")
    with pytest.raises(UserError, match="no layer"):
        build_backbone("efficientnet_lite0", layer="fc7")
    assert {"efficientnet_lite0", "alexnet1512", "torchvision", "bovw"} <= set(available_backbones())
    # a plugin module registers its backbone when first asked for
    (tmp_path / "fake_plugin.py").write_text(
        "from mmlightning.features.backbones import FeatureBackbone, register_backbone\n"
        "class Mean(FeatureBackbone):\n"
        "    feature_dim = 3\n"
        "    preprocess = 'esp'\n"
        "    def forward(self, x):\n"
        "        return x.mean(dim=(2, 3))\n"
        "@register_backbone('fake')\n"
        "def fake():\n"
        "    return Mean()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(backbones.PLUGINS, "fake", "fake_plugin")
    bb = build_backbone("fake")
    assert bb(torch.ones(1, 3, 4, 4)).tolist() == [[1.0, 1.0, 1.0]]
    assert build_backbone("fake_plugin:fake").feature_dim == 3
    sys.modules.pop("fake_plugin", None)


def test_alexnet1512_layers_are_sparse_after_relu():
    torch.manual_seed(0)
    bb = build_backbone("alexnet1512", layer="fc6", num_classes=12, fc_dim=64, width=0.1).eval()
    x = get_scheme("imagenet")(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    with torch.no_grad():
        f = bb(x[None])
    assert f.shape == (1, 64) and torch.all(f >= 0) and (f == 0).any()
    with pytest.raises(UserError, match="not found"):
        build_backbone("alexnet1512", checkpoint="/nonexistent.ckpt")
