"""The ops of the TF.js graph interpreter: one builder per TF op, each returning a closure over values.

:class:`GraphOps` is a mixin of :class:`~probes.tfjs_graph.TFJSGraph`: builders read the graph's
constants (``params``, ``_static``, ``_const_layout``) and ``_build`` picks a node's builder by
its op name (``_op_<Op>``), so the list of implemented ops is the list of those methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightFileError
from ..tfjs import conv_filter, depthwise_filter
from .model_file import GraphNode, node_attr
from .values import (
    BINARY_OPS,
    NHWC_TO_STORED,
    UNARY_OPS,
    Value,
    binary,
    check_nhwc,
    fused_epilogue,
    logical,
    pair_nhwc,
    param_key,
    spatial_padding,
    stored_nchw,
    unary,
)

# Ops whose second input is a filter, and the PyTorch layout that filter is stored in.
FILTER_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv",
              "DepthwiseConv2dNative": "depthwise", "FusedDepthwiseConv2dNative": "depthwise"}


class GraphOps:
    """Builders of the closures that run a graph's nodes (see the module doc)."""

    source: str
    def _param(self, name: str) -> torch.Tensor:
        return self.params[param_key(name)]

    def _static_of(self, node: GraphNode, index: int, what: str) -> np.ndarray:
        ref = node.inputs[index]
        if ref not in self._static:
            raise WeightFileError(f"node {node.name!r} ({node.op}): its {what} ({ref!r}) must be an integer "
                                  "Const; computed shapes are not supported")
        return self._static[ref]

    # ----------------------------------------------------------------- ops

    def _build(self, node: GraphNode) -> Callable[[list[Value]], Value]:
        op = node.op
        builder = getattr(self, f"_op_{op.lstrip('_')}", None)
        if builder is not None:
            return builder(node)
        if op in BINARY_OPS:
            return binary(BINARY_OPS[op])
        if op in UNARY_OPS:
            return unary(UNARY_OPS[op])
        known = sorted({*BINARY_OPS, *UNARY_OPS, *(m[4:] for m in dir(self) if m.startswith("_op_"))})
        raise WeightFileError(f"{self.source}: node {node.name!r} has op {op!r}, which the graph loader does not "
                              f"implement (implemented: {', '.join(known)})")

    def _conv(self, node: GraphNode, depthwise: bool, fused: bool, scale: str | None = None,
              bias: str | None = None, clamp: tuple[float, float] | None = None) -> Callable[[list[Value]], Value]:
        """A convolution; ``scale``/``bias`` name constants folded in (per output channel) and
        ``clamp`` a folded activation chain (see :meth:`_fuse`). Inputs: x, filter, fused args..., scale, bias."""
        check_nhwc(node)
        stride = pair_nhwc(node, "strides", [1, 1, 1, 1])
        dilation = pair_nhwc(node, "dilations", [1, 1, 1, 1])
        padding = node_attr(node, "padding")
        explicit = node_attr(node, "explicit_paddings", [])
        epilogue = fused_epilogue(node, channel_axis=1) if fused else None
        filter_name = node.inputs[1]
        const_filter = filter_name in self._const_layout
        n_fused_args = len(node.inputs) - 2

        def run(vals: list[Value]) -> Value:
            x = stored_nchw(vals[0])
            if const_filter:
                w = self._param(filter_name)
            else:
                raw = logical(vals[1]).detach().cpu().numpy()
                w = torch.from_numpy(depthwise_filter(raw) if depthwise else conv_filter(raw)).to(x)
            extra = vals[2 + n_fused_args:]
            b = None
            if scale is not None:
                w = w * extra[0].t.reshape(-1, 1, 1, 1)
                extra = extra[1:]
            if bias is not None:
                b = extra[0].t.reshape(-1).expand(w.shape[0])
            kernel = (w.shape[2], w.shape[3])
            top, bottom, left, right = spatial_padding(node, x, kernel, stride, dilation, padding, explicit)
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
            return Value(y, True)
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
        epilogue = fused_epilogue(node, channel_axis=-1) if fused else None

        def run(vals: list[Value]) -> Value:
            a, b = logical(vals[0]), logical(vals[1])
            y = (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
            if epilogue is not None:
                y = epilogue(y, [v.t for v in vals[2:]])
            return Value(y, False)
        return run

    def _op_FusedMatMul(self, node):
        return self._op_MatMul(node, fused=True)

    def _op_BiasAdd(self, node):
        check_nhwc(node)
        return binary(torch.add)

    def _op_Identity(self, node):
        return lambda vals: vals[0]

    _op_StopGradient = _op_Identity
    _op_Snapshot = _op_Identity

    def _op_Relu6(self, node):
        return unary(lambda t: t.clamp(0.0, 6.0))

    def _op_LeakyRelu(self, node):
        alpha = node_attr(node, "alpha", 0.2)
        return unary(lambda t: F.leaky_relu(t, alpha))

    def _op_Prelu(self, node):
        return binary(lambda x, a: torch.where(x >= 0, x, x * a))

    def _op_Softmax(self, node):
        return lambda vals: Value(torch.softmax(vals[0].t, dim=1 if vals[0].nchw else -1), vals[0].nchw)

    def _op_Pad(self, node):
        pads = self._static_of(node, 1, "paddings").astype(int)
        has_value = node.op == "PadV2"

        def run(vals: list[Value]) -> Value:
            v = vals[0]
            value = float(vals[2].t) if has_value else 0.0
            order = NHWC_TO_STORED if v.nchw else tuple(range(v.t.ndim))
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
            return Value(F.pad(v.t, flat, value=value) if flat else v.t, v.nchw)
        return run

    _op_PadV2 = _op_Pad

    def _reduce(self, node, fn):
        axes = np.atleast_1d(self._static_of(node, 1, "reduction axes")).astype(int)
        keep = node_attr(node, "keep_dims", False)

        def run(vals: list[Value]) -> Value:
            v = vals[0]
            rank = v.t.ndim
            logical = sorted({int(a) % rank for a in axes})
            if not v.nchw:
                return Value(fn(v.t, logical, keep), False)
            y = fn(v.t, [NHWC_TO_STORED[a] for a in logical], True)
            if keep:
                return Value(y, True)
            y = y.permute(0, 2, 3, 1)
            for a in reversed(logical):
                y = y.squeeze(a)
            return Value(y, False)
        return run

    def _op_Mean(self, node):
        return self._reduce(node, lambda t, dims, keep: t.mean(dim=dims, keepdim=keep))

    def _op_Sum(self, node):
        return self._reduce(node, lambda t, dims, keep: t.sum(dim=dims, keepdim=keep))

    def _op_Max(self, node):
        return self._reduce(node, lambda t, dims, keep: t.amax(dim=dims, keepdim=keep))

    def _op_Reshape(self, node):
        shape = [int(s) for s in self._static_of(node, 1, "shape").ravel()]
        return lambda vals: Value(logical(vals[0]).reshape(shape), False)

    def _op_Squeeze(self, node):
        dims = node_attr(node, "squeeze_dims", [])

        def run(vals: list[Value]) -> Value:
            t = logical(vals[0])
            axes = sorted({d % t.ndim for d in dims}) if dims else [i for i, s in enumerate(t.shape) if s == 1]
            for a in reversed(axes):
                t = t.squeeze(a)
            return Value(t, False)
        return run

    def _op_ConcatV2(self, node):
        axis = int(self._static_of(node, len(node.inputs) - 1, "axis"))

        def run(vals: list[Value]) -> Value:
            parts = vals[:-1]
            if all(p.nchw for p in parts):
                return Value(torch.cat([p.t for p in parts], dim=NHWC_TO_STORED[axis % 4]), True)
            return Value(torch.cat([logical(p) for p in parts], dim=axis), False)
        return run

    def _pool(self, node, kind: str):
        check_nhwc(node)
        kernel = pair_nhwc(node, "ksize", [1, 1, 1, 1])
        stride = pair_nhwc(node, "strides", [1, 1, 1, 1])
        padding = node_attr(node, "padding")

        def run(vals: list[Value]) -> Value:
            x = stored_nchw(vals[0])
            top, bottom, left, right = spatial_padding(node, x, kernel, stride, (1, 1), padding, [])
            if kind == "max":
                if top or bottom or left or right:
                    x = F.pad(x, (left, right, top, bottom), value=-math.inf)
                return Value(F.max_pool2d(x, kernel, stride), True)
            # TF's SAME average pool divides by the number of real (unpadded) cells.
            ones = torch.ones_like(x[:1, :1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
                ones = F.pad(ones, (left, right, top, bottom))
            return Value(F.avg_pool2d(x, kernel, stride) / F.avg_pool2d(ones, kernel, stride), True)
        return run

    def _op_MaxPool(self, node):
        return self._pool(node, "max")

    def _op_AvgPool(self, node):
        return self._pool(node, "avg")
