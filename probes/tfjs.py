"""TensorFlow.js weight manifests: the one decoder for the one weight format.

face-api.js ships ``*-weights_manifest.json`` + ``*.bin``; TF.js graph models
embed the same manifest in ``model.json`` (key ``weightsManifest``). Both are
decoded here into ``{name: float32 ndarray}``.

Layout facts (TF.js ``io.decodeWeights``): tensors lie back to back in manifest
order across the group's shards; a quantised tensor takes ``prod(shape)`` bytes
(uint8) or ``2 * prod(shape)`` (uint16 / float16); value = q * scale + min.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WeightFileError

_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    count = int(np.prod(entry.get("shape", []), dtype=np.int64))
    quant = entry.get("quantization")
    if quant:
        return count * (1 if quant["dtype"] == "uint8" else 2)
    dtype = entry.get("dtype", "float32")
    if dtype not in _PLAIN_DTYPES:
        raise WeightFileError(f"weight {entry.get('name')!r}: unsupported dtype {dtype!r}")
    return count * np.dtype(_PLAIN_DTYPES[dtype]).itemsize


def _decode_entry(entry: Mapping[str, Any], raw: memoryview) -> np.ndarray:
    shape = tuple(int(s) for s in entry.get("shape", []))
    quant = entry.get("quantization")
    if quant:
        qdtype = quant["dtype"]
        if qdtype == "float16":
            values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif qdtype in ("uint8", "uint16"):
            q = np.frombuffer(raw, dtype=np.uint8 if qdtype == "uint8" else "<u2")
            values = q.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        else:
            raise WeightFileError(f"weight {entry['name']!r}: unknown quantisation {qdtype!r}")
    else:
        np_dtype = np.dtype(_PLAIN_DTYPES[entry.get("dtype", "float32")]).newbyteorder("<")
        values = np.frombuffer(raw, dtype=np_dtype)
        if values.dtype.kind == "f":
            values = values.astype(np.float32)
    return values.reshape(shape).copy()


def decode_weight_groups(groups: Iterable[Mapping[str, Any]], weights_dir: Path,
                         source: str = "manifest") -> dict[str, np.ndarray]:
    """Decode manifest groups whose shard files lie in ``weights_dir``.

    Raises :class:`WeightFileError` naming the shard when a file is missing or
    its length does not equal the sum of the tensors the manifest declares.
    """
    weights_dir = Path(weights_dir)
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        shard_paths = [weights_dir / p for p in group["paths"]]
        chunks = []
        for shard in shard_paths:
            if not shard.is_file():
                raise WeightFileError(f"{source}: weight shard {shard} is missing")
            chunks.append(shard.read_bytes())
        buffer = memoryview(b"".join(chunks))
        expected = sum(_entry_bytes(e) for e in group["weights"])
        shard_names = ", ".join(str(p) for p in shard_paths)
        if expected != len(buffer):
            raise WeightFileError(
                f"{source}: shard {shard_names} holds {len(buffer)} bytes but the manifest "
                f"declares {expected} (truncated or mismatched file)")
        offset = 0
        for entry in group["weights"]:
            size = _entry_bytes(entry)
            tensors[entry["name"]] = _decode_entry(entry, buffer[offset:offset + size])
            offset += size
    return tensors


def read_json(path: str | Path, what: str):
    """The JSON in ``path``; a missing or malformed file is a :class:`WeightFileError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{what} {path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightFileError(f"{what} {path} is not valid JSON: {exc}") from exc


def read_weights_manifest(manifest_path: str | Path) -> dict[str, np.ndarray]:
    """Read a face-api ``*-weights_manifest.json`` and its shards beside it."""
    manifest_path = Path(manifest_path)
    groups = read_json(manifest_path, "weights manifest")
    if isinstance(groups, dict):  # a graph model's model.json
        groups = groups.get("weightsManifest", [])
    return decode_weight_groups(groups, manifest_path.parent, source=str(manifest_path))


# TF layouts -> PyTorch layouts.
def conv_filter(hwio: np.ndarray) -> np.ndarray:
    """TF conv filter [H, W, in, out] -> PyTorch [out, in, H, W]."""
    return np.ascontiguousarray(hwio.transpose(3, 2, 0, 1))


def depthwise_filter(hwc1: np.ndarray) -> np.ndarray:
    """TF depthwise filter [H, W, C, multiplier] -> PyTorch [C*mult, 1, H, W] (groups=C)."""
    h, w, c, m = hwc1.shape
    return np.ascontiguousarray(hwc1.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w))


def dense_weight(io: np.ndarray) -> np.ndarray:
    """TF dense weight [in, out] -> PyTorch Linear weight [out, in]."""
    return np.ascontiguousarray(io.T)
