"""UTKFace faces at a GAN's resolution, with age groups, cached on disk.

Both aging GANs and their audit read faces through :func:`load_aging_faces`,
so the training set, the audited inputs and the real-face baselines are
resized the same way (area-averaged down from UTKFace's 200 x 200 crops).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from probes.datasets import FaceDataset, load_utkface
from probes.errors import DatasetError
from probes.images import load_image
from probes.weights import cache_home

from ..dfd.templates import ArrayCache, cache_key, files_fingerprint
from .groups import AgeGroups

CACHE_VERSION = "faceprobe-aging-faces-1"
UTKFACE_FRAME = 200  # UTKFace's crops are 200 x 200; face models measure faces in this frame


@dataclass
class AgingFaces:
    """Faces for an aging GAN: images plus per-face labels, all of length N."""

    images: np.ndarray  # N x S x S x 3 uint8
    ages: np.ndarray  # N float years
    sex: np.ndarray  # N int (UTKFace: 0 = male, 1 = female)
    race: np.ndarray  # N int (UTKFace codes)
    group: np.ndarray  # N int group index of ``groups`` (faces outside every group are dropped)
    groups: AgeGroups
    paths: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices) -> AgingFaces:
        idx = np.asarray(indices)
        return AgingFaces(self.images[idx], self.ages[idx], self.sex[idx], self.race[idx], self.group[idx],
                          self.groups, [self.paths[i] for i in np.arange(len(self))[idx]])

    def counts(self) -> dict[str, int]:
        """Faces per group label."""
        return {label: int((self.group == g).sum()) for g, label in enumerate(self.groups.labels)}

    def split(self, fractions=(0.9, 0.1), seed: int = 0) -> list[AgingFaces]:
        """Seeded random split (UTKFace has no identities, so by image)."""
        if not np.isclose(sum(fractions), 1.0) or any(f < 0 for f in fractions):
            raise DatasetError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
        order = np.random.default_rng(seed).permutation(len(self))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(self)).astype(int)
        return [self.subset(np.sort(part)) for part in np.split(order, cuts)]


def first_faces(faces: AgingFaces | None, n: int) -> AgingFaces | None:
    """The first ``n`` of ``faces`` (fewer when there are fewer); None for no or empty faces."""
    if faces is None or not len(faces):
        return None
    return faces.subset(np.arange(min(n, len(faces))))


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x size x size x 3 uint8 (bicubic, clamped).

    Used both to bring GAN-sized faces up to the frame a face model measures
    (:data:`UTKFACE_FRAME`) and real faces down to a GAN's size.
    """
    if images.shape[1:3] == (size, size):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    antialias = images.shape[1] > size
    y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=antialias)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _load_resized(path: Path, size: int) -> np.ndarray:
    image = load_image(path)
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BOX))


def load_aging_faces(groups: AgeGroups, image_size: int = 64, root: str | Path | None = None,
                     max_images: int | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                     dataset: FaceDataset | None = None, progress: bool = True) -> AgingFaces:
    """UTKFace faces in ``groups`` at ``image_size`` (square), labels from the file names.

    ``root``: the data root (or ``$FACEPROBE_DATA``); ``dataset``: an already
    loaded UTKFace-layout :class:`FaceDataset` with age/sex/race labels instead.
    Faces younger than the first group are dropped. The resized images are
    cached (keyed by file list, sizes and mtimes) under ``cache_dir``
    (default ``$FACEPROBE_HOME/cache/aging-faces``).
    """
    if not isinstance(image_size, int) or image_size < 16:
        raise DatasetError(f"image_size must be an integer >= 16, got {image_size!r}")
    if dataset is None:
        dataset = load_utkface(root, max_images=None)
    for column in ("age", "sex", "race"):
        if column not in dataset.attributes:
            raise DatasetError(f"dataset {dataset.name!r} has no {column!r} labels; the aging GANs and their "
                               f"audit need UTKFace-style age/sex/race labels")
    ages = dataset.labels("age")
    group = groups.of(ages)
    keep = np.flatnonzero(group >= 0)
    if max_images is not None and max_images < len(keep):
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=max_images, replace=False))
    if len(keep) == 0:
        raise DatasetError(f"no face of {dataset.name!r} falls in the age groups {groups.labels}")
    paths = [str(dataset.paths[i]) for i in keep]
    images = _cached_images(paths, image_size, cache_dir, progress)
    sex = np.asarray(dataset.table["sex"].to_numpy()[keep], dtype=np.float64)
    race = np.asarray(dataset.table["race"].to_numpy()[keep], dtype=np.float64)
    return AgingFaces(images, ages[keep].astype(np.float64), np.nan_to_num(sex, nan=-1).astype(np.int64),
                      np.nan_to_num(race, nan=-1).astype(np.int64), group[keep], groups, paths)


def _cached_images(paths: list[str], size: int, cache_dir, progress: bool) -> np.ndarray:
    if cache_dir is None:
        cache_dir = cache_home() / "cache" / "aging-faces"
    cache = ArrayCache(cache_dir)
    meta = {"version": CACHE_VERSION, "size": size, "n": len(paths), "files": files_fingerprint(paths)}
    key = cache_key(meta)
    cached = cache.get(key, meta, mmap=False)
    if cached is not None:
        return cached
    images = np.stack([_load_resized(Path(p), size)
                       for p in tqdm(paths, desc=f"faces at {size}px", unit="img", disable=not progress)])
    cache.put(key, meta, images)
    return images
