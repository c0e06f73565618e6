"""Backbones whose weights users bring: loaders tested with files of the public formats.

Each file is written here with random values under the real key names and
shapes (enumerated independently of the model code, from the public
architectures), then loaded through ``create_backbone``. Where a detail of the
original network matters (Caffe strides, pool rounding, flatten order), a
functional re-computation from the file's own tensors checks the module.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probes.backbones import FaceBackbone, create_backbone, get_spec
from probes.backbones.arcface import IResNet
from probes.errors import FaceprobeError, UnknownNameError, WeightFileError
from probes.safe_pickle import read_numpy_pickle

GEN_SEED = 0


# --------------------------------------------------------------------------- helpers


def _random_tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """He-scaled weights, BN statistics with positive variances, small biases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[name] = torch.tensor(1000, dtype=torch.long)
        elif leaf == "running_var":
            out[name] = torch.rand(shape, generator=g) + 0.5
        elif leaf == "weight" and len(shape) == 1:  # BN scale or PReLU slope
            out[name] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif leaf == "weight":
            fan_in = int(np.prod(shape[1:]))
            out[name] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:  # biases, running means
            out[name] = torch.randn(shape, generator=g) * 0.05
    return out


def _bn(prefix: str, channels: int, counter: bool) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.{k}": (channels,) for k in ("weight", "bias", "running_mean", "running_var")}
    if counter:
        keys[f"{prefix}.num_batches_tracked"] = ()
    return keys


def _constant_tensors(shapes: dict[str, tuple[int, ...]], value: float = 1.0) -> dict[str, torch.Tensor]:
    """Right names and shapes at almost no bytes: one stored value broadcast
    (stride 0), for checks of key handling that need no realistic values."""
    return {k: torch.full((), value).expand(v) if k.rsplit(".", 1)[-1] != "num_batches_tracked"
            else torch.tensor(0) for k, v in shapes.items()}


def _images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _hooks(backbone, names):
    seen = {}
    handles = [backbone.layer(n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone())) for n in names]
    return seen, handles


def _bn_eval(x, file, prefix):
    return F.batch_norm(x, file[f"{prefix}.running_mean"], file[f"{prefix}.running_var"],
                        file[f"{prefix}.weight"], file[f"{prefix}.bias"], False, 0.0, 1e-5)


class _Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2.7's cPickle (protocol 2) did: str and bytes
    become py2 ``str`` opcodes (no ``_codecs.encode``), the format of
    ``resnet50_ft_weight.pkl`` read with ``encoding='latin1'``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _write_py2_pickle(obj, path):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x under Python 2 named its module numpy.core, as the real file does.
    path.write_bytes(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


# --------------------------------------------------------------------------- public key layouts


def vgg_face_dag_shapes() -> dict[str, tuple[int, ...]]:
    """Keys of Albanie's vgg_face_dag.pth."""
    shapes, cin = {}, 3
    for block, convs, cout in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)):
        for i in range(1, convs + 1):
            shapes[f"conv{block}_{i}.weight"] = (cout, cin, 3, 3)
            shapes[f"conv{block}_{i}.bias"] = (cout,)
            cin = cout
    shapes.update({"fc6.weight": (4096, 25088), "fc6.bias": (4096,), "fc7.weight": (4096, 4096),
                   "fc7.bias": (4096,), "fc8.weight": (2622, 4096), "fc8.bias": (2622,)})
    return shapes


def resnet50_ft_shapes() -> dict[str, tuple[int, ...]]:
    """Keys of cydonia999's resnet50_ft_weight.pkl (Caffe conversion: no BN counters)."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64, False)}
    cin = 64
    for layer, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            shapes.update(_bn(f"{p}.bn1", planes, False))
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(_bn(f"{p}.bn2", planes, False))
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes.update(_bn(f"{p}.bn3", planes * 4, False))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes * 4, False))
            cin = planes * 4
    shapes.update({"fc.weight": (8631, 2048), "fc.bias": (8631,)})
    return shapes


def iresnet50_shapes() -> dict[str, tuple[int, ...]]:
    """Keys of arcface_torch's iresnet50 backbone.pth (a PyTorch state dict)."""
    shapes = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64, True), "prelu.weight": (64,)}
    cin = 64
    for layer, (blocks, planes) in enumerate(zip((3, 4, 14, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            shapes.update(_bn(f"{p}.bn1", cin, True))
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            shapes.update(_bn(f"{p}.bn2", planes, True))
            shapes[f"{p}.prelu.weight"] = (planes,)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(_bn(f"{p}.bn3", planes, True))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes, True))
            cin = planes
    shapes.update(_bn("bn2", 512, True))
    shapes.update({"fc.weight": (512, 512 * 7 * 7), "fc.bias": (512,), **_bn("features", 512, True)})
    return shapes


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    tensors = _random_tensors(vgg_face_dag_shapes(), GEN_SEED)
    path = tmp_path_factory.mktemp("vggface") / "vgg_face_dag.pth"
    # The 2017 conversion predates torch's zip format: write the legacy one.
    torch.save(tensors, path, _use_new_zipfile_serialization=False)
    yield path, tensors
    path.unlink()  # 0.5 GB: do not leave it in pytest's kept temp folders


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    tensors = {k: v.numpy() for k, v in _random_tensors(resnet50_ft_shapes(), GEN_SEED + 1).items()}
    path = tmp_path_factory.mktemp("vggface2") / "resnet50_ft_weight.pkl"
    _write_py2_pickle(tensors, path)
    yield path, tensors
    path.unlink()


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    tensors = _random_tensors(iresnet50_shapes(), GEN_SEED + 2)
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(tensors, path)
    yield path, tensors
    path.unlink()


# --------------------------------------------------------------------------- common behaviour


@pytest.mark.parametrize("name, release", [("vgg16-vggface", "vgg_face_dag.pth"),
                                           ("resnet50-vggface2", "resnet50_ft_weight.pkl"),
                                           ("arcface-r50", "backbone.pth"),
                                           ("arcface-r50-onnx", "w600k_r50.onnx")])
def test_weights_are_the_users_to_bring(name, release, tmp_path):
    with pytest.raises(WeightFileError, match="user's to bring") as info:
        create_backbone(name)
    message = str(info.value)
    assert release in message and "Accepted formats" in message
    missing = tmp_path / "nowhere.bin"
    with pytest.raises(WeightFileError, match="does not exist") as info:
        create_backbone(name, weights=missing)
    assert str(missing) in str(info.value)


def test_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightFileError, match="junk.pth"):
        create_backbone("vgg16-vggface", weights=path)


# --------------------------------------------------------------------------- VGG-Face


@pytest.mark.slow
def test_vggface_loads_vgg_face_dag_and_embeds(vgg_file):
    path, file = vgg_file
    backbone = create_backbone("vgg16-vggface", weights=path)
    assert backbone.weights_id != "random-init" and len(backbone.weights_id) == 64
    assert torch.equal(backbone.net.conv3_2.weight, file["conv3_2.weight"])
    seen, handles = _hooks(backbone, ["pool1", "pool5", "relu7"])
    emb = backbone.embed(_images(1, 250, 1), layout="lfw")
    for h in handles:
        h.remove()
    assert emb.shape == (1, 4096) and np.isfinite(emb).all() and (emb >= 0).all()
    assert seen["pool1"].shape == (1, 64, 112, 112) and seen["pool5"].shape == (1, 512, 7, 7)
    # fc6 is vgg_face_dag's Linear over pool5 flattened in (C, H, W) order.
    x = F.relu(F.linear(seen["pool5"].flatten(1), file["fc6.weight"], file["fc6.bias"]))
    ref = F.relu(F.linear(x, file["fc7.weight"], file["fc7.bias"]))
    np.testing.assert_allclose(emb, ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    np.testing.assert_allclose(seen["relu7"].numpy(), emb, rtol=1e-6)


@pytest.mark.parametrize("name, expected", [
    ("vgg16-vggface", [255 - 129.1863, -104.7624, -93.5940]),  # RGB, RGB mean
    ("resnet50-vggface2", [-91.4953, -103.8827, 255 - 131.0912]),  # BGR, BGR mean
    ("arcface-r50", [1.0, -1.0, -1.0]),  # RGB, (x - 127.5) / 127.5
    ("arcface-r50-onnx", [1.0, -1.0, -1.0]),
])
def test_colour_order_and_normalisation(name, expected):
    # Preprocessing depends on the spec only: no need to build the network.
    backbone = FaceBackbone(get_spec(name), torch.nn.Identity(), "none")
    red = torch.zeros(1, 3, 250, 250)
    red[:, 0] = 1.0
    for layout in ("chip", "lfw"):
        x = backbone.preprocess(red, layout)
        assert tuple(x.shape[-2:]) == get_spec(name).input_size
        np.testing.assert_allclose(x[0, :, x.shape[-2] // 2, x.shape[-1] // 2].numpy(), expected, atol=1e-3)


def test_vggface_wrong_key_and_shape_are_named(tmp_path):
    shapes = vgg_face_dag_shapes()
    del shapes["conv4_2.bias"]
    shapes["conv1_1.weight"] = (64, 3, 5, 5)
    shapes["fc6.weight"] = (4096, 9216)  # e.g. a checkpoint trained on smaller inputs
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(_constant_tensors(shapes), path)
    with pytest.raises(WeightFileError) as info:
        create_backbone("vgg16-vggface", weights=path)
    message = str(info.value)
    assert str(path) in message
    for key in ("conv4_2.bias", "conv1_1.weight", "fc6.weight"):
        assert key in message


# --------------------------------------------------------------------------- VGGFace2 ResNet-50


@pytest.mark.slow
def test_resnet50_vggface2_loads_py2_pickle(resnet_file):
    path, file = resnet_file
    assert b"cnumpy.core.multiarray\n_reconstruct" in path.read_bytes()[:4096]
    backbone = create_backbone("resnet50-vggface2", weights=path)
    net = backbone.net
    np.testing.assert_array_equal(net.layer3[5].bn3.running_var.numpy(),
                                  file["layer3.5.bn3.running_var"])
    # Caffe ResNet: the stride is on the first 1x1 conv of layers 2-4.
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    taps = ["stem", "layer1", "layer2.0", "layer4", "pool", "embedding"]
    seen, handles = _hooks(backbone, taps)
    x = backbone.preprocess(torch.from_numpy(_images(1, 160, 2)).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        emb = backbone.net(x)
    for h in handles:
        h.remove()
    assert emb.shape == (1, 2048) and torch.isfinite(emb).all()
    assert seen["stem"].shape == (1, 64, 56, 56) and seen["layer4"].shape == (1, 2048, 7, 7)
    assert torch.equal(seen["embedding"], emb) and torch.equal(seen["pool"], emb)
    t = {k: torch.from_numpy(v) for k, v in file.items()}
    # Stem: 7x7/2 conv, BN, ReLU, Caffe's unpadded ceil-mode 3x3/2 max-pool.
    stem = F.relu(_bn_eval(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), t, "bn1"))
    stem = F.max_pool2d(stem, 3, 2, 0, ceil_mode=True)
    torch.testing.assert_close(seen["stem"], stem, rtol=1e-4, atol=1e-4)
    # layer2.0 from layer1's output, stride on conv1.
    h = seen["layer1"]
    out = F.relu(_bn_eval(F.conv2d(h, t["layer2.0.conv1.weight"], stride=2), t, "layer2.0.bn1"))
    out = F.relu(_bn_eval(F.conv2d(out, t["layer2.0.conv2.weight"], padding=1), t, "layer2.0.bn2"))
    out = _bn_eval(F.conv2d(out, t["layer2.0.conv3.weight"]), t, "layer2.0.bn3")
    short = _bn_eval(F.conv2d(h, t["layer2.0.downsample.0.weight"], stride=2), t, "layer2.0.downsample.1")
    torch.testing.assert_close(seen["layer2.0"], F.relu(out + short), rtol=1e-4, atol=1e-4)


def test_resnet50_vggface2_reads_state_dict(tmp_path):
    # The same names as a PyTorch state dict (no fc, no BN counters) load too.
    pth = tmp_path / "resnet50_ft.pth"
    torch.save(_constant_tensors({k: v for k, v in resnet50_ft_shapes().items() if not k.startswith("fc.")},
                                 0.25), pth)
    backbone = create_backbone("resnet50-vggface2", weights=pth)
    state = backbone.net.state_dict()
    assert all(float(v.float().min()) == float(v.float().max()) == 0.25
               for k, v in state.items() if not k.endswith("num_batches_tracked"))


def test_resnet50_vggface2_wrong_shape_named(resnet_file, tmp_path):
    _, file = resnet_file
    broken = {k: v for k, v in file.items() if not k.startswith("fc.")}
    broken["layer3.2.conv2.weight"] = np.zeros((256, 256, 1, 1), np.float32)
    broken["layer9.0.conv1.weight"] = np.zeros((1,), np.float32)
    path = tmp_path / "broken.pkl"
    _write_py2_pickle(broken, path)
    with pytest.raises(WeightFileError) as info:
        create_backbone("resnet50-vggface2", weights=path)
    path.unlink()
    assert "layer3.2.conv2.weight" in str(info.value) and "layer9.0.conv1.weight" in str(info.value)


# --------------------------------------------------------------------------- restricted unpickler


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "resnet50_ft_weight.pkl"
    # pickle.dumps only records the call; it is never loaded unrestricted here.
    path.write_bytes(pickle.dumps({"conv1.weight": _RunsShell(marker)}, protocol=2))
    with pytest.raises(WeightFileError) as info:
        create_backbone("resnet50-vggface2", weights=path)
    assert "system" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps({"x": np.array([1, "a"], dtype=object)}, protocol=2),  # object arrays
    b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.",
    b"cbuiltins\neval\n(S'1+1'\ntR.",
], ids=["object-array", "codecs-rot13", "builtins-eval"])
def test_unpickler_refuses_non_array_content(payload, tmp_path):
    path = tmp_path / "w.pkl"
    path.write_bytes(payload)
    with pytest.raises(WeightFileError, match="w.pkl"):
        read_numpy_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_unpickler_reads_python3_numpy_pickles(protocol, tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.float64(2.5) * np.ones(2)}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    back = read_numpy_pickle(path)
    assert set(back) == {"a", "b"}
    np.testing.assert_array_equal(back["a"], arrays["a"])
    np.testing.assert_array_equal(back["b"], arrays["b"])


# --------------------------------------------------------------------------- ArcFace iresnet50


@pytest.mark.slow
def test_arcface_loads_backbone_pth(arcface_file):
    path, file = arcface_file
    backbone = create_backbone("arcface-r50", weights=path)
    assert torch.equal(backbone.net.layer3[13].prelu.weight, file["layer3.13.prelu.weight"])
    seen, handles = _hooks(backbone, ["stem", "layer1", "layer1.0", "layer4", "bn2", "features"])
    x = backbone.preprocess(torch.from_numpy(_images(1, 120, 4)).permute(0, 3, 1, 2).float() / 255)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    with torch.no_grad():
        emb = backbone.net(x)
    for h in handles:
        h.remove()
    assert emb.shape == (1, 512) and torch.isfinite(emb).all()
    assert seen["stem"].shape == (1, 64, 112, 112) and seen["layer1"].shape == (1, 64, 56, 56)
    assert seen["layer4"].shape == (1, 512, 7, 7) and torch.equal(seen["features"], emb)
    # One pre-activation block, from the stem output.
    s = seen["stem"]
    out = _bn_eval(s, file, "layer1.0.bn1")
    out = _bn_eval(F.conv2d(out, file["layer1.0.conv1.weight"], padding=1), file, "layer1.0.bn2")
    out = F.prelu(out, file["layer1.0.prelu.weight"])
    out = _bn_eval(F.conv2d(out, file["layer1.0.conv2.weight"], stride=2, padding=1), file, "layer1.0.bn3")
    short = _bn_eval(F.conv2d(s, file["layer1.0.downsample.0.weight"], stride=2), file, "layer1.0.downsample.1")
    torch.testing.assert_close(seen["layer1.0"], out + short, rtol=1e-4, atol=1e-4)
    # Head: BN2d, flatten (C, H, W), fc, BatchNorm1d.
    head = F.linear(seen["bn2"].flatten(1), file["fc.weight"], file["fc.bias"])
    torch.testing.assert_close(emb, _bn_eval(head, file, "features"), rtol=1e-4, atol=1e-4)


def test_arcface_module_prefix_and_errors(tmp_path):
    shapes = iresnet50_shapes()
    ddp = tmp_path / "ddp_backbone.pth"  # saved from DistributedDataParallel: "module." prefixes
    torch.save({f"module.{k}": v for k, v in _constant_tensors(shapes, 0.5).items()}, ddp)
    net = create_backbone("arcface-r50", weights=ddp).net
    assert net.layer4[2].conv2.weight.detach().min().item() == net.features.running_var.max().item() == 0.5
    broken = _constant_tensors(shapes)
    broken["fc.weight"] = broken["fc.weight"][:, :1000]
    broken["layer2.1.prelu.alpha"] = broken.pop("layer2.1.prelu.weight")
    bad = tmp_path / "broken.pth"
    torch.save(broken, bad)
    with pytest.raises(WeightFileError) as info:
        create_backbone("arcface-r50", weights=bad)
    for key in ("fc.weight", "layer2.1.prelu.weight", "layer2.1.prelu.alpha"):
        assert key in str(info.value)
    onnx_path = tmp_path / "w600k_r50.onnx"
    onnx_path.write_bytes(b"\x08\x07")
    with pytest.raises(WeightFileError, match="arcface-r50-onnx"):
        create_backbone("arcface-r50", weights=onnx_path)


def test_arcface_onnx_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    # A tiny iresnet (one block per stage, narrow) with random weights and BN
    # statistics, exported as insightface exports w600k_r50: input "input.1", dynamic batch.
    reference = IResNet(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64)).eval()
    reference.load_state_dict(_random_tensors({k: tuple(v.shape) for k, v in reference.state_dict().items()}, 7))
    onnx_path = tmp_path / "w600k_r50.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(reference, (torch.zeros(1, 3, 112, 112),), str(onnx_path), dynamo=False,
                          input_names=["input.1"], output_names=["embedding"], dynamic_axes={"input.1": {0: "N"}})
    backbone = create_backbone("arcface-r50-onnx", weights=onnx_path)
    images = _images(3, 130, 6)
    seen, handles = _hooks(backbone, ["embedding"])
    got = backbone.embed(images, "lfw")
    for h in handles:
        h.remove()
    with torch.no_grad():
        want = reference(backbone.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0, "lfw")).numpy()
    assert got.shape == (3, 512) and seen["embedding"].shape == (3, 512)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    with pytest.raises(UnknownNameError, match="embedding"):
        backbone.layer("layer1")
    with pytest.raises(FaceprobeError, match="no gradients"):
        backbone(torch.rand(1, 3, 112, 112, requires_grad=True))


def test_arcface_onnx_rejects_non_embedders(tmp_path):
    pytest.importorskip("onnxruntime")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf")
    with pytest.raises(WeightFileError, match="junk.onnx"):
        create_backbone("arcface-r50-onnx", weights=junk)
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 128)).eval()
    path = tmp_path / "w128.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(small, (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False,
                          input_names=["data"], output_names=["fc1"])
    with pytest.raises(WeightFileError, match=r"fc1.*\[1, 128\]"):
        create_backbone("arcface-r50-onnx", weights=path)
