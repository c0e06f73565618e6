"""The TF.js graph loader: a hand-built graph checked against numpy, bad files, and TF.js itself."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probes.errors import ImageError, UnknownNameError, WeightFileError
from probes.tfjs_graph import (
    TFJSGraph,
    load_graph_model,
    read_graph_model,
    tf_same_padding,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- writing a tiny graph model


def _s(text):
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values):
    return {"list": {"i": [str(v) for v in values]}}


def _conv_attr(strides, padding):
    return {"strides": _ints([1, strides, strides, 1]), "padding": _s(padding), "data_format": _s("NHWC"),
            "dilations": _ints([1, 1, 1, 1])}


def write_graph_model(folder: Path, nodes: list[dict], consts: dict[str, np.ndarray],
                      input_shape=(-1, 6, 6, 2), outputs=("probs",)) -> Path:
    """model.json + model.bin holding ``consts`` (float32 / int32) back to back, in TF.js's format."""
    folder.mkdir(parents=True, exist_ok=True)
    const_nodes = [{"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}} for name in consts]
    placeholder = {"name": "input", "op": "Placeholder",
                   "attr": {"shape": {"shape": {"dim": [{"size": str(d)} for d in input_shape]}}}}
    blobs, specs = [], []
    for name, value in consts.items():
        dtype = "int32" if value.dtype.kind == "i" else "float32"
        blobs.append(value.astype("<i4" if dtype == "int32" else "<f4").tobytes())
        specs.append({"name": name, "shape": list(value.shape), "dtype": dtype})
    (folder / "model.bin").write_bytes(b"".join(blobs))
    model = {"format": "graph-model", "modelTopology": {"node": const_nodes + [placeholder] + nodes},
             "signature": {"inputs": {"input:0": {"name": "input:0"}},
                           "outputs": {f"{o}:0": {"name": f"{o}:0"} for o in outputs}},
             "weightsManifest": [{"paths": ["model.bin"], "weights": specs}]}
    path = folder / "model.json"
    path.write_text(json.dumps(model))
    return path


def tiny_graph(folder: Path):
    rng = np.random.default_rng(0)
    consts = {
        "pad/paddings": np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32),
        "conv/filter": rng.normal(size=(3, 3, 2, 3)).astype(np.float32),
        "bn/mul": rng.uniform(0.5, 1.5, size=3).astype(np.float32),
        "bn/add": rng.normal(size=3).astype(np.float32),
        "six": np.array(6.0, np.float32),
        "zero": np.array(0.0, np.float32),
        "dw/filter": rng.normal(size=(3, 3, 3, 1)).astype(np.float32),
        "mean/axes": np.array([1, 2], np.int32),
        "fc/kernel": rng.normal(size=(3, 4)).astype(np.float32),
        "fc/bias": rng.normal(size=4).astype(np.float32),
        "flat/shape": np.array([-1, 108], np.int32),
        "flatfc/kernel": rng.normal(size=(108, 2)).astype(np.float32) / 10,
        "prelu/alpha": rng.uniform(0.1, 0.3, size=3).astype(np.float32),
    }
    nodes = [
        {"name": "pad", "op": "Pad", "input": ["input", "pad/paddings"]},
        {"name": "conv", "op": "Conv2D", "input": ["pad", "conv/filter"], "attr": _conv_attr(1, "VALID")},
        {"name": "bn/mul_1", "op": "Mul", "input": ["conv", "bn/mul"]},
        {"name": "bn/add_1", "op": "AddV2", "input": ["bn/mul_1", "bn/add"]},
        {"name": "relu", "op": "Relu", "input": ["bn/add_1"]},
        {"name": "clip/min", "op": "Minimum", "input": ["relu", "six"]},
        {"name": "clip", "op": "Maximum", "input": ["clip/min", "zero"]},
        {"name": "dw", "op": "DepthwiseConv2dNative", "input": ["clip", "dw/filter"], "attr": _conv_attr(2, "SAME")},
        # PReLU spelled out, as MXNet exports it: max(0, x) + alpha * min(0, x)
        {"name": "prelu/pos", "op": "Maximum", "input": ["zero", "dw"]},
        {"name": "prelu/neg", "op": "Minimum", "input": ["zero", "dw"]},
        {"name": "prelu/mul", "op": "Mul", "input": ["prelu/alpha", "prelu/neg"]},
        {"name": "prelu", "op": "AddV2", "input": ["prelu/pos", "prelu/mul"]},
        {"name": "mean", "op": "Mean", "input": ["prelu", "mean/axes"], "attr": {"keep_dims": {"b": False}}},
        {"name": "fc", "op": "_FusedMatMul", "input": ["mean", "fc/kernel", "fc/bias"],
         "attr": {"fused_ops": {"list": {"s": [base64.b64encode(b"BiasAdd").decode()]}},
                  "transpose_a": {"b": False}, "transpose_b": {"b": False}}},
        {"name": "probs", "op": "Softmax", "input": ["fc"]},
        {"name": "flat", "op": "Reshape", "input": ["clip", "flat/shape"]},
        {"name": "flatfc", "op": "MatMul", "input": ["flat", "flatfc/kernel"]},
    ]
    return write_graph_model(folder, nodes, consts), consts


# --------------------------------------------------------------------------- numpy reference (NHWC)


def np_conv(x, w, stride, padding, depthwise=False):
    if padding == "SAME":
        (t, b), (le, r) = (tf_same_padding(x.shape[1], w.shape[0], stride),
                           tf_same_padding(x.shape[2], w.shape[1], stride))
        x = np.pad(x, [(0, 0), (t, b), (le, r), (0, 0)])
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, c if depthwise else w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # n, kh, kw, c
            if depthwise:
                out[:, i, j, :] = np.einsum("nabc,abc->nc", patch, w[..., 0])
            else:
                out[:, i, j, :] = np.einsum("nabc,abco->no", patch, w)
    return out


def np_reference(x, c):
    x = np.pad(x.astype(np.float64), c["pad/paddings"])
    y = np_conv(x, c["conv/filter"], 1, "VALID") * c["bn/mul"] + c["bn/add"]
    clip = np.clip(y, 0, 6)
    dw = np_conv(clip, c["dw/filter"], 2, "SAME", depthwise=True)
    prelu = np.maximum(dw, 0) + c["prelu/alpha"] * np.minimum(dw, 0)
    fc = prelu.mean(axis=(1, 2)) @ c["fc/kernel"] + c["fc/bias"]
    probs = np.exp(fc - fc.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    flatfc = clip.reshape(len(x), -1) @ c["flatfc/kernel"]
    return {"probs": probs, "clip": clip, "dw": dw, "flatfc": flatfc}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_graph(tmp_path_factory.mktemp("tiny"))


def test_same_padding_is_tf_asymmetric():
    assert tf_same_padding(224, 3, 2) == (0, 1)
    assert tf_same_padding(7, 3, 2) == (1, 1)
    assert tf_same_padding(6, 3, 1) == (1, 1)
    assert tf_same_padding(5, 1, 2) == (0, 0)


@pytest.mark.parametrize("fuse", [True, False])
def test_tiny_graph_matches_hand_computation(tiny, fuse):
    path, consts = tiny
    graph = load_graph_model(path)
    graph.fuse = fuse
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype(np.float32) * 3
    want = np_reference(x, consts)
    with torch.no_grad():
        got = graph(torch.from_numpy(x).permute(0, 3, 1, 2), outputs=["probs", "clip", "dw", "flatfc"])
    assert got["dw"].shape == (2, 3, 3, 3)  # 4-D outputs come back N x C x H x W; SAME stride 2: 6 -> 3
    np.testing.assert_allclose(got["probs"].numpy(), want["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["clip"].permute(0, 2, 3, 1).numpy(), want["clip"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["dw"].permute(0, 2, 3, 1).numpy(), want["dw"], rtol=1e-5, atol=1e-5)
    # Reshape flattens TF's NHWC order, not PyTorch's NCHW
    np.testing.assert_allclose(got["flatfc"].numpy(), want["flatfc"], rtol=1e-5, atol=1e-5)
    assert torch.allclose(graph(torch.from_numpy(x).permute(0, 3, 1, 2)), got["probs"], atol=1e-6)  # default output


def test_fusion_keeps_requested_and_tapped_nodes(tiny):
    path, consts = tiny
    graph = load_graph_model(path, taps={"after_relu": "relu"})
    seen = {}
    graph.after_relu.register_forward_hook(lambda m, i, o: seen.__setitem__("relu", o.detach().clone()))
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 2)).astype(np.float32)
    with torch.no_grad():
        bn = graph(torch.from_numpy(x).permute(0, 3, 1, 2), outputs="bn/add_1")
    ref = np_conv(np.pad(x.astype(np.float64), consts["pad/paddings"]), consts["conv/filter"], 1, "VALID")
    ref = ref * consts["bn/mul"] + consts["bn/add"]
    np.testing.assert_allclose(bn.permute(0, 2, 3, 1).numpy(), ref, rtol=1e-5, atol=1e-5)
    # the tap fires even though 'relu' is off the requested path, with the graph's own value
    np.testing.assert_allclose(seen["relu"].permute(0, 2, 3, 1).numpy(), np.maximum(ref, 0), rtol=1e-5, atol=1e-5)


def test_gradient_reaches_input(tiny):
    graph = load_graph_model(tiny[0])
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    graph(x, outputs="probs")[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_node_and_wrong_input_size(tiny):
    graph = load_graph_model(tiny[0])
    with pytest.raises(UnknownNameError, match="no node 'nope'.*valid nodes: .*probs"):
        graph(torch.zeros(1, 2, 6, 6), outputs=["nope"])
    with pytest.raises(ImageError, match=r"takes N x 2 x 6 x 6 .*got N x 2 x 7 x 6"):
        graph(torch.zeros(1, 2, 7, 6))
    with pytest.raises(UnknownNameError, match="no node 'missing'"):
        load_graph_model(tiny[0], taps={"x": "missing"})


def test_unknown_op_is_named(tmp_path):
    path = write_graph_model(tmp_path, [{"name": "weird", "op": "FancyOp", "input": ["input"]}], {},
                             outputs=("weird",))
    with pytest.raises(WeightFileError, match=r"node 'weird' has op 'FancyOp'.*implemented: .*Conv2D"):
        load_graph_model(path)


def test_truncated_bin_is_named(tmp_path):
    path, _ = tiny_graph(tmp_path)
    shard = path.parent / "model.bin"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(WeightFileError, match=r"model\.bin holds \d+ bytes but the manifest declares \d+"):
        load_graph_model(path)
    shard.unlink()
    with pytest.raises(WeightFileError, match="missing"):
        load_graph_model(path)


def test_not_a_graph_model(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps([{"paths": [], "weights": []}]))
    with pytest.raises(WeightFileError, match="not a TF.js graph model"):
        read_graph_model(bad)
    bad.write_text("{")
    with pytest.raises(WeightFileError, match="not valid JSON"):
        read_graph_model(bad)


def test_parameters_are_torch_layout_and_reload(tiny):
    path, consts = tiny
    graph = load_graph_model(path)
    assert tuple(graph.params["conv/filter"].shape) == (3, 2, 3, 3)  # HWIO -> OIHW
    assert tuple(graph.params["dw/filter"].shape) == (3, 1, 3, 3)
    other = TFJSGraph(read_graph_model(path))
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    other.load_tensors(consts, "test")
    x = torch.randn(1, 2, 6, 6)
    assert torch.allclose(other(x), graph(x))
    with pytest.raises(WeightFileError, match="wrong shapes"):
        other.load_tensors({**consts, "fc/kernel": np.zeros((4, 3), np.float32)}, "test")


# --------------------------------------------------------------------------- against TensorFlow.js itself


def _tfjs_dir() -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from tfjs_reference import tfjs_dir_default
    finally:
        sys.path.pop(0)
    return tfjs_dir_default()


def test_matches_tensorflow_js(tmp_path):
    from probes import weights

    try:
        for f in ("faceres.json", "faceres.bin", "mobileface.json", "mobileface.bin"):
            weights.weight_path(f)
    except WeightFileError as exc:
        pytest.skip(f"human-models weights not fetched: {exc}")
    tfjs_dir = _tfjs_dir()
    if shutil.which("node") is None:
        pytest.skip("Node.js (node) is not on PATH")
    if not (tfjs_dir / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file():
        pytest.skip(f"@tensorflow/tfjs not installed in {tfjs_dir} (set FACEPROBE_TFJS_DIR or "
                    f"npm install --prefix {tfjs_dir} @tensorflow/tfjs@4.22.0)")
    out = tmp_path / "tfjs.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tfjs_reference.py"), "--n-inputs", "1",
                           "--tfjs-dir", str(tfjs_dir), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ}, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["model"] for r in rows} == {"hse-mobilenet-vggface2", "mobileface"}
    assert max(r["relative"] for r in rows) <= 1e-4
