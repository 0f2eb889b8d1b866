"""Exact pixel values of the preprocessing schemes on synthetic images, and RGB conversion."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmlightning.errors import UserError
from mmlightning.images.preprocess import available_schemes, get_scheme, register_scheme, to_rgb


def coord_image(w: int, h: int) -> Image.Image:
    """R = x, G = y (mod 256), B = 7: every pixel tells where it came from."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w)[None, :] % 256
    a[..., 1] = np.arange(h)[:, None] % 256
    a[..., 2] = 7
    return Image.fromarray(a)


def test_imagenet_square_256_is_cropped_16_each_side():
    x = get_scheme("imagenet")(coord_image(256, 256))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert x[0, 0, 0] == 16 - 128 and x[1, 0, 0] == 16 - 128 and x[2, 0, 0] == 7 - 128
    assert x[0, 5, 223] == 16 + 223 - 128 and x[1, 223, 5] == 16 + 223 - 128


def test_imagenet_takes_the_largest_centred_square():
    # 356 x 256 (w x h): the square is x in [50, 306); no resampling, then the 16 px crop
    x = get_scheme("imagenet")(coord_image(356, 256))
    assert x[0, 0, 0] == 50 + 16 - 128 and x[1, 0, 0] == 16 - 128
    assert x[0, 100, 200] == (50 + 16 + 200) % 256 - 128 and x[1, 100, 200] == 16 + 100 - 128
    # portrait: 256 x 400 -> square y in [72, 328)
    y = get_scheme("imagenet")(coord_image(256, 400))
    assert y[1, 0, 0] == (72 + 16) - 128 and y[0, 0, 0] == 16 - 128


def test_imagenet_resamples_to_256_and_rectangle_lands_in_place():
    # 512 x 512 grey with a white block covering [128, 384)^2: after /2 -> [64, 192), after crop -> [48, 176)
    a = np.full((512, 512, 3), 60, np.uint8)
    a[128:384, 128:384] = 255
    x = get_scheme("imagenet")(Image.fromarray(a))
    assert torch.all(x[:, 50:174, 50:174] == 255 - 128)  # interior of the block
    assert torch.all(x[:, :46, :] == 60 - 128) and torch.all(x[:, 178:, :] == 60 - 128)
    assert torch.all(x[:, :, :46] == 60 - 128) and torch.all(x[:, :, 178:] == 60 - 128)


def test_esp_fits_centres_and_zero_pads():
    # 224 x 112 (w x h) fits as is: centred vertically at rows [56, 168); padding is black - 128
    a = np.full((112, 224, 3), (200, 100, 50), np.uint8)
    a[5:15, 10:20] = 255  # a known rectangle
    x = get_scheme("esp")(Image.fromarray(a))
    assert x.shape == (3, 224, 224)
    assert torch.all(x[:, :56] == -128) and torch.all(x[:, 168:] == -128)
    assert x[0, 56, 0] == 200 - 128 and x[1, 56, 0] == 100 - 128 and x[2, 167, 223] == 50 - 128
    assert torch.all(x[:, 56 + 5:56 + 15, 10:20] == 255 - 128)
    assert x[0, 56 + 4, 10] == 200 - 128 and x[0, 56 + 5, 20] == 200 - 128


def test_esp_upscales_small_images_keeping_aspect():
    # 56 x 112 (w x h) -> 112 x 224, centred horizontally at columns [56, 168)
    x = get_scheme("esp")(Image.fromarray(np.full((112, 56, 3), 90, np.uint8)))
    assert torch.all(x[:, :, 56:168] == 90 - 128)
    assert torch.all(x[:, :, :56] == -128) and torch.all(x[:, :, 168:] == -128)


def test_efficientnet_and_torchvision_normalisation():
    img = Image.fromarray(np.full((300, 300, 3), (255, 127, 0), np.uint8))
    e = get_scheme("efficientnet")(img)
    assert e.shape == (3, 224, 224)
    assert torch.allclose(e[:, 0, 0], torch.tensor([1.0, 0.0, -127 / 128]))
    t = get_scheme("torchvision")(img)
    want = (torch.tensor([255, 127, 0]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(t[:, 10, 10], want, atol=1e-6)


def test_to_rgb_modes():
    grey = Image.fromarray(np.full((4, 4), 77, np.uint8), "L")
    assert np.all(np.asarray(to_rgb(grey)) == 77)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # one opaque red-ish pixel, the rest fully transparent
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)  # composited on white
    la = Image.fromarray(np.stack([np.full((2, 2), 10, np.uint8), np.zeros((2, 2), np.uint8)], -1), "LA")
    assert np.all(np.asarray(to_rgb(la)) == 255)
    cmyk = Image.new("CMYK", (3, 3), (0, 0, 0, 0))
    assert np.all(np.asarray(to_rgb(cmyk)) == 255)
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    assert tuple(np.asarray(to_rgb(pal))[0, 0]) == (10, 20, 30)
    pal.info["transparency"] = 0
    assert tuple(np.asarray(to_rgb(pal))[0, 0]) == (255, 255, 255)
    i16 = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert np.all(np.asarray(to_rgb(i16)) == 255)
    for mode_img in (grey, cmyk, pal):  # every scheme accepts any mode
        assert get_scheme("imagenet")(mode_img).shape == (3, 224, 224)


def test_register_and_unknown_scheme():
    @register_scheme("test_ones")
    def ones(img):
        return torch.ones(1, 2, 2)

    assert "test_ones" in available_schemes() and get_scheme("test_ones")(None).sum() == 4
    with pytest.raises(UserError, match="unknown preprocessing scheme"):
        get_scheme("nope")


def test_train_augmentation_is_a_crop_of_the_square():
    torch.manual_seed(0)
    x = get_scheme("imagenet_train")(coord_image(256, 256))
    assert x.shape == (3, 224, 224)
    g = x[1, :, 0] + 128  # rows stay consecutive y coordinates within [0, 256)
    assert torch.all(g[1:] - g[:-1] == 1) and 0 <= g[0] <= 32


@pytest.mark.parametrize("name,fill", [("efficientnet_esp", 0), ("efficientnet_fit", 255), ("imagenet_fit", 255),
                                       ("torchvision_esp", 0), ("torchvision_fit", 255)])
def test_fit_schemes_keep_the_whole_image_and_pad_with_their_colour(name, fill):
    # 448 x 224 (w x h) halves to 224 x 112 at rows [56, 168); the left and right borders survive (no crop)
    a = np.full((224, 448, 3), 90, np.uint8)
    a[:, :8] = 200  # a left stripe that a centre-square crop would cut away
    x = get_scheme(name)(Image.fromarray(a))
    norm = {"efficientnet": lambda v: (v - 127) / 128, "imagenet": lambda v: v - 128.0,
            "torchvision": lambda v: (v / 255 - 0.485) / 0.229}[name.split("_")[0]]
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[0, :56], torch.full((56, 224), norm(fill)), atol=1e-5)  # padding
    assert torch.allclose(x[0, 100, 0:3], torch.full((3,), norm(200)), atol=1e-5)  # stripe, now 4 px wide
    assert torch.allclose(x[0, 100, 100], torch.tensor(norm(90)), atol=1e-5)
    esp = get_scheme("esp")(Image.fromarray(a))
    if name.startswith("imagenet"):  # same geometry as the paper's ESP scheme, other padding
        assert torch.equal(x[:, 56:168], esp[:, 56:168])
