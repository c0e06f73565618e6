"""Realism: how far each target's aged outputs lie from real faces of that age group, beside a floor.

Per target group, a Fréchet distance (:func:`probes.stats.frechet_distance`) between the outputs
aimed at that group and the audited real faces whose true age falls in it, in the embedding space of
each face model and in LPIPS' AlexNet feature space (:func:`probes.perceptual.lpips_features`). The
floor is the same distance between two random halves of those real faces: what sampling alone gives.

The estimate grows as samples shrink, so every distance compares sets of one size: each split draws
two disjoint halves of the group's real faces (m each), and m outputs of faces outside the reference
half (an output of a reference face would be a near-copy of it). Distance = FD(outputs, half 1),
floor = FD(half 2, half 1). A covariance needs samples well above its dimension: when m < 2 x D, all
three sets are projected on the top m // 2 principal components of their pooled features (the table
says so, with the dimensions). Means and spreads run over ``frechet_splits`` random splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from probes.perceptual import MIN_SIDE, lpips_features
from probes.stats import frechet_distance

from ..aging.data import resize_faces
from .config import AuditConfig
from .measure import AgedFaces, FaceReaders

MIN_HALF = 4  # real faces per half at the least (a 2-D projection, 2 samples per dimension)
LPIPS_SPACE = "LPIPS AlexNet conv1-5, pooled"


def lpips_space(aged: AgedFaces, config: AuditConfig) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Pooled LPIPS trunk features of the real faces and of every target's outputs (at the GAN's size,
    brought up first when below what LPIPS' trunk accepts, as the diversity measurement does)."""
    min_side = MIN_SIDE.get(config.lpips_net, 32)

    def features(images: np.ndarray) -> np.ndarray:
        if images.shape[1] < min_side:
            images = resize_faces(images, 2 * min_side)
        with torch.no_grad():
            return lpips_features(images, net=config.lpips_net, device=config.device, batch_size=config.batch_size)

    return features(aged.faces.images), {t: features(aged.outputs[t]) for t in aged.targets}


def feature_spaces(aged: AgedFaces, readers: FaceReaders, config: AuditConfig) -> dict[str, tuple]:
    """Space name -> (real features N x D, {target: output features N x D})."""
    spaces = {f"{role} embedding ({net.name})": (aged.real.embeddings[role],
                                                  {t: aged.measured[t].embeddings[role] for t in aged.targets})
              for role, net in readers.nets.items()}
    name = LPIPS_SPACE if config.lpips_net == "alex" else f"LPIPS {config.lpips_net} trunk, pooled"
    spaces[name] = lpips_space(aged, config)
    return spaces


def project(sets: list[np.ndarray], dim: int) -> list[np.ndarray]:
    """The sets on the top ``dim`` principal components of their pooled rows."""
    pooled = np.concatenate(sets)
    centre = pooled.mean(0)
    _, _, vt = np.linalg.svd(pooled - centre, full_matrices=False)
    return [(x - centre) @ vt[:dim].T for x in sets]


def split_distances(real: np.ndarray, outputs: np.ndarray, in_group: np.ndarray, splits: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(distances, floors) over ``splits`` random splits, faces per side m, and the dimension used.

    ``in_group``: indices of the group's real faces (rows of ``real``); ``outputs`` has one row per face.
    """
    m = len(in_group) // 2
    dim = min(real.shape[1], m // 2)
    distances, floors = np.empty(splits), np.empty(splits)
    for s in range(splits):
        order = rng.permutation(in_group)
        reference, other = order[:m], order[m:2 * m]
        candidates = np.setdiff1d(np.arange(len(outputs)), reference)
        sets = [real[reference], real[other], outputs[rng.choice(candidates, m, replace=False)]]
        if dim < real.shape[1]:
            sets = project(sets, dim)
        distances[s] = frechet_distance(sets[2], sets[0])
        floors[s] = frechet_distance(sets[1], sets[0])
    return distances, floors, m, dim


def realism_table(aged: AgedFaces, readers: FaceReaders, config: AuditConfig) -> pd.DataFrame:
    """Per target and feature space: Fréchet distance of the outputs to real faces of that group, and the floor."""
    return realism_rows(feature_spaces(aged, readers, config), aged.faces.group, aged.targets,
                        aged.faces.groups.labels, config)


def realism_rows(spaces: dict[str, tuple], face_groups: np.ndarray, targets: Sequence[int], labels: Sequence[str],
                 config: AuditConfig) -> pd.DataFrame:
    """:func:`realism_table` on given features: ``spaces`` as :func:`feature_spaces` gives them,
    ``face_groups`` the true age group of every real face (one per row of the real features)."""
    rng = np.random.default_rng(config.seed + 6)
    rows = []
    for space, (real, outputs) in spaces.items():
        full = real.shape[1]
        for t in targets:
            in_group = np.flatnonzero(face_groups == t)
            row = {"target": t, "target_label": labels[t], "space": space, "real_faces_of_group": len(in_group),
                   "outputs_of_target": len(outputs[t]), "feature_dim": full, "splits": config.frechet_splits}
            if len(in_group) // 2 < MIN_HALF:
                row.update({"faces_per_side": len(in_group) // 2, "dim_used": None,
                            "reduction": f"not measured: {len(in_group)} real face(s) of this group, "
                                         f"fewer than {2 * MIN_HALF}"})
                rows.append(row)
                continue
            distances, floors, m, dim = split_distances(real, outputs[t], in_group, config.frechet_splits, rng)
            ratio = distances / np.where(floors > 0, floors, np.nan)
            row.update({"faces_per_side": m, "dim_used": dim,
                        "reduction": (f"none ({m} faces per side >= 2 x {full} dims)" if dim == full else
                                      f"PCA of each split's pooled features to {dim} of {full} dims "
                                      f"({m} faces per side < 2 x {full})"),
                        "frechet": distances.mean(), "frechet_low": np.quantile(distances, 0.025),
                        "frechet_high": np.quantile(distances, 0.975), "floor": floors.mean(),
                        "floor_low": np.quantile(floors, 0.025), "floor_high": np.quantile(floors, 0.975),
                        "ratio_to_floor": float(np.nanmean(ratio)) if np.isfinite(ratio).any() else float("nan")})
            rows.append(row)
    return pd.DataFrame(rows)
