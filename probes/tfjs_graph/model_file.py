"""Reading a TF.js graph ``model.json``: its nodes, attributes, inputs, outputs and weight groups."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightFileError
from ..tfjs import decode_weight_groups, read_json


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


def _read_nodes(raw_nodes: list, path: Path) -> dict[str, GraphNode]:
    """The nodes by name, in file order, each input checked to name a node of the graph."""
    nodes: dict[str, GraphNode] = {}
    for raw in raw_nodes:
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
    return nodes


def read_graph_model(path: str | Path) -> GraphModelFile:
    """Parse a TF.js graph ``model.json`` (no weights read yet)."""
    path = Path(path)
    data = read_json(path, "graph model")
    topology = data.get("modelTopology") if isinstance(data, dict) else None
    if not isinstance(topology, dict) or not isinstance(topology.get("node"), list):
        raise WeightFileError(f"{path} is not a TF.js graph model (no modelTopology.node list; "
                              "a layers model or a face-api manifest?)")
    nodes = _read_nodes(topology["node"], path)
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


def ops_used(path: str | Path) -> dict[str, int]:
    """How often each op occurs in a graph model (for checking what a file needs)."""
    counts: dict[str, int] = {}
    for node in read_graph_model(path).nodes.values():
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


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
