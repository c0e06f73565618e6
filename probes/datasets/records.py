"""What a data set is here: :class:`FaceDataset` (image paths plus a label table) and :class:`LFWPairs`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError, UnknownNameError
from ..images import load_images

LAYOUTS = ("chip", "lfw", "utkface")
LABEL_COLUMNS = ("identity", "age", "sex", "race")


class FaceDataset:
    """Image paths plus a label table, one row per image.

    ``labels`` is a DataFrame (any of ``identity``, ``age``, ``sex``, ``race``
    and further columns); ``label_source`` says where each column came from
    (published, estimated by a labeller, ...), so estimates stay marked.
    """

    def __init__(self, name: str, paths: Sequence[str | Path], labels: pd.DataFrame | Mapping | None = None,
                 layout: str = "chip", root: str | Path | None = None,
                 label_source: Mapping[str, str] | None = None,
                 skipped: Sequence[tuple[Path, str]] = ()):
        if layout not in LAYOUTS:
            raise UnknownNameError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
        self.name = name
        self.paths = [Path(p) for p in paths]
        table = pd.DataFrame(labels if labels is not None else {}, index=None)
        if len(table.columns) and len(table) != len(self.paths):
            raise DatasetError(f"dataset {name!r}: {len(self.paths)} paths but {len(table)} label rows")
        self.table = table.reset_index(drop=True) if len(table.columns) else pd.DataFrame(index=range(len(self.paths)))
        self.layout = layout
        self.root = Path(root) if root is not None else None
        self.label_source = dict(label_source or {})
        self.skipped = list(skipped)  # (path, reason) of files left out when loading (kept by subsets)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"FaceDataset({self.name!r}, n={len(self)}, layout={self.layout!r}, "
                f"attributes={list(self.attributes)})")

    @property
    def attributes(self) -> tuple[str, ...]:
        """Label columns with at least one known value."""
        return tuple(c for c in self.table.columns if self.table[c].notna().any())

    def labels(self, attribute: str) -> np.ndarray:
        """The ``attribute`` column as an array (age float; sex/race int when complete, else float with NaN)."""
        if attribute not in self.attributes:
            raise DatasetError(
                f"{self.name} has no {attribute!r} labels (it has: {', '.join(self.attributes) or 'none'}); "
                f"estimate them with a labeller (probes.labellers) and attach them with "
                f"dataset.with_labels({attribute}=values, source='estimated by ...')")
        column = self.table[attribute]
        if attribute == "identity":
            return np.array([None if pd.isna(v) else str(v) for v in column], dtype=object)
        if attribute == "age":
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_numeric_dtype(column):
            if column.notna().all() and np.all(np.mod(column.to_numpy(dtype=np.float64), 1) == 0):
                return column.to_numpy(dtype=np.int64)
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return column.to_numpy(dtype=object)

    def with_labels(self, source: str = "estimated", **columns) -> FaceDataset:
        """A copy with label columns added or replaced (e.g. ``age=labeller(images)``)."""
        table = self.table.copy()
        sources = dict(self.label_source)
        for key, values in columns.items():
            values = np.asarray(values)
            if values.ndim != 1 or len(values) != len(self):
                raise DatasetError(f"label {key!r} must have one value per image ({len(self)}), "
                                   f"got shape {values.shape}")
            table[key] = values
            sources[key] = source
        return FaceDataset(self.name, self.paths, table, self.layout, self.root, sources, self.skipped)

    def subset(self, indices) -> FaceDataset:
        """A dataset of the images at ``indices`` (integer array or boolean mask), in that order."""
        idx = _as_indices(indices, len(self))
        table = self.table.iloc[idx].reset_index(drop=True)
        return FaceDataset(self.name, [self.paths[i] for i in idx], table, self.layout, self.root,
                           self.label_source, self.skipped)

    def load_images(self, indices=None, size: tuple[int, int] | None = None) -> np.ndarray:
        """Images at ``indices`` (default all) as an N x H x W x 3 uint8 array.

        Images of one dataset must share a size; pass ``size=(H, W)`` to resize
        those of a mixed folder.
        """
        idx = range(len(self)) if indices is None else _as_indices(indices, len(self))
        return load_images([self.paths[i] for i in idx], size=size)


def _as_indices(indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DatasetError(f"boolean mask has shape {idx.shape}, dataset has {n} images")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise DatasetError(f"indices must be integers or a boolean mask, got {idx.dtype}")
    idx = idx.reshape(-1).astype(np.int64)
    if idx.min() < -n or idx.max() >= n:
        raise DatasetError(f"index out of range for a dataset of {n} images: {idx.min()}..{idx.max()}")
    return np.where(idx < 0, idx + n, idx)


@dataclass
class LFWPairs:
    """LFW verification pairs: two path lists, same/different labels and fold numbers.

    ``fold`` runs 0..9 for ``10_folds``; the DevTrain/DevTest views are a
    single fold 0. Embed each distinct image once::

        images = pairs.dataset()             # FaceDataset of unique_paths()
        emb = embed_dataset(backbone, images)
        d = np.linalg.norm(emb[pairs.index_a] - emb[pairs.index_b], axis=1)
    """

    paths_a: list[Path]
    paths_b: list[Path]
    same: np.ndarray  # bool
    fold: np.ndarray  # int
    subset: str
    root: Path
    index_a: np.ndarray = field(init=False, repr=False)
    index_b: np.ndarray = field(init=False, repr=False)
    _unique: list[Path] = field(init=False, repr=False)

    def __post_init__(self):
        self._unique = sorted(set(self.paths_a) | set(self.paths_b), key=str)
        where = {p: i for i, p in enumerate(self._unique)}
        self.index_a = np.array([where[p] for p in self.paths_a], dtype=np.int64)
        self.index_b = np.array([where[p] for p in self.paths_b], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.same)

    def __repr__(self) -> str:
        return (f"LFWPairs(subset={self.subset!r}, n={len(self)}, same={int(self.same.sum())}, "
                f"folds={len(np.unique(self.fold))}, images={len(self._unique)})")

    def unique_paths(self) -> list[Path]:
        """Distinct images, sorted; ``unique_paths()[index_a[k]] == paths_a[k]``."""
        return list(self._unique)

    def dataset(self) -> FaceDataset:
        """The distinct images as a FaceDataset (identity = LFW folder name, layout ``lfw``)."""
        return FaceDataset(f"lfw-pairs-{self.subset}", self._unique,
                           {"identity": [p.parent.name for p in self._unique]}, layout="lfw",
                           root=self.root, label_source={"identity": "LFW folder name"})

