"""Values flowing through a TF.js graph, and the layout and padding rules the ops share.

TF graphs are NHWC; 4-D activations are kept in PyTorch's NCHW order (convolutions are faster so)
and each :class:`Value` carries a flag saying so. Ops whose semantics depend on the axis order
translate their axes, or convert to TF's order first, with the helpers here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import WeightFileError
from .model_file import GraphNode, node_attr


class Value(NamedTuple):
    """A value flowing through the graph: the tensor and whether it is a 4-D NHWC value stored as NCHW."""

    t: torch.Tensor
    nchw: bool


NHWC_TO_STORED = (0, 2, 3, 1)  # logical NHWC axis -> axis of the NCHW tensor


def param_key(name: str) -> str:
    """The parameter (and module) key of node ``name``: such keys may not contain '.', TF node names may."""
    return name.replace(".", "·")


def logical(v: Value) -> torch.Tensor:
    """The tensor in TF's own axis order."""
    return v.t.permute(0, 2, 3, 1) if v.nchw else v.t


def stored_nchw(v: Value) -> torch.Tensor:
    """A 4-D value as an NCHW tensor."""
    if v.nchw:
        return v.t
    if v.t.ndim != 4:
        raise ValueError(f"expected a 4-D NHWC tensor, got shape {tuple(v.t.shape)}")
    return v.t.permute(0, 3, 1, 2)


def as_nchw_operand(t: torch.Tensor) -> torch.Tensor:
    """A logical (NHWC) operand of rank <= 4 broadcast-aligned to an NCHW-stored 4-D value."""
    if t.ndim > 4:
        raise ValueError(f"cannot broadcast a {t.ndim}-D tensor against a 4-D activation")
    t = t.reshape((1,) * (4 - t.ndim) + tuple(t.shape))
    return t.permute(0, 3, 1, 2)


def binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[list[Value]], Value]:
    """An elementwise op of two values, broadcasting as TF does whatever their storage order."""
    def run(vals: list[Value]) -> Value:
        a, b = vals
        if a.nchw or b.nchw:
            ta = a.t if a.nchw else as_nchw_operand(a.t)
            tb = b.t if b.nchw else as_nchw_operand(b.t)
            return Value(fn(ta, tb), True)
        return Value(fn(a.t, b.t), False)
    return run


def unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[list[Value]], Value]:
    """An elementwise op of one value (the storage order does not matter)."""
    return lambda vals: Value(fn(vals[0].t), vals[0].nchw)


BINARY_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul, "RealDiv": torch.div,
    "Div": torch.div, "Maximum": torch.maximum, "Minimum": torch.minimum,
    "SquaredDifference": lambda a, b: (a - b) ** 2,
}
UNARY_OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Elu": F.elu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Abs": torch.abs,
    "Neg": torch.neg, "Exp": torch.exp, "Sqrt": torch.sqrt, "Rsqrt": torch.rsqrt, "Square": torch.square,
}


# --------------------------------------------------------------------------- padding and attributes


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis; the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def spatial_padding(node: GraphNode, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
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


def pair_nhwc(node: GraphNode, key: str, default: Sequence[int]) -> tuple[int, int]:
    """A spatial (height, width) pair from an attribute given for NHWC, for H and W, or once for both."""
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


def check_nhwc(node: GraphNode) -> None:
    fmt = node_attr(node, "data_format", "NHWC")
    if fmt != "NHWC":
        raise WeightFileError(f"node {node.name!r} ({node.op}): data_format {fmt!r} is not supported (only NHWC)")


# --------------------------------------------------------------------------- fused epilogues

_WITH_ARGUMENT = ("BiasAdd", "Add", "Prelu")
_ACTIVATIONS = ("Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh")


def _fused_steps(node: GraphNode) -> list[tuple[str, bool]]:
    """The node's ``fused_ops`` as (op, consumes an extra input), checked against its inputs."""
    fused = node_attr(node, "fused_ops", [])
    steps: list[tuple[str, bool]] = []
    for op in fused:
        if op in _WITH_ARGUMENT:
            steps.append((op, True))
        elif op in _ACTIVATIONS:
            steps.append((op, False))
        else:
            raise WeightFileError(f"node {node.name!r} ({node.op}): fused op {op!r} is not implemented "
                                  "(implemented: BiasAdd, Prelu, Relu, Relu6, Elu, LeakyRelu, Sigmoid, Tanh)")
    n_args = sum(extra for _, extra in steps)
    if len(node.inputs) - 2 != n_args:
        raise WeightFileError(f"node {node.name!r} ({node.op}): fused ops {fused} need {n_args} extra "
                              f"input(s), the node has {len(node.inputs) - 2}")
    return steps


def _activation(op: str, y: torch.Tensor, alpha_leaky: float) -> torch.Tensor:
    if op == "Relu":
        return F.relu(y)
    if op == "Relu6":
        return y.clamp(0.0, 6.0)
    if op == "Elu":
        return F.elu(y)
    if op == "LeakyRelu":
        return F.leaky_relu(y, alpha_leaky)
    if op == "Sigmoid":
        return torch.sigmoid(y)
    return torch.tanh(y)


# Fused activations of _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul (TF grappler + TF.js).
def fused_epilogue(node: GraphNode, channel_axis: int) -> Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]:
    """The fused ops a convolution or matmul node applies to its result, as one function."""
    steps = _fused_steps(node)
    alpha_leaky = node_attr(node, "leakyrelu_alpha", 0.2)

    def channelwise(arg: torch.Tensor, ndim: int) -> torch.Tensor:
        if arg.ndim <= 1 and ndim == 4 and channel_axis == 1:
            return arg.reshape(1, -1, 1, 1)
        return arg

    def run(y: torch.Tensor, args: list[torch.Tensor]) -> torch.Tensor:
        k = 0
        for op, extra in steps:
            if not extra:
                y = _activation(op, y, alpha_leaky)
                continue
            arg = channelwise(args[k], y.ndim)
            k += 1
            y = torch.where(y >= 0, y, y * arg) if op == "Prelu" else y + arg
        return y
    return run
