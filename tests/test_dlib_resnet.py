"""dlib-resnet29: manifest decoding, architecture, preprocessing and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.backbones import create_backbone, get_spec, list_backbones
from probes.errors import ImageError, UnknownNameError, WeightFileError
from probes.images import load_image


@pytest.fixture(scope="module")
def dlib(faceapi_weights):
    return create_backbone("dlib-resnet29")


def test_registry_lists_and_rejects():
    assert "dlib-resnet29" in list_backbones()
    with pytest.raises(UnknownNameError, match="registered: .*dlib-resnet29"):
        get_spec("no-such-net")


def test_tap_layers_shapes(dlib):
    shapes = {}
    hooks = [dlib.layer(n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in dlib.tap_layers]
    try:
        dlib(torch.rand(2, 3, 150, 150))
    finally:
        for h in hooks:
            h.remove()
    assert len(dlib.tap_layers) == 17  # 16 stages (stem, 14 blocks, pool) + fc
    assert shapes["conv32_down"] == (2, 32, 35, 35)
    assert shapes["conv64_down"] == (2, 64, 17, 17)
    assert shapes["conv128_down"] == (2, 128, 8, 8)
    assert shapes["conv256_down"] == (2, 256, 4, 4)
    assert shapes["conv256_down_out"] == (2, 256, 2, 2)
    assert shapes["pool"] == (2, 256) and shapes["fc"] == (2, 128)
    with pytest.raises(UnknownNameError, match="valid layers"):
        dlib.layer("conv999")


def test_same_person_closer_than_different(dlib, data_root):
    lfw = data_root / "lfw_home" / "lfw"
    a = load_image(lfw / "George_W_Bush" / "George_W_Bush_0001.jpg")
    b = load_image(lfw / "George_W_Bush" / "George_W_Bush_0002.jpg")
    c = load_image(lfw / "Colin_Powell" / "Colin_Powell_0001.jpg")
    e = dlib.embed(np.stack([a, b, c]), layout="lfw")
    assert e.shape == (3, 128) and e.dtype == np.float32
    assert 1.2 < np.linalg.norm(e, axis=1).mean() < 1.7  # dlib descriptors are not unit length
    same, diff = np.linalg.norm(e[0] - e[1]), np.linalg.norm(e[0] - e[2])
    assert same < 0.6 < diff  # dlib's own decision rule


def test_gradients_reach_the_input(dlib):
    x = torch.rand(1, 3, 180, 160, requires_grad=True)
    dlib(x).norm().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_state_dict_roundtrip_and_wrong_shapes(dlib, tmp_path):
    path = tmp_path / "dlib.pt"
    torch.save(dlib.net.state_dict(), path)
    again = create_backbone("dlib-resnet29", weights=path)
    x = torch.rand(1, 3, 150, 150)
    torch.testing.assert_close(again(x), dlib(x))
    state = dlib.net.state_dict()
    state["fc.weight"] = state["fc.weight"][:, :100]
    del state["conv64_1.conv1.scale_bias"]
    torch.save(state, path)
    with pytest.raises(WeightFileError, match=r"missing keys.*conv64_1.*wrong shapes.*fc\.weight"):
        create_backbone("dlib-resnet29", weights=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="dlib.pt"):
        create_backbone("dlib-resnet29", weights=path)


def test_bad_image_inputs(dlib):
    with pytest.raises(ImageError, match="N x 3 x H x W"):
        dlib(torch.rand(3, 150, 150))
    with pytest.raises(ImageError, match="uint8"):
        dlib.embed(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ImageError, match="60x60 px are too small.*dlib-resnet29"):
        dlib.embed(np.zeros((1, 60, 60, 3), np.uint8))
    with pytest.raises(UnknownNameError, match="no crop for layout"):
        dlib.embed(np.zeros((1, 150, 150, 3), np.uint8), layout="casia")
