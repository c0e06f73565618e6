"""LayerCapture on dlib-resnet29: widths, agreement with embed, projection, cache, hook hygiene."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from probes.backbones import create_backbone
from probes.capture import LayerCapture, embed_dataset
from probes.datasets import load_utkface
from probes.errors import FaceprobeError, ImageError, UnknownNameError

WIDTHS = {"conv32": 32, "conv64": 64, "conv128": 128, "conv256": 256}


@pytest.fixture(scope="module")
def backbone(faceapi_weights):
    return create_backbone("dlib-resnet29")


@pytest.fixture(scope="module")
def faces(data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_utkface(data_root, max_images=8, seed=0)


def _no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_all_tap_layers_have_the_right_widths(backbone, faces):
    out = LayerCapture(backbone, batch_size=3, progress=False).capture(faces)
    assert list(out) == list(backbone.tap_layers) and len(out) == 17
    for name, values in out.items():
        expected = {"pool": 256, "fc": 128}.get(name) or WIDTHS[name.split("_")[0]]
        assert values.shape == (8, expected), name
        assert values.dtype == np.float32 and np.isfinite(values).all()
    # The last block is post-ReLU, so its average is the "pool" input: equal to pool's output.
    np.testing.assert_allclose(out["conv256_down_out"], out["pool"], rtol=1e-6, atol=1e-6)
    # fc is the embedding itself, whatever the batching.
    np.testing.assert_allclose(out["fc"], backbone.embed(faces.load_images(), "utkface"), atol=1e-5)
    np.testing.assert_allclose(out["fc"], embed_dataset(backbone, faces, batch_size=5, progress=False), atol=1e-5)
    assert _no_hooks(backbone)


def test_array_input_uses_layout(backbone, faces):
    images = faces.load_images()
    capture = LayerCapture(backbone, layers=["fc"], progress=False)
    as_utk = capture.capture(images, layout="utkface")["fc"]
    as_chip = capture.capture(images)["fc"]  # default layout "chip": a different crop
    np.testing.assert_allclose(as_utk, capture.capture(faces)["fc"], atol=1e-5)
    assert not np.allclose(as_chip, as_utk, atol=1e-3)
    with pytest.raises(ImageError, match="uint8"):
        capture.capture(images.astype(np.float32))


def test_projection_shape_and_determinism(backbone, faces):
    layers = ["conv32_1", "conv128_2", "pool"]
    plain = LayerCapture(backbone, layers=layers, progress=False).capture(faces)
    a = LayerCapture(backbone, layers=layers, projection_dim=48, seed=5, progress=False).capture(faces)
    b = LayerCapture(backbone, layers=layers, projection_dim=48, seed=5, progress=False).capture(faces)
    c = LayerCapture(backbone, layers=layers, projection_dim=48, seed=6, progress=False).capture(faces)
    assert {k: v.shape[1] for k, v in a.items()} == {"conv32_1": 32, "conv128_2": 48, "pool": 48}
    np.testing.assert_array_equal(a["conv32_1"], plain["conv32_1"])  # narrower than 48: untouched
    for name in ("conv128_2", "pool"):
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.allclose(a[name], c[name])
    assert not np.allclose(a["conv128_2"][:, :32], a["pool"][:, :32])  # one matrix per layer
    matrix = LayerCapture(backbone, layers=layers, projection_dim=48, seed=5).projection("pool", 256)
    np.testing.assert_allclose(a["pool"], plain["pool"] @ matrix, rtol=1e-4, atol=1e-5)
    assert abs(matrix.std() * np.sqrt(48) - 1) < 0.05  # N(0, 1) / sqrt(dim)


def test_cache_hit_returns_identical_arrays(backbone, faces, tmp_path):
    kwargs = {"layers": ["conv64_1", "fc"], "projection_dim": 16, "cache_dir": tmp_path, "progress": False}
    first = LayerCapture(backbone, **kwargs)
    out1 = first.capture(faces)
    assert not first.last_from_cache
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp file left behind
    second = LayerCapture(backbone, **kwargs)
    out2 = second.capture(faces)
    assert second.last_from_cache
    assert list(out2) == list(out1)
    for name in out1:
        np.testing.assert_array_equal(out1[name], out2[name])
    # Anything that changes the result changes the key.
    other = LayerCapture(backbone, **{**kwargs, "projection_dim": 8})
    assert other.cache_key(faces) != first.cache_key(faces)
    assert first.cache_key(faces.subset([1, 0, 2, 3, 4, 5, 6, 7])) != first.cache_key(faces)
    assert first.cache_key(faces, layout="chip") != first.cache_key(faces)
    images = faces.load_images()
    arr1 = first.capture(images, layout="utkface")
    assert not first.last_from_cache and len(list(tmp_path.iterdir())) == 2
    np.testing.assert_allclose(arr1["fc"], out1["fc"], atol=1e-5)
    assert first.capture(images, layout="utkface") and first.last_from_cache


def test_hooks_removed_after_a_forward_that_raises(backbone, faces):
    capture = LayerCapture(backbone, progress=False)

    def explode(module, inputs):
        raise RuntimeError("boom in conv128_down")

    injected = backbone.layer("conv128_down").register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            capture.capture(faces)
        # Hooks on earlier layers fired before the failure, yet none is left on any module.
        assert all(not m._forward_hooks for m in backbone.modules())
    finally:
        injected.remove()
    with pytest.raises(UnknownNameError, match="layout 'nope'"):
        capture.capture(faces, layout="nope")  # fails inside forward, in preprocess
    assert _no_hooks(backbone)
    assert not backbone.training
    assert capture.capture(faces)["fc"].shape == (8, 128)  # still usable afterwards


def test_unknown_layer_and_pool_errors():
    net = create_backbone("dlib-resnet29", pretrained=False)
    with pytest.raises(UnknownNameError, match="valid layers: conv32_down, .*fc"):
        LayerCapture(net, layers=["conv32_down", "conv999"])
    with pytest.raises(UnknownNameError, match="avg, max"):
        LayerCapture(net, pool="median")
    images = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    out = LayerCapture(net, layers=["conv64_down"], pool="max", progress=False).capture(images)
    avg = LayerCapture(net, layers=["conv64_down"], pool="avg", progress=False).capture(images)
    assert out["conv64_down"].shape == (3, 64) and (out["conv64_down"] >= avg["conv64_down"] - 1e-6).all()
    assert _no_hooks(net)


def test_layer_that_runs_twice_is_refused():
    net = create_backbone("dlib-resnet29", pretrained=False)

    def rerun_conv32_1(module, inputs, output):
        net.net.conv32_1(inputs[0])  # a second call of the captured block in the same forward

    handle = net.net.conv32_2.register_forward_hook(rerun_conv32_1)
    try:
        with pytest.raises(FaceprobeError, match="more than once"):
            LayerCapture(net, layers=["conv32_1"], progress=False).capture(
                np.zeros((1, 150, 150, 3), np.uint8))
    finally:
        handle.remove()
    assert _no_hooks(net)
