"""hse-mobilenet-vggface2 and mobileface: registry, capture, identity, gradients, labeller, self-check."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from probes.backbones import create_backbone, get_spec, list_backbones
from probes.backbones.registry import FaceBackbone
from probes.capture import LayerCapture
from probes.errors import UnknownNameError, WeightFileError
from probes.images import load_image

NAMES = ("hse-mobilenet-vggface2", "mobileface")


@pytest.fixture(scope="module")
def human_weights():
    from probes import weights

    try:
        for f in ("faceres.json", "faceres.bin", "mobileface.json", "mobileface.bin"):
            weights.weight_path(f)
    except WeightFileError as exc:
        pytest.skip(f"human-models weights not fetched (python -m probes.weights fetch --package human-models): {exc}")
    return weights.weights_dir()


@pytest.fixture(scope="module")
def backbones(human_weights):
    return {name: create_backbone(name) for name in NAMES}


def test_registered_with_their_preprocessing():
    assert set(NAMES) <= set(list_backbones())
    hse, mf = get_spec("hse-mobilenet-vggface2"), get_spec("mobileface")
    assert (hse.input_size, hse.embedding_size, hse.colour_order) == ((224, 224), 1024, "BGR")
    assert hse.mean == (103.939, 116.779, 123.68) and hse.std == (1.0, 1.0, 1.0)
    assert hse.crop_for("lfw") == (0.2, 0.2, 0.6, 0.6)
    assert (mf.input_size, mf.embedding_size, mf.mean, mf.std) == ((112, 112), 256, (0.0,) * 3, (1.0,) * 3)
    assert mf.align_template is not None and len(mf.align_template) == 5
    assert hse.weight_files == ("faceres.json", "faceres.bin")
    assert hse.embedding_layer in hse.tap_layers and mf.embedding_layer in mf.tap_layers


@pytest.mark.parametrize("name", NAMES)
def test_tiny_capture_through_every_tap(backbones, name):
    backbone = backbones[name]
    images = np.random.default_rng(0).integers(0, 256, size=(2, 130, 120, 3), dtype=np.uint8)
    result = LayerCapture(backbone, progress=False).capture(images)
    assert list(result) == list(backbone.tap_layers)
    emb = result[backbone.spec.embedding_layer]
    assert emb.shape == (2, backbone.spec.embedding_size)
    np.testing.assert_allclose(emb, backbone.embed(images), rtol=1e-4, atol=1e-4)
    assert all(v.shape[0] == 2 and np.isfinite(v).all() for v in result.values())
    with pytest.raises(UnknownNameError, match="valid layers: conv1"):
        backbone.layer("no_such_layer")


def test_tap_shapes_follow_the_graph(backbones):
    shapes = {}
    hse = backbones["hse-mobilenet-vggface2"]
    hooks = [hse.layer(n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in ("conv1", "conv_pw_1", "conv_pw_13", "global_pooling", "feats")]
    try:
        with torch.no_grad():
            hse(torch.rand(1, 3, 224, 224))
    finally:
        for h in hooks:
            h.remove()
    assert shapes == {"conv1": (1, 32, 112, 112), "conv_pw_1": (1, 64, 112, 112), "conv_pw_13": (1, 1024, 7, 7),
                      "global_pooling": (1, 1024), "feats": (1, 256)}


@pytest.mark.parametrize("name", NAMES)
def test_same_person_closer_than_different(backbones, data_root, name):
    lfw = data_root / "lfw_home" / "lfw"
    images = np.stack([load_image(lfw / p) for p in ("George_W_Bush/George_W_Bush_0001.jpg",
                                                      "George_W_Bush/George_W_Bush_0002.jpg",
                                                      "Colin_Powell/Colin_Powell_0001.jpg")])
    e = backbones[name].embed(images, layout="lfw")
    assert e.shape == (3, get_spec(name).embedding_size) and e.dtype == np.float32
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    assert e[0] @ e[1] > e[1] @ e[2] + 0.2


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_input(backbones, name):
    x = torch.rand(1, 3, 130, 120, requires_grad=True)
    backbones[name](x).norm().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_any_node_is_reachable(backbones):
    net = backbones["mobileface"].net
    out = net(torch.rand(1, 3, 112, 112) * 255, outputs=["dense/MatMul", "batchnorm0/add_1"])
    assert out["dense/MatMul"].shape == (1, 256)
    with pytest.raises(UnknownNameError, match="valid nodes: .*batchnorm0/add_1"):
        net(torch.rand(1, 3, 112, 112), outputs=["dense"])


def test_random_init_is_seeded_and_untrained(human_weights):
    a = create_backbone("mobileface", pretrained=False)
    b = create_backbone("mobileface", pretrained=False)
    assert a.weights_id == "random-init"
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), create_backbone("mobileface")(x))


def test_changed_weight_file_is_refused(human_weights, tmp_path, monkeypatch):
    folder = tmp_path / "weights" / "human-models"
    folder.mkdir(parents=True)
    for f in ("mobileface.json", "mobileface.bin"):
        shutil.copy(human_weights / "human-models" / f, folder / f)
    data = bytearray((folder / "mobileface.bin").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200_000] = bytes(200_000)  # zero a tenth of the weights
    (folder / "mobileface.bin").write_bytes(bytes(data))
    with monkeypatch.context() as patch:
        patch.setenv("FACEPROBE_HOME", str(tmp_path))
        with pytest.raises(WeightFileError, match="mobileface.bin has sha256 .* expected 403b53d9"):
            create_backbone("mobileface")
    # the same graph with other weights loads by path, and its weights id says so
    other = create_backbone("mobileface", weights=folder / "mobileface.json")
    assert len(other.weights_id) == 64 and other.weights_id != create_backbone("mobileface").weights_id
    from probes.backbones.check import check_backbone

    assert not all(r.ok for r in check_backbone("mobileface", backbone=other, inputs=("synthetic-0",))
                   if r.ok is not None)


@pytest.mark.parametrize("name", NAMES)
def test_self_check_passes_and_catches_a_wrong_crop(backbones, name, tmp_path):
    from probes.backbones.check import check_backbone

    backbone = backbones[name]
    rows = check_backbone(name, backbone=backbone)
    checked = [r for r in rows if r.ok is not None]
    assert len(checked) >= 3 and all(r.ok for r in checked)
    spec = backbone.spec
    shifted = {k: (t + 0.05, l, h, w) for k, (t, l, h, w) in spec.crops.items()}
    wrong = FaceBackbone(dataclasses.replace(spec, crops=shifted), backbone.net, backbone.weights_id)
    rows = check_backbone(name, backbone=wrong, inputs=("synthetic-1", "synthetic-2"))
    assert [r.ok for r in rows] == [False, False]
    wrong_scale = FaceBackbone(dataclasses.replace(spec, std=tuple(2 * s for s in spec.std)), backbone.net,
                               backbone.weights_id)
    assert [r.ok for r in check_backbone(name, backbone=wrong_scale, inputs=("synthetic-0",))] == [False]


def test_hse_labeller(human_weights, data_root):
    from probes.labellers import create_labeller, list_labellers

    assert "hse-agegender" in list_labellers()
    labeller = create_labeller("hse-agegender")
    assert labeller.attributes == ("age", "sex", "p_male")
    files = sorted((data_root / "utkface").glob("*.jpg"))[:200:40]
    images = np.stack([load_image(f) for f in files])
    out = labeller.predict(images, layout="utkface")
    ages = np.array([int(f.name.split("_")[0]) for f in files])
    assert out["age"].shape == (5,) and np.all((out["age"] >= 1) & (out["age"] <= 100))
    assert np.abs(out["age"] - ages).mean() < 15
    assert set(np.unique(out["sex"])) <= {0, 1} and np.all((out["p_male"] >= 0) & (out["p_male"] <= 1))
    age, p_male = labeller(torch.from_numpy(images[:1]).permute(0, 3, 1, 2).float().div(255).requires_grad_(),
                           "utkface")
    assert age.requires_grad and p_male.shape == (1,)
    with pytest.raises(UnknownNameError, match="known layouts"):
        labeller.predict(images, layout="nope")


def test_hse_age_readout_follows_the_authors_code(human_weights):
    """Class i is age i + 1; "top2" renormalises the two most probable classes, "expected" uses all."""
    from probes.labellers.hse import HSEAgeGenderLabeller

    labeller = HSEAgeGenderLabeller()
    probs = torch.zeros(2, 100)
    probs[0, 29], probs[0, 39], probs[0, 89] = 0.6, 0.3, 0.1  # ages 30, 40, 90
    probs[1, 0] = 1.0
    probs.requires_grad_()
    top2 = labeller.read_age(probs)
    assert torch.allclose(top2, torch.tensor([(0.6 * 30 + 0.3 * 40) / 0.9, 1.0]))
    top2.sum().backward()
    assert probs.grad[0, 89] == 0 and probs.grad[0, 39] != 0  # the third class does not count
    expected = HSEAgeGenderLabeller(age_readout="expected").read_age(probs.detach())
    assert torch.allclose(expected, torch.tensor([0.6 * 30 + 0.3 * 40 + 0.1 * 90, 1.0]))
    with pytest.raises(UnknownNameError, match="age_readout"):
        HSEAgeGenderLabeller(age_readout="median")


def test_self_check_covers_dlib(faceapi_weights):
    from probes.backbones.__main__ import main
    from probes.backbones.check import check_backbone

    backbone = create_backbone("dlib-resnet29")
    assert all(r.ok for r in check_backbone("dlib-resnet29", backbone=backbone) if r.ok is not None)
    spec = backbone.spec
    wrong = FaceBackbone(dataclasses.replace(spec, colour_order="BGR"), backbone.net, backbone.weights_id)
    assert [r.ok for r in check_backbone("dlib-resnet29", backbone=wrong, inputs=("synthetic-0",))] == [False]
    assert main(["check", "vgg16-vggface"]) == 1  # no pinned reference: a clear error, not a pass
