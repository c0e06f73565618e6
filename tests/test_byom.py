"""Bring your own model: wrap_backbone, and module:function / file.py:function / .onnx references everywhere."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import byom_helper
import numpy as np
import pytest
import torch
from torch import nn

from probes.backbones import FaceBackbone, create_backbone, wrap_backbone
from probes.capture import LayerCapture
from probes.cli import add_backbone, make_parser
from probes.errors import FaceprobeError, UnknownNameError, WeightFileError
from probes.expressivity.__main__ import main as expressivity_main
from probes.geometry import ARCFACE_CROPS, ARCFACE_TEMPLATE_112, arcface_template
from probes.resolve import ObjectSpecError, parse_object_spec, resolve_object

HELPER = Path(byom_helper.__file__)


def _images(n=3, size=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- wrap_backbone


def test_wrap_defaults_taps_and_embedding():
    net = byom_helper.make()
    backbone = wrap_backbone(net)
    spec = backbone.spec
    assert isinstance(backbone, FaceBackbone) and backbone.net is net and backbone.name == "TinyNet"
    # children that run once, in forward order; the twice-run ReLU and the unused head are not taps
    assert spec.tap_layers == ("stem", "body", "pool", "flat", "fc")
    assert spec.embedding_layer == "fc" and spec.embedding_size == 16
    assert spec.input_size == (112, 112) and spec.colour_order == "RGB"
    assert spec.mean == (127.5,) * 3 and spec.std == (127.5,) * 3
    assert spec.verification_metric == "cosine" and spec.l2_normalise
    assert dict(spec.crops) == ARCFACE_CROPS
    np.testing.assert_allclose(spec.align_template, ARCFACE_TEMPLATE_112)
    emb = backbone.embed(_images())
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, wrap_backbone(byom_helper.make()).embed(_images()), atol=1e-6)


def test_wrap_weights_id_follows_the_weights():
    a, b = wrap_backbone(byom_helper.make()), wrap_backbone(byom_helper.make())
    assert a.weights_id == b.weights_id and len(a.weights_id) == 64
    with torch.no_grad():
        b.net.fc.bias += 1
    assert wrap_backbone(b.net).weights_id != a.weights_id
    assert wrap_backbone(byom_helper.make(), weights_id="mine-v1").weights_id == "mine-v1"


def test_wrap_feeds_the_stated_preprocessing():
    image = np.zeros((1, 40, 40, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 51, 0  # R, G, B
    rgb = wrap_backbone(byom_helper.Recorder(), input_size=20)
    rgb.embed(image)
    assert tuple(rgb.net.seen.shape) == (1, 3, 20, 20)
    np.testing.assert_allclose(rgb.net.seen[0, :, 0, 0], [(255 - 127.5) / 127.5, (51 - 127.5) / 127.5, -1.0],
                               atol=1e-5)
    bgr = wrap_backbone(byom_helper.Recorder(), input_size=(24, 16), colour="BGR", mean=(10, 20, 30), std=2)
    bgr.embed(image)
    assert tuple(bgr.net.seen.shape) == (1, 3, 24, 16)
    np.testing.assert_allclose(bgr.net.seen[0, :, 0, 0], [(0 - 10) / 2, (51 - 20) / 2, (255 - 30) / 2], atol=1e-4)
    # a non-square input: insightface's template, scaled by height about the vertical centre line
    np.testing.assert_allclose(arcface_template((112, 96))[:, 0], ARCFACE_TEMPLATE_112[:, 0] - 8)


def test_wrap_explicit_taps_crops_and_template():
    backbone = wrap_backbone(byom_helper.make(), taps=["stem", "stem.0", "fc"], embedding_layer="fc",
                             crops={"lfw": (0.2, 0.2, 0.6, 0.6)}, align_template=None, metric="euclidean",
                             input_size=64)
    assert backbone.tap_layers == ("stem", "stem.0", "fc")
    assert dict(backbone.spec.crops) == {"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.2, 0.2, 0.6, 0.6)}
    assert backbone.spec.align_template is None and not backbone.spec.l2_normalise
    with pytest.raises(UnknownNameError, match="no crop for layout 'utkface'"):
        backbone.embed(_images(), "utkface")
    # a lone container is looked through to its children
    seq = wrap_backbone(nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())))
    assert seq.tap_layers == ("0.0", "0.1", "0.2")


def test_wrapped_backbone_works_with_layer_capture():
    backbone = wrap_backbone(byom_helper.make(), input_size=48)
    feats = LayerCapture(backbone, progress=False).capture(_images(4, 64))
    assert list(feats) == list(backbone.tap_layers)
    assert feats["stem"].shape == (4, 4) and feats["body"].shape == (4, 8) and feats["fc"].shape == (4, 16)
    np.testing.assert_allclose(feats["fc"], backbone.embed(_images(4, 64)), atol=1e-5)
    # ... and its untrained twin comes from the spec's builder, as for registry networks
    twin = backbone.spec.builder()
    assert isinstance(twin, byom_helper.TinyNet) and twin is not backbone.net
    assert not torch.equal(twin.fc.weight, backbone.net.fc.weight)
    assert torch.equal(backbone.net.fc.weight, byom_helper.make().fc.weight)  # the original is untouched


@pytest.mark.parametrize("kwargs, message", [
    ({"colour": "rgba"}, "colour must be 'rgb' or 'bgr'"),
    ({"std": 0}, "std must be positive"),
    ({"mean": (1, 2)}, "mean must be a number or three"),
    ({"input_size": 0}, "input_size must be"),
    ({"metric": "manhattan"}, "metric must be"),
    ({"taps": ["nope"]}, "has no submodule 'nope'; its children: stem, act"),
    ({"taps": ["head"]}, "tap(s) 'head' of module"),
    ({"taps": ["act"]}, "tap(s) 'act'"),
    ({"embedding_layer": "head"}, "embedding_layer 'head' is not a tap"),
    ({"crops": {"lfw": (0, 0, 0, 1)}}, "crop 'lfw' must be"),
    ({"align_template": np.zeros((4, 2))}, "align_template must be 5 x 2"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_wrap_refuses_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(FaceprobeError) as info:
        wrap_backbone(byom_helper.make(), **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_wrap_refuses_modules_it_cannot_use():
    with pytest.raises(FaceprobeError, match="must be a torch.nn.Module, got str"):
        wrap_backbone("resnet")
    with pytest.raises(FaceprobeError, match="must return an N x D embedding tensor, got a tuple"):
        wrap_backbone(byom_helper.make_tuple())
    with pytest.raises(FaceprobeError, match=r"failed on a 2 x 3 x 112 x 112 input.*input_size="):
        wrap_backbone(nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8)))
    wrap_backbone(nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8)), input_size=64)  # the size it expects
    with pytest.raises(FaceprobeError, match="already a FaceBackbone"):
        wrap_backbone(wrap_backbone(byom_helper.make()))
    with pytest.warns(UserWarning, match="0..255 units"):
        wrap_backbone(byom_helper.make(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


# --------------------------------------------------------------------------- references


def test_resolve_grammar_takes_python_files(tmp_path):
    parsed = parse_object_spec("some/dir/model.py:Factory.build=arg:1")
    assert (parsed.path, parsed.attribute, parsed.arg) == ("some/dir/model.py", "Factory.build", "arg:1")
    assert parse_object_spec("pkg.mod:f").path is None
    with pytest.raises(ObjectSpecError, match="path/to/file.py:attribute"):
        parse_object_spec("model.py:")
    with pytest.raises(ObjectSpecError, match="does not exist"):
        resolve_object(str(tmp_path / "absent.py") + ":make")
    sibling = tmp_path / "sibling_helper_xyz.py"
    sibling.write_text("VALUE = 41\n")
    user = tmp_path / "user_model.py"
    user.write_text("import sibling_helper_xyz\n\ndef make():\n    return sibling_helper_xyz.VALUE + 1\n")
    assert resolve_object(f"{user}:make")() == 42  # the file's folder is importable while it runs
    assert resolve_object(f"{user}:make") is resolve_object(f"{user}:make")  # run once
    bad = tmp_path / "bad_model.py"
    bad.write_text("raise ValueError('no GPU here')\n")
    with pytest.raises(ObjectSpecError, match=r"running .*bad_model.py failed: ValueError: no GPU here"):
        resolve_object(f"{bad}:make")


def test_create_backbone_takes_module_function_and_file_references():
    by_module = create_backbone("byom_helper:make")
    by_file = create_backbone(f"{HELPER}:make")
    assert by_module.name == "byom_helper:make" and by_file.name == f"{HELPER}:make"
    assert by_module.spec.tap_layers == ("stem", "body", "pool", "flat", "fc")
    np.testing.assert_allclose(by_module.embed(_images()), by_file.embed(_images()), atol=1e-6)
    assert create_backbone("byom_helper:make=32").spec.embedding_size == 32  # the =arg reaches the function
    # a function returning a FaceBackbone keeps its preprocessing, under the reference's name
    own = create_backbone("byom_helper:make_backbone")
    assert own.name == "byom_helper:make_backbone" and own.spec.input_size == (64, 64)
    assert own.spec.colour_order == "BGR" and own.spec.verification_metric == "euclidean"


def test_reference_weights_and_random_init(tmp_path):
    trained = byom_helper.make()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    path = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), path)
    loaded = create_backbone("byom_helper:make", weights=path)
    assert torch.equal(loaded.net.fc.weight, trained.fc.weight) and len(loaded.weights_id) == 64
    torch.save({"fc.weight": trained.fc.weight}, tmp_path / "partial.pt")
    with pytest.raises(WeightFileError, match=r"partial.pt.*missing keys"):
        create_backbone("byom_helper:make", weights=tmp_path / "partial.pt")
    torch.manual_seed(3)
    a = create_backbone("byom_helper:make", pretrained=False)
    torch.manual_seed(3)
    b = create_backbone("byom_helper:make", pretrained=False)
    assert a.weights_id == "random-init" and torch.equal(a.net.fc.weight, b.net.fc.weight)
    assert not torch.equal(a.net.fc.weight, byom_helper.make().fc.weight)


@pytest.mark.parametrize("reference, message", [
    ("no-such-net", "registered: arcface-r50, "),
    ("no-such-net", "'package.module:function[=arg]', 'path/to/file.py:function[=arg]' or a 'path/to/model.onnx'"),
    ("byom_helper_absent_xyz:make", "cannot import module 'byom_helper_absent_xyz'"),
    ("byom_helper:missing", "module 'byom_helper' has no attribute 'missing'"),
    ("byom_helper:NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
    ("byom_helper:broken", "broken() failed: RuntimeError: weights server unreachable"),
    ("byom_helper:not_a_module", "returned str; it must return a FaceBackbone or a torch.nn.Module"),
    ("byom_helper:make_tuple", "got a tuple"),
    ("absent/model.onnx", "ONNX file absent/model.onnx does not exist"),
])
def test_bad_references_say_what_is_wrong(reference, message):
    with pytest.raises(FaceprobeError) as info:
        create_backbone(reference)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_onnx_file_is_a_backbone(tmp_path):
    pytest.importorskip("onnxruntime")
    net = byom_helper.make()
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(net, (torch.zeros(1, 3, 96, 96),), str(path), dynamo=False, input_names=["x"],
                          output_names=["emb"], dynamic_axes={"x": {0: "N"}})
    backbone = create_backbone(str(path))
    assert backbone.name == str(path) and backbone.spec.input_size == (96, 96)  # the size the file states
    assert backbone.spec.embedding_size == 16 and backbone.tap_layers == ("embedding",)
    want = wrap_backbone(net, input_size=96).embed(_images())
    np.testing.assert_allclose(backbone.embed(_images()), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(FaceprobeError, match="holds its own weights"):
        create_backbone(str(path), weights=path)
    with pytest.raises(FaceprobeError, match="no untrained twin"):
        create_backbone(str(path), pretrained=False)


# --------------------------------------------------------------------------- commands


def test_expressivity_command_takes_a_module_function_backbone(tmp_path, data_root, capsys):
    out = tmp_path / "run"
    argv = ["--backbone", "byom_helper:make", "--dataset", "utkface", "--data-root", str(data_root),
            "--max-images", "60", "--attributes", "age", "sex", "--estimator", "probe", "--seeds", "0",
            "--out", str(out), "--no-progress"]
    assert expressivity_main(argv) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["backbone"] == "byom_helper:make"
    table = (out / "results.csv").read_text()
    assert all(layer in table for layer in ("stem", "body", "fc"))
    assert expressivity_main(["--backbone", "no-such-net", "--dataset", "utkface", "--data-root", str(data_root),
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'no-such-net'" in err and "path/to/file.py:function" in err


def test_shared_backbone_flag_documents_the_forms():
    p = make_parser("x", None)
    add_backbone(p)
    text = " ".join(p.format_help().split())
    assert "package.module:function[=arg]" in text and "path/to/file.py:function[=arg]" in text
    assert ".onnx" in text and "wrap_backbone" in text


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Bring your own model", 1)[1]
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:3]]
    assert "class MyNet" in blocks[0] and "wrap_backbone(MyNet())" in blocks[1]
    (tmp_path / "mynet.py").write_text(blocks[0])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    exec(compile(blocks[1], "README example", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "('features', 'embedding') 64" and out[1] == "(4, 64)"
    assert out[-1] == "mynet.py:make (112, 112)"
