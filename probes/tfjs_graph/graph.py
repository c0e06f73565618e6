"""The :class:`TFJSGraph` module: a TF.js graph model's constants as parameters, run node by node."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from ..errors import ImageError, UnknownNameError, WeightFileError
from ..tfjs import conv_filter, depthwise_filter
from .model_file import GraphModelFile, GraphNode, node_attr, read_graph_model
from .ops import FILTER_OPS, GraphOps
from .program import GraphProgram
from .values import Value, logical, param_key, stored_nchw


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


def filter_layouts(nodes: Mapping[str, GraphNode], source: str) -> dict[str, str]:
    """Filter constant -> the layout it is stored in (``conv`` or ``depthwise``); a constant read both as a
    filter and otherwise is refused."""
    layouts: dict[str, str] = {}
    for node in nodes.values():
        role = FILTER_OPS.get(node.op)
        if role and len(node.inputs) > 1 and nodes[node.inputs[1]].op == "Const":
            previous = layouts.setdefault(node.inputs[1], role)
            if previous != role:
                raise WeightFileError(f"{source}: constant {node.inputs[1]!r} is a filter of two kinds")
    for node in nodes.values():
        for ref in node.inputs:
            if ref in layouts and FILTER_OPS.get(node.op) is None:
                raise WeightFileError(f"{source}: filter constant {ref!r} is also read by "
                                      f"{node.name!r} ({node.op}); not supported")
    return layouts


class TFJSGraph(GraphOps, GraphProgram, nn.Module):
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
        self._read_signature(model, output)
        # Constants: float -> Parameter (filters converted to PyTorch layout), int -> static numpy.
        self._const_layout = filter_layouts(self._nodes, self.source)
        self._load_constants(model.decode_weights() if tensors is None else tensors)
        # One closure per non-Const node; an unknown op fails here, naming the op and the node.
        self._ops: dict[str, Callable[[list[Value]], Value]] = {}
        for node in self._nodes.values():
            if node.op not in ("Const", "Placeholder"):
                self._ops[node.name] = self._build(node)
        self._add_taps(taps or {})
        self._programs: dict[tuple, list] = {}
        self._static_tensors: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.register_load_state_dict_post_hook(lambda module, keys: module.invalidate())

    def _read_signature(self, model: GraphModelFile, output: str | Sequence[str] | None) -> None:
        """The input placeholder, its shape (where declared) and the default outputs."""
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

    def _load_constants(self, tensors: Mapping[str, np.ndarray]) -> None:
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
                self.params[param_key(node.name)] = nn.Parameter(tensor)
            else:
                self._static[node.name] = value

    def _add_taps(self, taps: Mapping[str, str]) -> None:
        self._taps: dict[str, TapPoint] = {}  # node name -> module
        self.nodes = nn.ModuleDict()  # modules added by node_module(), keyed by node name
        for alias, node_name in taps.items():
            self._check_node_name(node_name)
            if "." in alias or hasattr(self, alias):
                raise ValueError(f"tap alias {alias!r} is not a usable submodule name")
            module = self._taps.get(node_name) or TapPoint(node_name)
            self._taps[node_name] = module
            self.add_module(alias, module)
        self.tap_aliases = dict(taps)

    def invalidate(self) -> None:
        """Forget the compiled programs (they bake in the scalar bounds of folded clip chains).

        Called by :meth:`load_tensors` and ``load_state_dict``; call it after
        editing parameters in place.
        """
        self._programs.clear()

    # ----------------------------------------------------------------- names

    @property
    def graph_nodes(self) -> Mapping[str, GraphNode]:
        """Every node of the graph (Const included) by name, in file order; read-only."""
        return MappingProxyType(self._nodes)

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
        if param_key(name) not in self.nodes:
            self.nodes[param_key(name)] = self._taps[name]
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
        expected = {n.name for n in self._nodes.values() if n.op == "Const" and param_key(n.name) in self.params}
        missing = sorted(expected - set(tensors))
        wrong = []
        converted = {}
        for name in sorted(expected & set(tensors)):
            value = self._to_torch_layout(name, np.asarray(tensors[name]))
            if tuple(value.shape) != tuple(self.params[param_key(name)].shape):
                wrong.append(f"{name}: file {tuple(np.shape(tensors[name]))}")
            converted[name] = value
        if missing or wrong:
            raise WeightFileError(f"{source}: does not fit graph {self.source}: "
                                  + "; ".join(filter(None, [f"missing {missing[:8]}" if missing else "",
                                                           f"wrong shapes {wrong[:8]}" if wrong else ""])))
        with torch.no_grad():
            for name, value in converted.items():
                param = self.params[param_key(name)]
                param.copy_(torch.from_numpy(value).to(param.device, param.dtype))
        self.invalidate()

    # ----------------------------------------------------------------- running

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

    def _const_value(self, name: str, device: torch.device) -> Value:
        if name in self._static:  # integer constants are mostly read statically; made on demand
            cached = self._static_tensors.get((name, device))
            if cached is None:
                cached = self._static_tensors[(name, device)] = torch.as_tensor(self._static[name], device=device)
            return Value(cached, False)
        return Value(self._param(name), False)

    def _run_node(self, name: str, fn: Callable, inputs: tuple[str, ...], values: dict[str, Value]) -> Value:
        try:
            return fn([values[ref] for ref in inputs])
        except (RuntimeError, ValueError, IndexError) as exc:
            shapes = [tuple(logical(values[r]).shape) for r in inputs]
            raise RuntimeError(f"graph {self.source}: node {name!r} ({self._nodes[name].op}) failed on inputs of "
                               f"(TF-order) shapes {shapes}: {exc}") from exc

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
        values: dict[str, Value] = {}
        for name, fn, inputs, free in self._program(names):
            op = self._nodes[name].op
            if op == "Const":
                values[name] = self._const_value(name, x.device)
                continue
            if op == "Placeholder":
                # NCHW indexing over NHWC memory: TF's own layout, and the fast one for these convolutions
                value = Value(x.contiguous(memory_format=torch.channels_last), True)
            else:
                value = self._run_node(name, fn, inputs, values)
            tap = self._taps.get(name)
            if tap is not None:
                shown = value.t if value.nchw or value.t.ndim != 4 else stored_nchw(value)
                value = Value(tap(shown), value.nchw or value.t.ndim == 4)
            values[name] = value
            for ref in free:
                values.pop(ref, None)
        result = {}
        for name in names:
            v = values[name]
            result[name] = v.t if v.nchw or v.t.ndim != 4 else stored_nchw(v)
        return result[names[0]] if single else result


def load_graph_model(path: str | Path, output: str | Sequence[str] | None = None,
                     taps: Mapping[str, str] | None = None) -> TFJSGraph:
    """Read ``model.json`` and its shards (beside it) into a :class:`TFJSGraph`."""
    model = read_graph_model(path)
    return TFJSGraph(model, model.decode_weights(), output=output, taps=taps)
