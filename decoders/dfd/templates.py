"""Templates and target chips of a dataset, computed once and cached on disk.

:func:`compute_targets` returns, for every image of a :class:`FaceDataset`,
the backbone's template (float32, N x d) and the *target chip* the decoder
learns to draw (uint8, N x S x S x 3): the backbone's own input -- crop for the
dataset's layout, square padding, resize to the backbone's input size -- turned
back into RGB and resized to the decoder's size S. Feeding that chip back to the
backbone with layout ``"chip"`` gives (up to resampling) the same template.

Cache entries are ``<key>.npy`` plus a ``<key>.json`` written last, each
atomically (temporary file in the same folder, fsync, ``os.replace``): an
interrupted run leaves either a whole entry or none. Keys hash:

- templates: backbone name, ``weights_id`` (for random-init nets, a hash of
  the weights themselves), layout, and the ordered image paths with their size
  and modification time;
- chips: backbone name, its crop/padding/input size for the layout, the decoder
  size, and the same image list.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from probes.backbones.registry import FaceBackbone
from probes.datasets import FaceDataset
from probes.errors import DatasetError
from probes.geometry import images_to_tensor
from probes.images import load_image
from probes.outputs import atomic_write_bytes
from probes.weights import cache_home

from .model import TemplateError

CACHE_VERSION = "faceprobe-decoder-targets-1"


def default_cache_dir() -> Path:
    """``$FACEPROBE_HOME/cache/decoder-targets`` (or the default faceprobe cache home)."""

    return cache_home() / "cache" / "decoder-targets"


@dataclass
class Targets:
    """What the decoder trains on: templates, target chips and where they came from."""

    templates: np.ndarray  # N x d float32
    images: np.ndarray  # N x S x S x 3 uint8 (may be a read-only memory map)
    paths: list[str]
    layout: str
    identities: np.ndarray | None = None  # per image, object array of str, or None
    cache_hits: tuple[bool, bool] = (False, False)  # (templates, chips) read from the cache

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> Targets:
        idx = np.asarray(indices, np.int64)
        ids = self.identities[idx] if self.identities is not None else None
        return Targets(self.templates[idx], self.images[idx], [self.paths[i] for i in idx], self.layout, ids,
                       self.cache_hits)


def backbone_chips(backbone: FaceBackbone, images, layout: str, size: int) -> torch.Tensor:
    """The backbone's view of ``images`` (crop for ``layout``, padding) as RGB [0, 1], ``size`` x ``size``.

    Computed by inverting ``backbone.preprocess`` (normalisation and colour
    order), so it is exactly what the backbone embeds, then resized.
    """
    net_input = backbone.preprocess(images_to_tensor(images), layout)
    return _unpreprocess(backbone, net_input, size)


def _unpreprocess(backbone: FaceBackbone, net_input: torch.Tensor, size: int) -> torch.Tensor:
    x = backbone.to_rgb(net_input)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return x.clamp_(0, 1)


def weights_key(backbone: FaceBackbone) -> str:
    """``backbone.weights_id``, or a hash of the weights for randomly initialised nets."""
    if backbone.weights_id and backbone.weights_id != "random-init":
        return backbone.weights_id
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "random-init:" + digest.hexdigest()


def files_fingerprint(paths: list[str]) -> str:
    """Hash of each file's path, size and modification time: a cache key part that changes when files do."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


def cache_key(fields: dict) -> str:
    """A short stable key of a JSON-able description (the cache file name)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class ArrayCache:
    """A folder of ``<key>.npy`` arrays, each with a ``<key>.json`` description written last."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def get(self, key: str, meta: dict, mmap: bool = True) -> np.ndarray | None:
        js, npy = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        if not (js.is_file() and npy.is_file()):
            return None
        try:
            stored = json.loads(js.read_text())
            array = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable entry: recompute and overwrite it
        if stored.get("meta") != meta or list(array.shape) != stored.get("shape"):
            return None
        return array

    def put(self, key: str, meta: dict, array: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot create the template cache folder {self.folder}: {exc}") from exc
        atomic_write_bytes(self.folder / f"{key}.npy", lambda h: np.save(h, np.ascontiguousarray(array)))
        record = {"meta": meta, "shape": list(array.shape), "dtype": str(array.dtype)}
        atomic_write_bytes(self.folder / f"{key}.json", lambda h: h.write(json.dumps(record, indent=1).encode()))


def _check_finite(templates: np.ndarray, paths: list[str], where: str) -> None:
    bad = ~np.isfinite(templates).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise TemplateError(f"{where}: {int(bad.sum())} template(s) contain NaN or infinite values, "
                            f"e.g. image {paths[first]}")


def compute_targets(backbone: FaceBackbone, dataset: FaceDataset, image_size: int,
                    cache_dir: str | Path | None = None, batch_size: int = 32,
                    progress: bool = True) -> Targets:
    """Templates and target chips of ``dataset`` for ``backbone``, from the cache when possible.

    ``cache_dir=None`` uses :func:`default_cache_dir`; pass ``False`` to
    disable caching. Raises :class:`DatasetError` for an empty dataset and
    :class:`TemplateError` when a template is not finite.
    """
    if len(dataset) == 0:
        raise DatasetError(f"dataset {dataset.name!r} has no images")
    paths = [str(Path(p).resolve()) for p in dataset.paths]
    layout = dataset.layout
    spec = backbone.spec
    files = files_fingerprint(paths)
    t_meta = {"version": CACHE_VERSION, "kind": "templates", "backbone": spec.name,
              "weights": weights_key(backbone), "layout": layout, "n": len(paths), "files": files}
    c_meta = {"version": CACHE_VERSION, "kind": "chips", "backbone": spec.name,
              "crop": list(spec.crop_for(layout)), "pad_to_square": spec.pad_to_square,
              "input_size": list(spec.input_size), "layout": layout, "image_size": int(image_size),
              "n": len(paths), "files": files}
    cache = ArrayCache(default_cache_dir() if cache_dir is None else cache_dir) if cache_dir is not False else None
    t_key, c_key = cache_key(t_meta), cache_key(c_meta)
    templates = cache.get(t_key, t_meta, mmap=False) if cache else None
    chips = cache.get(c_key, c_meta) if cache else None
    hits = (templates is not None, chips is not None)
    if templates is None or chips is None:
        new_t, new_c = _compute(backbone, paths, layout, image_size, batch_size, progress,
                                need_templates=templates is None, need_chips=chips is None)
        if templates is None:
            _check_finite(new_t, paths, f"{dataset.name} templates from {spec.name}")
            templates = new_t
            if cache:
                cache.put(t_key, t_meta, templates)
        if chips is None:
            chips = new_c
            if cache:
                cache.put(c_key, c_meta, chips)
    templates = np.asarray(templates, np.float32)
    _check_finite(templates, paths, f"cached {dataset.name} templates from {spec.name}")
    ids = dataset.labels("identity") if "identity" in dataset.attributes else None
    return Targets(templates, chips, paths, layout, ids, hits)


@torch.no_grad()
def _compute(backbone: FaceBackbone, paths: list[str], layout: str, image_size: int, batch_size: int,
             progress: bool, need_templates: bool, need_chips: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    device = next(backbone.parameters()).device
    n, d = len(paths), backbone.spec.embedding_size
    templates = np.empty((n, d), np.float32) if need_templates else None
    chips = np.empty((n, image_size, image_size, 3), np.uint8) if need_chips else None
    was_training = backbone.training
    backbone.eval()
    try:
        with tqdm(total=n, desc=f"templates {backbone.name}", unit="img", disable=not progress,
                  leave=False) as bar:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                # One image at a time through preprocess: folders may mix image sizes.
                net_input = torch.cat([backbone.preprocess(images_to_tensor(load_image(p)).to(device), layout)
                                       for p in paths[start:stop]])
                if need_templates:
                    templates[start:stop] = backbone.net(net_input).float().cpu().numpy()
                if need_chips:
                    x = _unpreprocess(backbone, net_input, image_size)
                    chips[start:stop] = (x * 255).round_().byte().permute(0, 2, 3, 1).cpu().numpy()
                bar.update(stop - start)
    finally:
        backbone.train(was_training)
    return templates, chips
