"""Capture what a backbone's layers compute, one pooled vector per image and layer.

:class:`LayerCapture` hooks a backbone's tap layers, runs images through it in
batches and returns ``{layer: float32 array (N, D_layer)}``. Hooks are removed
whatever happens. Results can be cached on disk, keyed by everything that
changes them. :func:`embed_dataset` gives the final embeddings only.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbones.registry import FaceBackbone
from .datasets import FaceDataset
from .errors import DatasetError, FaceprobeError, ImageError, UnknownNameError
from .geometry import images_to_tensor
from .nn import evaluating, recording
from .outputs import atomic_write_bytes, file_safe

POOLS = ("avg", "max")
_CACHE_VERSION = "faceprobe-capture-1"


def _batches(images, layout: str | None, batch_size: int) -> tuple[int, str, Iterator[tuple[int, int, np.ndarray]]]:
    """(n, layout, iterator of (start, stop, uint8 batch)) for a FaceDataset or an image array."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(images, FaceDataset):
        n, layout = len(images), layout or images.layout

        def gen():
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                yield start, stop, images.load_images(np.arange(start, stop))
        return n, layout, gen()
    if not isinstance(images, np.ndarray):
        raise ImageError(f"images must be a FaceDataset or an N x H x W x 3 uint8 array, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ImageError(f"images must be an N x H x W x 3 uint8 array, got {images.dtype} {images.shape}")
    n = len(images)
    return n, layout or "chip", ((s, min(n, s + batch_size), images[s:s + batch_size])
                                 for s in range(0, n, batch_size))


class LayerCapture:
    """Pooled activations of a backbone's layers.

    ``LayerCapture(backbone).capture(dataset)`` -> ``{layer: (N, D) float32}``.

    - ``layers``: tap-layer names (default ``backbone.tap_layers``); unknown
      names raise :class:`UnknownNameError` listing the valid ones.
    - ``pool``: ``"avg"`` (global average) or ``"max"`` over H x W for 4-D
      outputs; 2-D outputs pass through.
    - ``projection_dim``: when a pooled layer is wider, it is multiplied by a
      fixed Gaussian matrix (seeded by ``seed`` and the layer name, scaled by
      1/sqrt(projection_dim), so norms and distances are kept in expectation).
    - ``device``: where to run; ``None`` keeps the backbone where it is, a
      device moves the backbone there.
    - ``cache_dir``: store each result as an ``.npz`` and load it on a repeat
      call with the same backbone, weights, layers, pooling, projection,
      layout and images (paths in order, or the array's bytes).

    Memory: the result takes N x sum(D) x 4 bytes. 10,000 images x 16 layers
    x 256 wide = 164 MB; one 4,096-wide layer adds 164 MB, capped at 10 MB
    by ``projection_dim=256``. Pooling is what makes this fit: the unpooled
    first dlib block alone (32 x 35 x 35) would take 1.6 GB for 10,000 images.
    """

    def __init__(self, backbone: FaceBackbone, layers: Sequence[str] | None = None, pool: str = "avg",
                 projection_dim: int | None = None, seed: int = 0, batch_size: int = 64,
                 device: str | torch.device | None = None, cache_dir: str | Path | None = None,
                 progress: bool = True):
        self.backbone = backbone
        names = list(backbone.tap_layers if layers is None else ([layers] if isinstance(layers, str) else layers))
        if not names:
            raise UnknownNameError(f"no layers given; valid layers: {', '.join(backbone.tap_layers)}")
        for name in names:
            backbone.layer(name)  # raises UnknownNameError listing the valid layers
        self.layers = list(dict.fromkeys(names))  # drop repeats, keep order
        if pool not in POOLS:
            raise UnknownNameError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        if projection_dim is not None and (int(projection_dim) != projection_dim or projection_dim <= 0):
            raise ValueError(f"projection_dim must be a positive integer or None, got {projection_dim!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.pool = pool
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.seed = seed
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.progress = progress
        self.last_from_cache = False  # whether the latest capture() came from the disk cache
        self._projections: dict[tuple[str, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ projection

    def projection(self, layer: str, width: int) -> np.ndarray | None:
        """The fixed (width, projection_dim) matrix for ``layer``, or None when no projection applies."""
        if self.projection_dim is None or width <= self.projection_dim:
            return None
        # crc32, not hash(): Python salts str hashes per process.
        rng = np.random.default_rng([self.seed, zlib.crc32(layer.encode())])
        matrix = rng.standard_normal((width, self.projection_dim), dtype=np.float32)
        return matrix / np.float32(np.sqrt(self.projection_dim))

    def _project(self, layer: str, features: torch.Tensor) -> torch.Tensor:
        width = features.shape[1]
        key = (layer, width)
        if key not in self._projections:
            matrix = self.projection(layer, width)
            self._projections[key] = None if matrix is None else torch.from_numpy(matrix)
        matrix = self._projections[key]
        if matrix is None:
            return features
        if matrix.device != features.device:
            matrix = self._projections[key] = matrix.to(features.device)
        return features @ matrix

    def _reduce(self, layer: str, output) -> np.ndarray:
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise FaceprobeError(f"layer {layer!r} returned {type(output).__name__}, not a tensor")
        x = output.detach().float()
        if x.ndim == 4:
            x = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        elif x.ndim != 2:
            raise FaceprobeError(f"layer {layer!r} gives a {x.ndim}-D output {tuple(x.shape)}; "
                                 "only N x C x H x W (pooled) and N x D outputs can be captured")
        return self._project(layer, x).cpu().numpy().astype(np.float32, copy=False)

    # ------------------------------------------------------------------ cache

    def cache_key(self, images, layout: str | None = None) -> str:
        """sha256 of everything that determines a capture's result."""
        if isinstance(images, FaceDataset):
            layout = layout or images.layout
        else:
            layout = layout or "chip"
        spec = self.backbone.spec
        header = {
            "version": _CACHE_VERSION, "backbone": self.backbone.name,
            "weights": self.backbone.weights_id, "layers": self.layers, "pool": self.pool,
            "projection_dim": self.projection_dim,
            "projection_seed": self.seed if self.projection_dim is not None else None,
            "layout": layout, "crop": list(spec.crop_for(layout)) if layout in spec.crops else None,
            "input_size": list(spec.input_size), "mean": list(spec.mean), "std": list(spec.std),
        }
        digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
        if isinstance(images, FaceDataset):
            digest.update(b"paths\0")
            for path in images.paths:
                digest.update(os.path.abspath(path).encode() + b"\0")
        elif isinstance(images, np.ndarray):
            digest.update(f"array {images.dtype} {images.shape}\0".encode())
            digest.update(np.ascontiguousarray(images).data)
        else:
            raise ImageError(f"images must be a FaceDataset or an N x H x W x 3 uint8 array, "
                             f"got {type(images).__name__}")
        return digest.hexdigest()

    def cache_path(self, images, layout: str | None = None) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{file_safe(self.backbone.name)}-{self.cache_key(images, layout)}.npz"

    def _load_cache(self, path: Path) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as stored:
                names = [str(n) for n in stored["layers"]]
                if names != self.layers:
                    return None
                return {name: stored[f"layer_{i}"] for i, name in enumerate(names)}
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, not fatal
            warnings.warn(f"capture cache {path} is unreadable ({exc}); recomputing", stacklevel=3)
            return None

    def _save_cache(self, path: Path, result: dict[str, np.ndarray]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"layer_{i}": result[name] for i, name in enumerate(self.layers)}
        # atomic: readers never see half a file
        atomic_write_bytes(path, lambda handle: np.savez(handle, layers=np.array(self.layers), **arrays))

    # ------------------------------------------------------------------ the verb

    def capture(self, images, layout: str | None = None) -> dict[str, np.ndarray]:
        """``{layer: float32 (N, D_layer)}`` for a FaceDataset (its layout) or a uint8 N x H x W x 3 array.

        ``layout`` overrides the dataset's layout; for arrays it defaults to ``"chip"``.
        """
        cache = self.cache_path(images, layout)
        self.last_from_cache = False
        if cache is not None and cache.is_file():
            result = self._load_cache(cache)
            if result is not None:
                self.last_from_cache = True
                return result
        result = self._run(images, layout)
        if cache is not None:
            self._save_cache(cache, result)
        return result

    def _run(self, images, layout: str | None) -> dict[str, np.ndarray]:
        n, layout, batches = _batches(images, layout, self.batch_size)
        if n == 0:
            raise DatasetError("no images to capture")
        backbone = self.backbone
        if self.device is not None:
            backbone.to(self.device)
        device = next(backbone.parameters()).device
        result: dict[str, np.ndarray] = {}
        layers = {name: backbone.layer(name) for name in self.layers}
        with evaluating(backbone), recording(layers, self._reduce, repr(backbone.name)) as batch_out:
            bar = tqdm(total=n, desc=f"capture {backbone.name}", unit="img", disable=not self.progress, leave=False)
            with torch.no_grad(), bar:
                for start, stop, batch in batches:
                    batch_out.clear()
                    backbone(images_to_tensor(batch).to(device), layout)
                    batch_out.check_complete(self.layers, repr(backbone.name))
                    for name, values in batch_out.items():
                        if name not in result:
                            result[name] = np.empty((n, values.shape[1]), np.float32)
                        result[name][start:stop] = values
                    bar.update(stop - start)
        return {name: result[name] for name in self.layers}


def embed_dataset(backbone: FaceBackbone, images, layout: str | None = None, batch_size: int = 64,
                  progress: bool = True, aligner=None) -> np.ndarray:
    """Final embeddings (N x D float32) of a FaceDataset (its layout) or a uint8 image array.

    A dataset is read batch by batch, so only one batch of pixels is in memory. With an
    ``aligner`` (a :class:`probes.align.FaceAligner`) each batch is aligned first and its chips
    are embedded.
    """
    n, layout, batches = _batches(images, layout, batch_size)
    out = np.empty((n, backbone.spec.embedding_size), np.float32)
    with tqdm(total=n, desc=f"embed {backbone.name}", unit="img", disable=not progress, leave=False) as bar:
        for start, stop, batch in batches:
            if aligner is None:
                out[start:stop] = backbone.embed(batch, layout, batch_size=batch_size)
            else:
                out[start:stop] = backbone.embed(aligner.align(batch, layout=layout), "chip", batch_size=batch_size)
            bar.update(stop - start)
    return out
