"""Where the data live (``$FACEPROBE_DATA``) and seeded subsets of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError

DATA_ENV = "FACEPROBE_DATA"
LFW_ENV = "FACEPROBE_LFW_HOME"


def data_root(root: str | Path | None = None) -> Path:
    """The shared data folder: ``root`` or ``$FACEPROBE_DATA``; a clear error when neither exists."""
    if root is not None:
        where = Path(root).expanduser()
        if not where.is_dir():
            raise DatasetError(f"data root {where} (argument root) does not exist")
        return where
    env = os.environ.get(DATA_ENV)
    if not env:
        raise DatasetError(f"no data root: pass root=... or set {DATA_ENV} to the folder holding "
                           "utkface/ and lfw_home/")
    where = Path(env).expanduser()
    if not where.is_dir():
        raise DatasetError(f"data root {where} (from {DATA_ENV}) does not exist")
    return where


def subsample_indices(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``max_images`` of ``n`` items (all of them when None or >= n)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if max_images <= 0:
        raise DatasetError(f"max_images must be positive, got {max_images}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))

