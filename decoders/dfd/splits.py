"""The decoder's training data: LFW and/or UTKFace, split into train / validation / test parts.

LFW is split by identity (the test people are never seen in training); UTKFace, which has no
identities, by image; with both datasets every UTKFace image joins LFW's training part.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from probes.datasets import FaceDataset, identity_split, load_lfw_people, load_utkface
from probes.errors import TrainingError

from .templates import Targets

DATASET_CHOICES = ("lfw", "utkface", "both")
Split = tuple[np.ndarray, np.ndarray, np.ndarray]  # train, val, test indices


def dataset_parts(config, data_root: str | Path | None) -> dict[str, tuple[FaceDataset, Split]]:
    """``{"lfw": (dataset, split), "utkface": ...}`` for ``config.dataset``, seeded by ``config.split_seed``."""
    parts = {}
    if config.dataset in ("lfw", "both"):
        lfw = load_lfw_people(data_root, min_images_per_person=config.min_images_per_person,
                              max_images=config.max_images, seed=config.split_seed)
        parts["lfw"] = (lfw, identity_split(lfw, config.fractions, seed=config.split_seed, by="identity"))
    if config.dataset in ("utkface", "both"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            utk = load_utkface(data_root, max_images=config.max_images, seed=config.split_seed)
        if config.dataset == "both":
            parts["utkface"] = (utk, (np.arange(len(utk)), np.zeros(0, np.int64), np.zeros(0, np.int64)))
        else:
            parts["utkface"] = (utk, identity_split(utk, config.fractions, seed=config.split_seed, by="image"))
    return parts


def split_record(parts: dict, config) -> dict:
    """``split.json``: per dataset, its parts' sizes and identities, and the validation and test images."""
    record = {"fractions": config.fractions, "seed": config.split_seed, "dataset": config.dataset, "parts": {}}
    for name, (ds, split) in parts.items():
        entry = {"layout": ds.layout, "split_by": "identity" if name == "lfw" else
                 ("none (all images train)" if config.dataset == "both" else "image")}
        ids = ds.labels("identity") if "identity" in ds.attributes else None
        for part, idx in zip(("train", "val", "test"), split):
            entry[part] = {"n_images": len(idx)}
            if ids is not None:
                entry[part]["identities"] = sorted({str(i) for i in ids[idx]})
            if part != "train":
                entry[part]["paths"] = [str(ds.paths[i]) for i in idx]
        record["parts"][name] = entry
    return record


def concat_targets(targets: list[Targets]) -> Targets:
    """The targets of several datasets as one (layout "mixed")."""
    if len(targets) == 1:
        return targets[0]
    paths = [p for t in targets for p in t.paths]
    return Targets(np.concatenate([t.templates for t in targets]),
                   np.concatenate([np.asarray(t.images) for t in targets]), paths, "mixed", None,
                   tuple(all(t.cache_hits[i] for t in targets) for i in range(2)))


def training_parts(parts: dict, all_targets: dict[str, Targets], batch_size: int,
                   world_size: int) -> tuple[Targets, Targets | None]:
    """(training, validation) targets; refuses a training part smaller than one batch of every process."""
    train_parts, val_parts = [], []
    for name, (_ds, (tr, va, _te)) in parts.items():
        if len(tr):
            train_parts.append(all_targets[name].subset(tr))
        if len(va):
            val_parts.append(all_targets[name].subset(va))
    if not train_parts:
        raise TrainingError("the training split is empty; use more images or other --fractions")
    train = concat_targets(train_parts)
    if len(train) < batch_size * world_size:
        raise TrainingError(f"the training split has {len(train)} images, fewer than one batch "
                            f"({batch_size} x {world_size} process(es)); use more images or a "
                            "smaller --batch-size")
    return train, concat_targets(val_parts) if val_parts else None
