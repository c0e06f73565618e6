"""Weight layers of a network: which modules (or TF.js graph constants) hold filters, and untrained copies.

:func:`module_layers` lists an ``nn.Module``'s ``Conv*``, ``ConvTranspose*`` and
``Linear`` submodules, :func:`graph_layers` a TF.js graph's filter constants,
each as a :class:`Layer` (filters along the first axis, PyTorch layout).
(The random twin of a plain module is :func:`probes.nn.reinitialised_copy`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import FaceprobeError
from ..nn import FILTER_MODULES
from ..tfjs_graph import TFJSGraph, node_attr, param_key

TRANSPOSED_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
GRAPH_FILTER_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv", "DepthwiseConv2dNative": "depthwise",
                    "FusedDepthwiseConv2dNative": "depthwise", "MatMul": "linear", "_FusedMatMul": "linear"}


class NetworkSpecError(FaceprobeError, ValueError):
    """A network spec string cannot be turned into a network; the message names the spec."""


class LayerMismatchError(FaceprobeError, ValueError):
    """Two networks' layers do not correspond; the message lists the layers and shapes that differ."""


@dataclass(frozen=True)
class Layer:
    """One weight layer: filters along the first axis of ``shape`` (PyTorch layout, OIHW for convs).

    A transposed convolution's weight is stored (in, out, k...); ``shape``
    and :meth:`filters` give it per output channel like every other layer.
    """

    name: str
    kind: str  # "conv", "depthwise", "conv_transpose", "linear"
    shape: tuple[int, ...]
    weight: torch.Tensor = field(repr=False, compare=False)
    groups: int = field(default=1, repr=False)

    @property
    def n_filters(self) -> int:
        return self.shape[0]

    @property
    def filter_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def filters(self) -> np.ndarray:
        """(n_filters, filter size) float64 array, one flattened filter per row."""
        w = self.weight.detach().float().cpu()
        if self.kind == "conv_transpose":
            g = self.groups
            w = w.reshape(g, w.shape[0] // g, *w.shape[1:]).transpose(1, 2)
            w = w.reshape(g * w.shape[1], *w.shape[2:])
        return w.reshape(w.shape[0], -1).numpy().astype(np.float64)


def module_layer(name: str, sub: nn.Module) -> Layer:
    """The :class:`Layer` of one filter module (``sub`` one of :data:`FILTER_MODULES`)."""
    w = sub.weight
    if isinstance(sub, nn.Linear):
        kind, shape, groups = "linear", tuple(w.shape), 1
    elif isinstance(sub, TRANSPOSED_MODULES):
        groups = sub.groups
        kind, shape = "conv_transpose", (w.shape[1] * groups, w.shape[0] // groups, *w.shape[2:])
    else:
        groups = sub.groups
        kind = "depthwise" if groups > 1 and groups == sub.in_channels else "conv"
        shape = tuple(w.shape)
    return Layer(name, kind, tuple(int(s) for s in shape), w, groups)


def module_layers(module: nn.Module) -> list[tuple[Layer, nn.Module]]:
    """Every weighted filter submodule of ``module``, in ``named_modules()`` order, with its module."""
    return [(module_layer(name, sub), sub) for name, sub in module.named_modules()
            if isinstance(sub, FILTER_MODULES) and getattr(sub, "weight", None) is not None]


def graph_layers(graph: TFJSGraph) -> list[tuple[Layer, str]]:
    """Filter constants of a TF.js graph, in file order, each with the first node that reads it."""
    out, seen = [], set()
    for node in graph.graph_nodes.values():
        kind = GRAPH_FILTER_OPS.get(node.op)
        if kind is None or len(node.inputs) < 2:
            continue
        const = node.inputs[1]
        key = param_key(const)
        if const in seen or key not in graph.params:
            continue
        seen.add(const)
        w = graph.params[key]
        if kind == "linear":
            if w.ndim != 2:
                continue
            # TF kernels are [in, out] unless transpose_b; filters are rows
            w = w if node_attr(node, "transpose_b", False) else w.t()
        out.append((Layer(const, kind, tuple(int(s) for s in w.shape), w), node.name))
    return out
