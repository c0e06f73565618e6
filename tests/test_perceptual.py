"""LPIPS with a local trunk: loading, no network, and the metric's behaviour."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probes.errors import ImageError, UnknownNameError, WeightFileError
from probes.perceptual import create_lpips, lpips_features, perceptual_distance, read_lpips_checkpoint

# LPIPS' own example patches (imgs/ in richzhang/PerceptualSimilarity) and the
# distances lpips 0.1.4 with torchvision's AlexNet gives for them.
IMAGES_ENV = "FACEPROBE_LPIPS_IMAGES"
REFERENCE = {"p0": 0.7219, "p1": 0.1376}


def _ckpt(name: str) -> Path:
    from probes import weights

    try:
        return weights.weight_path(name)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        pytest.skip(f"LPIPS checkpoint unavailable: {exc}")


@pytest.fixture(scope="module")
def alex_ckpt() -> Path:
    return _ckpt("alexnet.ckpt")


@pytest.fixture(scope="module")
def alex(alex_ckpt):
    return create_lpips("alex")


def _face_like(seed: int = 0, size: int = 64) -> torch.Tensor:
    """A smooth, structured [0, 1] RGB image (blobs and edges), 1 x 3 x size x size."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = torch.zeros(3, size, size)
    for _ in range(6):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([1.6, 1.6, 0.5]) + torch.tensor([-0.8, -0.8, 0.15]))
        disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2).float()
        img += disc * torch.rand(3, 1, 1, generator=g)
    img += 0.3 * (xx + 1)[None] * torch.rand(3, 1, 1, generator=g)
    return (img / img.max()).clamp(0, 1)[None]


def test_checkpoint_holds_trunk_and_heads(alex_ckpt):
    flat = read_lpips_checkpoint(alex_ckpt)
    convs = sorted(k for k in flat if k.startswith("AlexNet_0/"))
    assert len(convs) == 10  # 5 convs x (kernel, bias)
    assert flat["AlexNet_0/Conv_0/kernel"].shape == (11, 11, 3, 64)  # HWIO
    assert all(flat[f"NetLinLayer_{i}/Conv_0/kernel"].dtype == np.float32 for i in range(5))


def test_unpickler_refuses_anything_but_numpy(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(WeightFileError, match=r"evil\.ckpt.*(posix|os)\.system"):
        read_lpips_checkpoint(evil)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(pickle.dumps({"a": np.zeros(100, np.float32)})[:60])
    with pytest.raises(WeightFileError, match="cut.ckpt"):
        read_lpips_checkpoint(truncated)
    flat_array = tmp_path / "array.ckpt"
    flat_array.write_bytes(pickle.dumps(np.zeros(3, np.float32)))
    with pytest.raises(WeightFileError, match="top level"):
        read_lpips_checkpoint(flat_array)


def test_trunk_is_the_checkpoint_and_heads_are_lpips_own(alex, alex_ckpt):
    flat = read_lpips_checkpoint(alex_ckpt)
    convs = [m for m in alex.net.modules() if isinstance(m, torch.nn.Conv2d)]
    for i, conv in enumerate(convs):
        kernel = torch.from_numpy(flat[f"AlexNet_0/Conv_{i}/kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(conv.weight, kernel)
        assert torch.equal(conv.bias, torch.from_numpy(flat[f"AlexNet_0/Conv_{i}/bias"]))
    for i, lin in enumerate(alex.lins):  # the heads lpips loaded from its wheel equal the checkpoint's
        head = torch.from_numpy(flat[f"NetLinLayer_{i}/Conv_0/kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(lin.model[-1].weight, head)
    assert not any(p.requires_grad for p in alex.parameters())
    assert not alex.training


def test_builds_without_network(alex_ckpt, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision cache
    model = create_lpips("alex")
    x = _face_like(1)
    assert model(2 * x - 1, 2 * x - 1).item() == pytest.approx(0.0, abs=1e-7)
    assert not any(tmp_path.iterdir())


def test_metric_behaves(alex):
    x, y = _face_like(2), _face_like(3)
    assert perceptual_distance(x, x).item() == pytest.approx(0.0, abs=1e-7)
    d_xy, d_yx = perceptual_distance(x, y), perceptual_distance(y, x)
    assert d_xy.shape == (1,) and d_xy.item() > 0.05
    assert d_xy.item() == pytest.approx(d_yx.item(), rel=1e-5)
    # A mild blur is closer than heavy noise; distance grows with the noise and light noise stays
    # closer than another image.
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    noisy = [(x + sigma * noise).clamp(0, 1) for sigma in (0.02, 0.05, 0.1, 0.2)]
    d = perceptual_distance(x, torch.cat([blurred, *noisy]))  # img0 broadcast over the batch
    assert d.shape == (5,) and 0 < d[0] < d[4]
    assert d[1] < d[2] < d[3] < d[4] and d[3] < d_xy.item()
    # [-1, 1] inputs with value_range, uint8 arrays, and create_lpips all agree.
    assert torch.allclose(perceptual_distance(2 * x - 1, 2 * y - 1, value_range=(-1, 1)), d_xy)
    def as_uint8(t):
        return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    assert perceptual_distance(as_uint8(x), as_uint8(y)).item() == pytest.approx(d_xy.item(), abs=5e-3)
    assert alex(2 * x - 1, 2 * y - 1).flatten().item() == pytest.approx(d_xy.item(), rel=1e-5)


def test_gradient_reaches_the_image(alex):
    x = _face_like(4).requires_grad_(True)
    perceptual_distance(x, _face_like(5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_inputs_are_named(alex, alex_ckpt):
    x = _face_like(6)
    with pytest.raises(ImageError, match="img1.*value_range"):
        perceptual_distance(x, x * 255)
    with pytest.raises(ImageError, match="differ in shape"):
        perceptual_distance(x, _face_like(6, size=48))
    with pytest.raises(ImageError, match="img0 must be RGB"):
        perceptual_distance(x[:, :1], x[:, :1])
    with pytest.raises(ImageError, match=">= 31 px"):
        perceptual_distance(x[..., :20, :20], x[..., :20, :20])
    with pytest.raises(UnknownNameError, match="alex, vgg"):
        perceptual_distance(x, x, net="squeeze")
    with pytest.raises(WeightFileError, match="vgg16.ckpt.*AlexNet_0"):
        create_lpips("alex", weights=_ckpt("vgg16.ckpt"))


def test_pooled_features_are_lpips_view(alex_ckpt):
    rng = np.random.default_rng(0)
    x0 = rng.integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    x1 = np.clip(x0.astype(int) + rng.integers(-60, 60, x0.shape), 0, 255).astype(np.uint8)
    f0, f1 = lpips_features(x0, batch_size=4), lpips_features(x1)
    assert f0.shape == (6, 64 + 192 + 384 + 256 + 256) and f0.dtype == np.float64 and np.isfinite(f0).all()
    # Float input in [0, 1] reads the same as uint8.
    np.testing.assert_allclose(lpips_features(torch.from_numpy(x0).permute(0, 3, 1, 2) / 255.0), f0, atol=1e-5)
    # Pooling before comparing can only lose difference (Jensen): ||mean f0 - mean f1||^2 <= LPIPS, > 0 here.
    pooled = ((f0 - f1) ** 2).sum(1)
    lpips_d = perceptual_distance(x0, x1).numpy()
    assert (pooled > 0).all() and (pooled <= lpips_d + 1e-5).all()
    with pytest.raises(ImageError, match="needs sides >= 31"):
        lpips_features(x0[:, :20, :20])
    with pytest.raises(UnknownNameError, match="unknown LPIPS net 'squeeze'"):
        lpips_features(x0, net="squeeze")


def test_vgg_trunk_loads():
    path = _ckpt("vgg16.ckpt")
    model = create_lpips("vgg")
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    flat = read_lpips_checkpoint(path)
    assert torch.equal(convs[12].weight, torch.from_numpy(flat["VGG16_0/Conv_12/kernel"]).permute(3, 2, 0, 1))
    x = _face_like(7)
    assert model(2 * x - 1, 2 * x - 1).item() == pytest.approx(0.0, abs=1e-7)


def test_reference_patches(alex):
    folder = os.environ.get(IMAGES_ENV)
    if not folder or not all((Path(folder) / f"ex_{k}.png").is_file() for k in ("ref", "p0", "p1")):
        pytest.skip(f"set {IMAGES_ENV} to a folder with LPIPS' ex_ref.png, ex_p0.png, ex_p1.png")
    from probes.images import load_image

    ref, p0, p1 = (load_image(Path(folder) / f"ex_{k}.png") for k in ("ref", "p0", "p1"))
    assert perceptual_distance(ref, p0).item() == pytest.approx(REFERENCE["p0"], abs=5e-4)
    assert perceptual_distance(ref, p1).item() == pytest.approx(REFERENCE["p1"], abs=5e-4)


def test_no_work_at_import():
    import subprocess
    import sys

    code = "import sys, probes.perceptual; print('lpips' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
