"""TensorFlow.js graph models (``model.json`` + ``*.bin``) as differentiable PyTorch modules.

A graph model's ``model.json`` holds a TF GraphDef as JSON (``modelTopology.node``:
``name``, ``op``, ``input``, ``attr``) and a weights manifest; every ``Const``
node takes its value from the manifest by name (decoded by
:func:`probes.tfjs.decode_weight_groups`, the one decoder of that format).
:class:`TFJSGraph` interprets the nodes in topological order.

Why an interpreter rather than a mapping onto a timm model: the two face
graphs we load (a Keras MobileNet with batch norm spelled out as Mul/Add and
ReLU6 as Relu/Minimum/Maximum, and an MXNet MobileFace with PReLU spelled out
as Maximum/Minimum/Mul/AddV2 and explicit Pad nodes) would each need a
hand-written name and layout map, and every intermediate node would be lost
as a tap point. Interpreting the graph keeps TF's node names, so any node's
output can be read by name and the TF.js runtime is the reference, op by op.

Layout: TF graphs are NHWC. Internally every 4-D activation is kept in
PyTorch's NCHW order (convolutions are faster so) and each value carries a
flag saying so; ops whose semantics depend on the axis order (Pad, Mean,
Reshape, Softmax, MatMul, broadcasting against constants, ...) translate
their axes or convert to TF's order first. Outputs and tap points give 4-D
values as N x C x H x W; everything else in TF's own shape.

Filters are stored converted to PyTorch's layouts (Conv2D: OIHW; depthwise:
(C*M) x 1 x H x W; channels-last memory), so ``state_dict`` keys are the TF
node names (prefixed ``params.``) with those shapes. Every float constant is an
``nn.Parameter``; integer constants (pad widths, axes, shapes) are static.

Speed: a convolution followed by a per-channel Mul, an Add and a clip chain
(Keras' batch norm and ReLU6) runs as one convolution with a scaled filter,
a bias and a clamp, unless one of those nodes is requested or tapped (then
the chain stops there); ``fuse=False`` interprets node by node. Both agree
with TensorFlow.js to ~1e-6 relative (benchmarks/tfjs_reference.py).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ImageError, UnknownNameError, WeightFileError
from .tfjs import conv_filter, decode_weight_groups, depthwise_filter, read_json

# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class GraphNode:
    """One GraphDef node: data inputs with ``:0`` and control (``^``) inputs stripped."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: Mapping[str, Any]


@dataclass(frozen=True)
class GraphModelFile:
    """A parsed ``model.json``: nodes in file order, weight groups, declared inputs/outputs."""

    path: Path
    nodes: Mapping[str, GraphNode]
    weight_groups: tuple[Mapping[str, Any], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def decode_weights(self) -> dict[str, np.ndarray]:
        """The Const tensors, decoded from the ``.bin`` shard(s) beside the file."""
        return decode_weight_groups(self.weight_groups, self.path.parent, source=str(self.path))


def _strip_output_index(ref: str, node: str, path: Path) -> str:
    name, _, index = ref.partition(":")
    if index not in ("", "0"):
        raise WeightFileError(f"{path}: node {node!r} reads output {index} of {name!r}; "
                              "multi-output ops are not supported by the graph loader")
    return name


def read_graph_model(path: str | Path) -> GraphModelFile:
    """Parse a TF.js graph ``model.json`` (no weights read yet)."""
    path = Path(path)
    data = read_json(path, "graph model")
    topology = data.get("modelTopology") if isinstance(data, dict) else None
    if not isinstance(topology, dict) or not isinstance(topology.get("node"), list):
        raise WeightFileError(f"{path} is not a TF.js graph model (no modelTopology.node list; "
                              "a layers model or a face-api manifest?)")
    nodes: dict[str, GraphNode] = {}
    for raw in topology["node"]:
        name, op = raw.get("name"), raw.get("op")
        if not name or not op:
            raise WeightFileError(f"{path}: a node without name or op: {json.dumps(raw)[:200]}")
        if name in nodes:
            raise WeightFileError(f"{path}: node name {name!r} appears twice")
        inputs = tuple(_strip_output_index(i, name, path) for i in raw.get("input", []) if not i.startswith("^"))
        nodes[name] = GraphNode(name, op, inputs, raw.get("attr", {}))
    for node in nodes.values():
        for ref in node.inputs:
            if ref not in nodes:
                raise WeightFileError(f"{path}: node {node.name!r} reads {ref!r}, which is not a node of the graph")
    signature = data.get("signature") or {}
    inputs = tuple(_strip_output_index(v.get("name", k), k, path)
                   for k, v in (signature.get("inputs") or {}).items())
    outputs = tuple(_strip_output_index(v.get("name", k), k, path)
                    for k, v in (signature.get("outputs") or {}).items())
    if not inputs:
        inputs = tuple(n.name for n in nodes.values() if n.op == "Placeholder")
    if not outputs:
        consumed = {ref for n in nodes.values() for ref in n.inputs}
        outputs = tuple(n.name for n in nodes.values() if n.name not in consumed and n.op != "Const")
    groups = data.get("weightsManifest")
    if not isinstance(groups, list):
        raise WeightFileError(f"{path}: no weightsManifest list")
    return GraphModelFile(path, nodes, tuple(groups), inputs, outputs)


_MISSING = object()


def node_attr(node: GraphNode, key: str, default: Any = _MISSING) -> Any:
    """Decode a GraphDef attr value (JSON form of AttrValue) into Python."""
    value = node.attr.get(key)
    if value is None:
        if default is _MISSING:
            raise WeightFileError(f"node {node.name!r} ({node.op}) lacks attribute {key!r}")
        return default
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "f" in items:
            return [float(v) for v in items["f"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    return value


# --------------------------------------------------------------------------- values & helpers


class _V(NamedTuple):
    """A value flowing through the graph: the tensor and whether it is a 4-D NHWC value stored as NCHW."""

    t: torch.Tensor
    nchw: bool


_NHWC_TO_STORED = (0, 2, 3, 1)  # logical NHWC axis -> axis of the NCHW tensor


def _logical(v: _V) -> torch.Tensor:
    return v.t.permute(0, 2, 3, 1) if v.nchw else v.t


def _stored_nchw(v: _V) -> torch.Tensor:
    if v.nchw:
        return v.t
    if v.t.ndim != 4:
        raise ValueError(f"expected a 4-D NHWC tensor, got shape {tuple(v.t.shape)}")
    return v.t.permute(0, 3, 1, 2)


def _as_nchw_operand(t: torch.Tensor) -> torch.Tensor:
    """A logical (NHWC) operand of rank <= 4 broadcast-aligned to an NCHW-stored 4-D value."""
    if t.ndim > 4:
        raise ValueError(f"cannot broadcast a {t.ndim}-D tensor against a 4-D activation")
    t = t.reshape((1,) * (4 - t.ndim) + tuple(t.shape))
    return t.permute(0, 3, 1, 2)


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[list[_V]], _V]:
    def run(vals: list[_V]) -> _V:
        a, b = vals
        if a.nchw or b.nchw:
            ta = a.t if a.nchw else _as_nchw_operand(a.t)
            tb = b.t if b.nchw else _as_nchw_operand(b.t)
            return _V(fn(ta, tb), True)
        return _V(fn(a.t, b.t), False)
    return run


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[list[_V]], _V]:
    return lambda vals: _V(fn(vals[0].t), vals[0].nchw)


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis; the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(node: GraphNode, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int], padding: str, explicit: Sequence[int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an NCHW input."""
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding == "SAME":
        top, bottom = tf_same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
        left, right = tf_same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
        return top, bottom, left, right
    if padding == "EXPLICIT":
        return explicit[2], explicit[3], explicit[4], explicit[5]
    raise WeightFileError(f"node {node.name!r} ({node.op}): unknown padding {padding!r}")


def _pair_nhwc(node: GraphNode, key: str, default: Sequence[int]) -> tuple[int, int]:
    values = node_attr(node, key, list(default))
    if len(values) == 4:
        if values[0] != 1 or values[3] != 1:
            raise WeightFileError(f"node {node.name!r} ({node.op}): {key}={values} acts on batch or channels")
        return values[1], values[2]
    if len(values) == 2:
        return values[0], values[1]
    if len(values) == 1:
        return values[0], values[0]
    raise WeightFileError(f"node {node.name!r} ({node.op}): cannot read {key}={values}")


def _check_nhwc(node: GraphNode) -> None:
    fmt = node_attr(node, "data_format", "NHWC")
    if fmt != "NHWC":
        raise WeightFileError(f"node {node.name!r} ({node.op}): data_format {fmt!r} is not supported (only NHWC)")


# Fused activations of _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul (TF grappler + TF.js).
def _epilogue(node: GraphNode, channel_axis: int) -> Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]:
    fused = node_attr(node, "fused_ops", [])
    alpha_leaky = node_attr(node, "leakyrelu_alpha", 0.2)
    steps: list[tuple[str, bool]] = []  # (op, consumes an extra argument)
    for op in fused:
        if op in ("BiasAdd", "Add", "Prelu"):
            steps.append((op, True))
        elif op in ("Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh"):
            steps.append((op, False))
        else:
            raise WeightFileError(f"node {node.name!r} ({node.op}): fused op {op!r} is not implemented "
                                  "(implemented: BiasAdd, Prelu, Relu, Relu6, Elu, LeakyRelu, Sigmoid, Tanh)")
    n_args = sum(extra for _, extra in steps)
    if len(node.inputs) - 2 != n_args:
        raise WeightFileError(f"node {node.name!r} ({node.op}): fused ops {fused} need {n_args} extra "
                              f"input(s), the node has {len(node.inputs) - 2}")

    def channelwise(arg: torch.Tensor, ndim: int) -> torch.Tensor:
        if arg.ndim <= 1 and ndim == 4 and channel_axis == 1:
            return arg.reshape(1, -1, 1, 1)
        return arg

    def run(y: torch.Tensor, args: list[torch.Tensor]) -> torch.Tensor:
        k = 0
        for op, extra in steps:
            if extra:
                arg = channelwise(args[k], y.ndim)
                k += 1
                if op == "Prelu":
                    y = torch.where(y >= 0, y, y * arg)
                else:
                    y = y + arg
            elif op == "Relu":
                y = F.relu(y)
            elif op == "Relu6":
                y = y.clamp(0.0, 6.0)
            elif op == "Elu":
                y = F.elu(y)
            elif op == "LeakyRelu":
                y = F.leaky_relu(y, alpha_leaky)
            elif op == "Sigmoid":
                y = torch.sigmoid(y)
            else:
                y = torch.tanh(y)
        return y
    return run


class TapPoint(nn.Module):
    """Identity module called with one node's output, so forward hooks can read (or replace) it.

    4-D outputs arrive as N x C x H x W.
    """

    def __init__(self, node: str):
        super().__init__()
        self.node = node

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"node={self.node!r}"


def _key(name: str) -> str:
    # Module/parameter names may not contain '.'; TF node names may.
    return name.replace(".", "·")


# --------------------------------------------------------------------------- the module


_FILTER_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv",
               "DepthwiseConv2dNative": "depthwise", "FusedDepthwiseConv2dNative": "depthwise"}


class TFJSGraph(nn.Module):
    """A TF.js graph model run by PyTorch ops; differentiable, CPU or GPU.

    - ``forward(x)``: ``x`` is N x 3 x H x W (PyTorch order) float in the
      units the graph expects; returns the default output (the one named
      ``output`` at construction, or the graph's declared outputs: one tensor,
      or a dict when several).
    - ``forward(x, outputs=["node", ...])`` returns ``{node: tensor}`` for any
      nodes; a single name (a ``str``) returns that tensor.
    - ``taps={"alias": "node"}``: each alias becomes a :class:`TapPoint`
      submodule (``graph.alias``) called with that node's output on every
      forward pass, so ``register_forward_hook`` works on it; taps are always
      computed, even off the path to the output. :meth:`node_module` adds a
      hookable module for any other node.
    """

    def __init__(self, model: GraphModelFile, tensors: Mapping[str, np.ndarray] | None = None,
                 output: str | Sequence[str] | None = None, taps: Mapping[str, str] | None = None,
                 fuse: bool = True):
        super().__init__()
        self.source = str(model.path)
        self.fuse = fuse
        self._nodes = dict(model.nodes)
        if len(model.inputs) != 1:
            raise WeightFileError(f"{self.source}: expected one input placeholder, found {list(model.inputs)}")
        self.input_name = model.inputs[0]
        shape = node_attr(self._nodes[self.input_name], "shape", {}).get("shape", {})
        dims = [int(d.get("size", -1)) for d in shape.get("dim", [])] if isinstance(shape, dict) else []
        self.input_shape_nhwc = tuple(dims) if len(dims) == 4 else None  # -1 = any
        if output is None:
            output = model.outputs
        self._single_output = isinstance(output, str) or len(output) == 1
        self.default_outputs = (output,) if isinstance(output, str) else tuple(output)
        for name in self.default_outputs:
            self._check_node_name(name)

        # Constants: float -> Parameter (filters converted to PyTorch layout), int -> static numpy.
        self._const_layout: dict[str, str] = {}
        for node in self._nodes.values():
            role = _FILTER_OPS.get(node.op)
            if role and len(node.inputs) > 1 and self._nodes[node.inputs[1]].op == "Const":
                previous = self._const_layout.setdefault(node.inputs[1], role)
                if previous != role:
                    raise WeightFileError(f"{self.source}: constant {node.inputs[1]!r} is a filter of two kinds")
        for node in self._nodes.values():
            for ref in node.inputs:
                if ref in self._const_layout and _FILTER_OPS.get(node.op) is None:
                    raise WeightFileError(f"{self.source}: filter constant {ref!r} is also read by "
                                          f"{node.name!r} ({node.op}); not supported")
        if tensors is None:
            tensors = model.decode_weights()
        self.params = nn.ParameterDict()
        self._static: dict[str, np.ndarray] = {}
        for node in self._nodes.values():
            if node.op != "Const":
                continue
            if node.name not in tensors:
                raise WeightFileError(f"{self.source}: Const node {node.name!r} has no tensor in the weights manifest")
            value = np.asarray(tensors[node.name])
            if value.dtype.kind == "f":
                tensor = torch.from_numpy(self._to_torch_layout(node.name, value))
                if tensor.ndim == 4:  # channels-last filters: CPU and cuDNN convolutions run faster so
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                self.params[_key(node.name)] = nn.Parameter(tensor)
            else:
                self._static[node.name] = value

        # One closure per non-Const node; an unknown op fails here, naming the op and the node.
        self._ops: dict[str, Callable[[list[_V]], _V]] = {}
        for node in self._nodes.values():
            if node.op not in ("Const", "Placeholder"):
                self._ops[node.name] = self._build(node)
        self._taps: dict[str, TapPoint] = {}  # node name -> module
        self.nodes = nn.ModuleDict()  # modules added by node_module(), keyed by node name
        for alias, node_name in (taps or {}).items():
            self._check_node_name(node_name)
            if "." in alias or hasattr(self, alias):
                raise ValueError(f"tap alias {alias!r} is not a usable submodule name")
            module = self._taps.get(node_name) or TapPoint(node_name)
            self._taps[node_name] = module
            self.add_module(alias, module)
        self.tap_aliases = dict(taps or {})
        self._programs: dict[tuple, list] = {}
        self._static_tensors: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.register_load_state_dict_post_hook(lambda module, keys: module.invalidate())

    def invalidate(self) -> None:
        """Forget the compiled programs (they bake in the scalar bounds of folded clip chains).

        Called by :meth:`load_tensors` and ``load_state_dict``; call it after
        editing parameters in place.
        """
        self._programs.clear()

    # ----------------------------------------------------------------- names

    @property
    def node_names(self) -> list[str]:
        """Names of every computed node (Placeholder and ops; not Const), in file order."""
        return [n.name for n in self._nodes.values() if n.op != "Const"]

    def op_of(self, name: str) -> str:
        self._check_node_name(name)
        return self._nodes[name].op

    def _check_node_name(self, name: str) -> None:
        if name not in self._nodes or self._nodes[name].op == "Const":
            raise UnknownNameError(
                f"graph {self.source} has no node {name!r}; valid nodes: {', '.join(self.node_names)}")

    def node_module(self, name: str) -> TapPoint:
        """A hookable module called with node ``name``'s output on every forward pass."""
        self._check_node_name(name)
        if name not in self._taps:
            self._taps[name] = TapPoint(name)
            self._programs.clear()
        if _key(name) not in self.nodes:
            self.nodes[_key(name)] = self._taps[name]
        return self._taps[name]

    # ----------------------------------------------------------------- weights

    def _to_torch_layout(self, name: str, value: np.ndarray) -> np.ndarray:
        role = self._const_layout.get(name)
        value = value.astype(np.float32, copy=False)
        if role == "conv":
            return conv_filter(value)
        if role == "depthwise":
            return depthwise_filter(value)
        return np.ascontiguousarray(value)

    def load_tensors(self, tensors: Mapping[str, np.ndarray], source: str) -> None:
        """Copy TF-layout constants (from a manifest) into the parameters, checking names and shapes."""
        expected = {n.name for n in self._nodes.values() if n.op == "Const" and _key(n.name) in self.params}
        missing = sorted(expected - set(tensors))
        wrong = []
        converted = {}
        for name in sorted(expected & set(tensors)):
            value = self._to_torch_layout(name, np.asarray(tensors[name]))
            if tuple(value.shape) != tuple(self.params[_key(name)].shape):
                wrong.append(f"{name}: file {tuple(np.shape(tensors[name]))}")
            converted[name] = value
        if missing or wrong:
            raise WeightFileError(f"{source}: does not fit graph {self.source}: "
                                  + "; ".join(filter(None, [f"missing {missing[:8]}" if missing else "",
                                                           f"wrong shapes {wrong[:8]}" if wrong else ""])))
        with torch.no_grad():
            for name, value in converted.items():
                param = self.params[_key(name)]
                param.copy_(torch.from_numpy(value).to(param.device, param.dtype))
        self.invalidate()

    def _param(self, name: str) -> torch.Tensor:
        return self.params[_key(name)]

    def _static_of(self, node: GraphNode, index: int, what: str) -> np.ndarray:
        ref = node.inputs[index]
        if ref not in self._static:
            raise WeightFileError(f"node {node.name!r} ({node.op}): its {what} ({ref!r}) must be an integer "
                                  "Const; computed shapes are not supported")
        return self._static[ref]

    # ----------------------------------------------------------------- ops

    def _build(self, node: GraphNode) -> Callable[[list[_V]], _V]:
        op = node.op
        builder = getattr(self, f"_op_{op.lstrip('_')}", None)
        if builder is not None:
            return builder(node)
        if op in _BINARY:
            return _binary(_BINARY[op])
        if op in _UNARY:
            return _unary(_UNARY[op])
        known = sorted({*_BINARY, *_UNARY, *(m[4:] for m in dir(self) if m.startswith("_op_"))})
        raise WeightFileError(f"{self.source}: node {node.name!r} has op {op!r}, which the graph loader does not "
                              f"implement (implemented: {', '.join(known)})")

    def _conv(self, node: GraphNode, depthwise: bool, fused: bool, scale: str | None = None,
              bias: str | None = None, clamp: tuple[float, float] | None = None) -> Callable[[list[_V]], _V]:
        """A convolution; ``scale``/``bias`` name constants folded in (per output channel) and
        ``clamp`` a folded activation chain (see :meth:`_fuse`). Inputs: x, filter, fused args..., scale, bias."""
        _check_nhwc(node)
        stride = _pair_nhwc(node, "strides", [1, 1, 1, 1])
        dilation = _pair_nhwc(node, "dilations", [1, 1, 1, 1])
        padding = node_attr(node, "padding")
        explicit = node_attr(node, "explicit_paddings", [])
        epilogue = _epilogue(node, channel_axis=1) if fused else None
        filter_name = node.inputs[1]
        const_filter = filter_name in self._const_layout
        n_fused_args = len(node.inputs) - 2

        def run(vals: list[_V]) -> _V:
            x = _stored_nchw(vals[0])
            if const_filter:
                w = self._param(filter_name)
            else:
                raw = _logical(vals[1]).detach().cpu().numpy()
                w = torch.from_numpy(depthwise_filter(raw) if depthwise else conv_filter(raw)).to(x)
            extra = vals[2 + n_fused_args:]
            b = None
            if scale is not None:
                w = w * extra[0].t.reshape(-1, 1, 1, 1)
                extra = extra[1:]
            if bias is not None:
                b = extra[0].t.reshape(-1).expand(w.shape[0])
            kernel = (w.shape[2], w.shape[3])
            top, bottom, left, right = _spatial_padding(node, x, kernel, stride, dilation, padding, explicit)
            if top == bottom and left == right:
                pad = (top, left)
            else:
                x = F.pad(x, (left, right, top, bottom))
                pad = (0, 0)
            y = F.conv2d(x, w, b, stride, pad, dilation, groups=x.shape[1] if depthwise else 1)
            if epilogue is not None:
                y = epilogue(y, [v.t for v in vals[2:2 + n_fused_args]])
            if clamp is not None:
                y = y.clamp_(*clamp) if not y.requires_grad else y.clamp(*clamp)
            return _V(y, True)
        return run

    def _op_Conv2D(self, node):
        return self._conv(node, depthwise=False, fused=False)

    def _op_FusedConv2D(self, node):
        return self._conv(node, depthwise=False, fused=True)

    def _op_DepthwiseConv2dNative(self, node):
        return self._conv(node, depthwise=True, fused=False)

    def _op_FusedDepthwiseConv2dNative(self, node):
        return self._conv(node, depthwise=True, fused=True)

    def _op_MatMul(self, node, fused: bool = False):
        ta, tb = node_attr(node, "transpose_a", False), node_attr(node, "transpose_b", False)
        epilogue = _epilogue(node, channel_axis=-1) if fused else None

        def run(vals: list[_V]) -> _V:
            a, b = _logical(vals[0]), _logical(vals[1])
            y = (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
            if epilogue is not None:
                y = epilogue(y, [v.t for v in vals[2:]])
            return _V(y, False)
        return run

    def _op_FusedMatMul(self, node):
        return self._op_MatMul(node, fused=True)

    def _op_BiasAdd(self, node):
        _check_nhwc(node)
        return _binary(torch.add)

    def _op_Identity(self, node):
        return lambda vals: vals[0]

    _op_StopGradient = _op_Identity
    _op_Snapshot = _op_Identity

    def _op_Relu6(self, node):
        return _unary(lambda t: t.clamp(0.0, 6.0))

    def _op_LeakyRelu(self, node):
        alpha = node_attr(node, "alpha", 0.2)
        return _unary(lambda t: F.leaky_relu(t, alpha))

    def _op_Prelu(self, node):
        return _binary(lambda x, a: torch.where(x >= 0, x, x * a))

    def _op_Softmax(self, node):
        return lambda vals: _V(torch.softmax(vals[0].t, dim=1 if vals[0].nchw else -1), vals[0].nchw)

    def _op_Pad(self, node):
        pads = self._static_of(node, 1, "paddings").astype(int)
        has_value = node.op == "PadV2"

        def run(vals: list[_V]) -> _V:
            v = vals[0]
            value = float(vals[2].t) if has_value else 0.0
            order = _NHWC_TO_STORED if v.nchw else tuple(range(v.t.ndim))
            if pads.shape != (v.t.ndim, 2):
                raise ValueError(f"node {node.name!r}: paddings {pads.tolist()} do not fit shape {tuple(v.t.shape)}")
            stored = [None] * v.t.ndim
            for logical_axis, stored_axis in enumerate(order):
                stored[stored_axis] = pads[logical_axis]
            flat: list[int] = []
            for before, after in reversed(stored):
                flat += [int(before), int(after)]
            while flat and flat[-1] == 0 and flat[-2] == 0:
                flat = flat[:-2]
            return _V(F.pad(v.t, flat, value=value) if flat else v.t, v.nchw)
        return run

    _op_PadV2 = _op_Pad

    def _reduce(self, node, fn):
        axes = np.atleast_1d(self._static_of(node, 1, "reduction axes")).astype(int)
        keep = node_attr(node, "keep_dims", False)

        def run(vals: list[_V]) -> _V:
            v = vals[0]
            rank = v.t.ndim
            logical = sorted({int(a) % rank for a in axes})
            if not v.nchw:
                return _V(fn(v.t, logical, keep), False)
            y = fn(v.t, [_NHWC_TO_STORED[a] for a in logical], True)
            if keep:
                return _V(y, True)
            y = y.permute(0, 2, 3, 1)
            for a in reversed(logical):
                y = y.squeeze(a)
            return _V(y, False)
        return run

    def _op_Mean(self, node):
        return self._reduce(node, lambda t, dims, keep: t.mean(dim=dims, keepdim=keep))

    def _op_Sum(self, node):
        return self._reduce(node, lambda t, dims, keep: t.sum(dim=dims, keepdim=keep))

    def _op_Max(self, node):
        return self._reduce(node, lambda t, dims, keep: t.amax(dim=dims, keepdim=keep))

    def _op_Reshape(self, node):
        shape = [int(s) for s in self._static_of(node, 1, "shape").ravel()]
        return lambda vals: _V(_logical(vals[0]).reshape(shape), False)

    def _op_Squeeze(self, node):
        dims = node_attr(node, "squeeze_dims", [])

        def run(vals: list[_V]) -> _V:
            t = _logical(vals[0])
            axes = sorted({d % t.ndim for d in dims}) if dims else [i for i, s in enumerate(t.shape) if s == 1]
            for a in reversed(axes):
                t = t.squeeze(a)
            return _V(t, False)
        return run

    def _op_ConcatV2(self, node):
        axis = int(self._static_of(node, len(node.inputs) - 1, "axis"))

        def run(vals: list[_V]) -> _V:
            parts = vals[:-1]
            if all(p.nchw for p in parts):
                return _V(torch.cat([p.t for p in parts], dim=_NHWC_TO_STORED[axis % 4]), True)
            return _V(torch.cat([_logical(p) for p in parts], dim=axis), False)
        return run

    def _pool(self, node, kind: str):
        _check_nhwc(node)
        kernel = _pair_nhwc(node, "ksize", [1, 1, 1, 1])
        stride = _pair_nhwc(node, "strides", [1, 1, 1, 1])
        padding = node_attr(node, "padding")

        def run(vals: list[_V]) -> _V:
            x = _stored_nchw(vals[0])
            top, bottom, left, right = _spatial_padding(node, x, kernel, stride, (1, 1), padding, [])
            if kind == "max":
                if top or bottom or left or right:
                    x = F.pad(x, (left, right, top, bottom), value=-math.inf)
                return _V(F.max_pool2d(x, kernel, stride), True)
            # TF's SAME average pool divides by the number of real (unpadded) cells.
            ones = torch.ones_like(x[:1, :1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
                ones = F.pad(ones, (left, right, top, bottom))
            return _V(F.avg_pool2d(x, kernel, stride) / F.avg_pool2d(ones, kernel, stride), True)
        return run

    def _op_MaxPool(self, node):
        return self._pool(node, "max")

    def _op_AvgPool(self, node):
        return self._pool(node, "avg")

    # ----------------------------------------------------------------- running

    def _order(self, roots: Iterable[str]) -> list[str]:
        """Topological order of ``roots`` and everything they read."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        for root in roots:
            stack = [(root, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise WeightFileError(f"{self.source}: the graph has a cycle through {name!r}")
                state[name] = 1
                stack.append((name, True))
                for ref in reversed(self._nodes[name].inputs):
                    if state.get(ref) != 2:
                        stack.append((ref, False))
        return order

    def _scalar_const(self, name: str) -> float | None:
        if self._nodes[name].op == "Const" and _key(name) in self.params and self.params[_key(name)].numel() == 1:
            return float(self.params[_key(name)].detach().reshape(()))
        return None

    def _fuse(self, order: list[str], visible: set[str]) -> dict[str, tuple[str, Callable, tuple[str, ...]]]:
        """Fold a convolution's following per-channel Mul, Add and clamp chain into one step.

        Keras exports batch norm as Mul + Add after the convolution and ReLU6
        as Relu, Minimum(6), Maximum(0): four passes over each activation that
        one convolution with a scaled filter, a bias and a clamp replace. A node
        is folded only when the convolution chain is its sole reader and it is
        neither requested nor tapped (``visible``), so every value a caller can
        see is the graph's own. Returns {last node of chain: (first node, fn, inputs)};
        the chain's inner nodes are dropped from the program.
        """
        in_program = set(order)
        readers: dict[str, list[str]] = {}
        for name in order:
            for ref in self._nodes[name].inputs:
                readers.setdefault(ref, []).append(name)
        fused: dict[str, tuple[str, Callable, tuple[str, ...]]] = {}
        for name in order:
            node = self._nodes[name]
            if node.op not in _FILTER_OPS or node.inputs[1] not in self._const_layout:
                continue
            out_channels = self.params[_key(node.inputs[1])].shape[0]
            scale = bias = None
            lo, hi = -math.inf, math.inf
            end = name
            # 0: scale allowed, 1: bias allowed, 2: clamps only (a fused conv has its own bias/activation)
            stage = 2 if node.op.startswith(("_", "Fused")) else 0
            while end not in visible and len(readers.get(end, [])) == 1:
                nxt = self._nodes[readers[end][0]]
                if nxt.name not in in_program:
                    break
                other = [r for r in nxt.inputs if r != end]
                if nxt.op in ("Relu", "Relu6"):
                    lo, hi = max(lo, 0.0), max(hi, 0.0)
                    if nxt.op == "Relu6":
                        hi = min(hi, 6.0)
                    stage = 2
                elif nxt.op in ("Minimum", "Maximum") and len(other) == 1 and len(nxt.inputs) == 2 \
                        and self._scalar_const(other[0]) is not None:
                    c = self._scalar_const(other[0])
                    lo, hi = (lo, min(hi, c)) if nxt.op == "Minimum" else (max(lo, c), max(hi, c))
                    stage = 2
                elif nxt.op in ("Mul", "Add", "AddV2", "BiasAdd") and len(nxt.inputs) == 2 and len(other) == 1 \
                        and self._nodes[other[0]].op == "Const" and _key(other[0]) in self.params \
                        and self.params[_key(other[0])].numel() in (1, out_channels) \
                        and self.params[_key(other[0])].shape[-1:] in ((), (1,), (out_channels,)) \
                        and stage < (1 if nxt.op == "Mul" else 2):
                    if nxt.op == "Mul":
                        scale, stage = other[0], 1
                    else:
                        bias, stage = other[0], 2
                else:
                    break
                end = nxt.name
            if end == name:
                continue
            clamp = None if (lo, hi) == (-math.inf, math.inf) else (lo, hi)
            fn = self._conv(node, depthwise=_FILTER_OPS[node.op] == "depthwise",
                            fused=node.op.startswith(("_", "Fused")),
                            scale=scale, bias=bias, clamp=clamp)
            extra = tuple(r for r in (scale, bias) if r is not None)
            fused[end] = (name, fn, node.inputs + extra)
        return fused

    def _program(self, targets: tuple[str, ...]) -> list[tuple[str, Callable, tuple[str, ...], tuple[str, ...]]]:
        """Steps computing ``targets`` and the taps: (name, fn, inputs, values to free after it)."""
        key = (targets, tuple(self._taps), self.fuse)
        if key in self._programs:
            return self._programs[key]
        order = self._order((*targets, *self._taps))
        steps = [(name, self._ops.get(name), self._nodes[name].inputs) for name in order]
        if self.fuse:
            fused = self._fuse(order, set(targets) | set(self._taps))
            chain_members: dict[str, str] = {}
            for end, (start, _, _) in fused.items():
                node = end
                while True:
                    chain_members[node] = end
                    if node == start:
                        break
                    node = next(r for r in self._nodes[node].inputs
                                if self._nodes[r].op != "Const")
            hidden = {n for n, end in chain_members.items() if n != end}
            steps = [(name, fused[name][1], fused[name][2]) if name in fused else (name, fn, inputs)
                     for name, fn, inputs in steps if name not in hidden]
        keep = set(targets)
        last_use: dict[str, int] = {}
        for step, (_, _, inputs) in enumerate(steps):
            for ref in inputs:
                last_use[ref] = step
        free_after: dict[int, list[str]] = {}
        for name, step in last_use.items():
            if name not in keep and self._nodes[name].op != "Const":
                free_after.setdefault(step, []).append(name)
        program = [(name, fn, inputs, tuple(free_after.get(step, ()))) for step, (name, fn, inputs) in enumerate(steps)]
        self._programs[key] = program
        return program

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ImageError(f"graph {self.source}: input must be an N x C x H x W tensor, "
                             f"got {getattr(x, 'shape', type(x).__name__)}")
        if self.input_shape_nhwc is not None:
            _, h, w, c = self.input_shape_nhwc
            want = (c, h, w)
            got = tuple(x.shape[1:])
            if any(e != -1 and e != g for e, g in zip(want, got)):
                raise ImageError(f"graph {self.source} takes N x {c} x {h} x {w} input "
                                 f"(channels x height x width), got N x {got[0]} x {got[1]} x {got[2]}")

    def forward(self, x: torch.Tensor, outputs: str | Sequence[str] | None = None):
        self._check_input(x)
        if outputs is None:
            names = self.default_outputs
            single = self._single_output
        else:
            single = isinstance(outputs, str)
            names = (outputs,) if single else tuple(outputs)
            for name in names:
                self._check_node_name(name)
        values: dict[str, _V] = {}
        for name, fn, inputs, free in self._program(names):
            node = self._nodes[name]
            if node.op == "Const":
                if name in self._static:  # integer constants are mostly read statically; made on demand
                    cached = self._static_tensors.get((name, x.device))
                    if cached is None:
                        cached = self._static_tensors[(name, x.device)] = torch.as_tensor(self._static[name],
                                                                                         device=x.device)
                    values[name] = _V(cached, False)
                else:
                    values[name] = _V(self._param(name), False)
                continue
            if node.op == "Placeholder":
                # NCHW indexing over NHWC memory: TF's own layout, and the fast one for these convolutions
                value = _V(x.contiguous(memory_format=torch.channels_last), True)
            else:
                try:
                    value = fn([values[ref] for ref in inputs])
                except (RuntimeError, ValueError, IndexError) as exc:
                    shapes = [tuple(_logical(values[r]).shape) for r in inputs]
                    raise RuntimeError(f"graph {self.source}: node {name!r} ({node.op}) failed on inputs of "
                                       f"(TF-order) shapes {shapes}: {exc}") from exc
            tap = self._taps.get(name)
            if tap is not None:
                shown = value.t if value.nchw or value.t.ndim != 4 else _stored_nchw(value)
                value = _V(tap(shown), value.nchw or value.t.ndim == 4)
            values[name] = value
            for ref in free:
                values.pop(ref, None)
        result = {}
        for name in names:
            v = values[name]
            result[name] = v.t if v.nchw or v.t.ndim != 4 else _stored_nchw(v)
        return result[names[0]] if single else result


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul, "RealDiv": torch.div,
    "Div": torch.div, "Maximum": torch.maximum, "Minimum": torch.minimum,
    "SquaredDifference": lambda a, b: (a - b) ** 2,
}
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Elu": F.elu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Abs": torch.abs,
    "Neg": torch.neg, "Exp": torch.exp, "Sqrt": torch.sqrt, "Rsqrt": torch.rsqrt, "Square": torch.square,
}


def load_graph_model(path: str | Path, output: str | Sequence[str] | None = None,
                     taps: Mapping[str, str] | None = None) -> TFJSGraph:
    """Read ``model.json`` and its shards (beside it) into a :class:`TFJSGraph`."""
    model = read_graph_model(path)
    return TFJSGraph(model, model.decode_weights(), output=output, taps=taps)


def ops_used(path: str | Path) -> dict[str, int]:
    """How often each op occurs in a graph model (for checking what a file needs)."""
    counts: dict[str, int] = {}
    for node in read_graph_model(path).nodes.values():
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


__all__: Iterable[str] = ["GraphModelFile", "GraphNode", "TFJSGraph", "TapPoint", "load_graph_model", "ops_used",
                          "read_graph_model", "tf_same_padding"]
