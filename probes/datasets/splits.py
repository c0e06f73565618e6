"""Identity-disjoint splits, and loading a data set by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DatasetError, UnknownNameError
from .folder import load_folder
from .lfw import load_lfw_people
from .records import FaceDataset
from .utkface import load_utkface


def identity_split(dataset: FaceDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                   by: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic (train, val, test) index arrays, sorted.

    With identities (``by="auto"`` or ``"identity"``) the split is
    identity-disjoint: people are shuffled with ``seed`` and whole people are
    assigned until each part holds about its fraction of the *images*; an
    image without an identity counts as its own person. Without identities
    (UTKFace) ``by="auto"`` splits the images themselves at random with
    ``seed`` -- the same person could then land in two parts. ``by="image"``
    forces that; ``by="identity"`` raises when there are no identities.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise DatasetError(f"fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    if by not in ("auto", "identity", "image"):
        raise UnknownNameError(f"unknown split mode {by!r}; valid: auto, identity, image")
    n = len(dataset)
    rng = np.random.default_rng(seed)
    has_ids = "identity" in dataset.attributes
    if by == "identity" and not has_ids:
        raise DatasetError(f"{dataset.name} has no identity labels for an identity split; use by='image'")
    if by == "image" or not has_ids:
        groups = np.arange(n)
    else:
        ids = dataset.labels("identity")
        ids = np.array([f"\0image{i}" if v is None else v for i, v in enumerate(ids)], dtype=object)
        _, groups = np.unique(ids.astype(str), return_inverse=True)
    n_groups = groups.max() + 1 if n else 0
    order = rng.permutation(n_groups)
    sizes = np.bincount(groups, minlength=n_groups)[order]
    # A person goes to the part in which the midpoint of their images falls.
    mid = (np.cumsum(sizes) - sizes / 2) / max(n, 1)
    part_of_group = np.empty(n_groups, np.int64)
    part_of_group[order] = np.searchsorted(np.cumsum(fractions)[:2], mid, side="right")
    part = part_of_group[groups]
    return tuple(np.flatnonzero(part == k) for k in range(3))  # type: ignore[return-value]


DATASETS = ("utkface", "lfw", "folder")


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> FaceDataset:
    """Load a dataset by name: ``utkface``, ``lfw`` (people) or ``folder`` (``root`` required)."""
    if name == "utkface":
        return load_utkface(root, **kwargs)
    if name == "lfw":
        return load_lfw_people(root, **kwargs)
    if name == "folder":
        if root is None:
            raise DatasetError("load_dataset('folder') needs root=<image folder>")
        return load_folder(root, **kwargs)
    raise UnknownNameError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
