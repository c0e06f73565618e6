"""Running a labeller over a data set and scoring it: age/sex against published labels, head-pose mirror checks.

>>> predicted = label_dataset(create_labeller("faceapi-agegender"), load_utkface(max_images=500), "utkface")
>>> scores = score_age_sex(dataset.labels("age"), dataset.labels("sex"), dataset.labels("race"), predicted)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ..datasets import UTKFACE_RACES, FaceDataset
from ..stats import bootstrap_mean
from ..verification import roc_auc
from .registry import Labeller

# Age groups (years, both ends included) of the per-group tables.
AGE_GROUPS = ((0, 12), (13, 19), (20, 29), (30, 44), (45, 59), (60, 200))


def label_dataset(labeller: Labeller, dataset: FaceDataset, layout: str = "chip", chunk: int = 256,
                  mirror: bool = False, batch_size: int | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """``labeller.predict`` over ``dataset``, ``chunk`` images read at a time: ``{attribute: one value per image}``.

    ``mirror`` flips each image left to right first; ``batch_size`` is passed to ``predict``
    (None: its default).
    """
    options = {} if batch_size is None else {"batch_size": batch_size}
    parts: dict[str, list] = {}
    desc = f"{labeller.name} mirrored" if mirror else labeller.name
    for start in tqdm(range(0, len(dataset), chunk), desc=desc, unit="chunk", disable=not progress):
        images = dataset.load_images(np.arange(start, min(start + chunk, len(dataset))))
        if mirror:
            images = np.ascontiguousarray(images[:, :, ::-1])
        for key, value in labeller.predict(images, layout=layout, **options).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


# --------------------------------------------------------------------------- age and sex


class AgeSexScores(NamedTuple):
    """Overall ``metrics`` and one row per group (all, by sex, by race, by age) of :func:`score_age_sex`."""

    metrics: dict
    groups: list[dict]


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of ``values`` over faces resampled with replacement."""
    _, low, high, _ = bootstrap_mean(values, n_boot=n_boot, rng=seed)
    return [low, high]


def score_age_sex(age: np.ndarray, sex: np.ndarray, race: np.ndarray,
                  predicted: Mapping[str, np.ndarray]) -> AgeSexScores:
    """Age error and sex accuracy of ``predicted`` (``age``, ``p_male``, ``sex``) against labels (UTKFace's coding).

    Sex is each labeller's own decision (``predicted["sex"]``); its AUC ranks by ``p_male``.
    """
    pred = {key: np.asarray(predicted[key], np.float64) for key in ("age", "p_male", "sex")}
    err = pred["age"] - age
    correct = pred["sex"].astype(int) == sex
    metrics = {"age_mae": float(np.abs(err).mean()), "age_mae_ci95": bootstrap_ci(np.abs(err)),
               "age_median_ae": float(np.median(np.abs(err))),
               "age_bias": float(err.mean()), "age_pearson_r": float(np.corrcoef(pred["age"], age)[0, 1]),
               "sex_accuracy": float(correct.mean()), "sex_accuracy_ci95": bootstrap_ci(correct.astype(float)),
               "sex_auc": roc_auc(pred["p_male"], sex == 0)}
    groups = {"all": np.ones(len(age), bool), "male": sex == 0, "female": sex == 1}
    groups.update({f"race {name}": race == r for r, name in enumerate(UTKFACE_RACES)})
    groups.update({(f"age {lo}-{hi}" if hi < 200 else f"age {lo}+"): (age >= lo) & (age <= hi)
                   for lo, hi in AGE_GROUPS})
    rows = [{"group": g, "n": int(m.sum()), "age_mae": float(np.abs(err[m]).mean()), "age_bias": float(err[m].mean()),
             "sex_acc": float(correct[m].mean())} for g, m in groups.items() if m.any()]
    return AgeSexScores(metrics, rows)


# --------------------------------------------------------------------------- head pose


def mirror_consistency(pose: Mapping[str, np.ndarray], mirrored: Mapping[str, np.ndarray]) -> dict:
    """How well a pose estimator's angles flip under mirroring (no ground truth needed).

    ``mirrored`` holds the poses of the first ``n`` faces of ``pose``, flipped left to right: yaw and
    roll must change sign, pitch must stay.
    """
    m = len(mirrored["yaw"])
    yaw_gap = np.abs(pose["yaw"][:m] + mirrored["yaw"])
    return {
        "n": m,
        "mean_abs_yaw_plus_mirrored": float(yaw_gap.mean()),
        "median_abs_yaw_plus_mirrored": float(np.median(yaw_gap)),
        "max_abs_yaw_plus_mirrored": float(yaw_gap.max()),
        "corr_yaw_vs_minus_mirrored": float(np.corrcoef(pose["yaw"][:m], -mirrored["yaw"])[0, 1]),
        "mean_abs_pitch_diff": float(np.abs(pose["pitch"][:m] - mirrored["pitch"]).mean()),
        "mean_abs_roll_plus_mirrored": float(np.abs(pose["roll"][:m] + mirrored["roll"]).mean()),
    }


class PoseDistribution(NamedTuple):
    """Percentiles of yaw, pitch and roll, a yaw histogram and the shares of faces beyond yaw thresholds."""

    percentiles: dict[str, dict[str, float]]
    yaw_counts: list[int]  # first/last: below the first edge / at or above the last
    abs_yaw_shares: dict[str, float]


def pose_distribution(pose: Mapping[str, np.ndarray], percentiles: Sequence[float], yaw_edges: Sequence[float],
                      thresholds: Sequence[float] = (10, 20, 30, 45)) -> PoseDistribution:
    """The distribution of estimated head poses (degrees)."""
    table = {key: {f"p{p}": float(v) for p, v in zip(percentiles, np.percentile(pose[key], percentiles))}
             for key in ("yaw", "pitch", "roll")}
    edges = np.array(yaw_edges, dtype=float)
    counts = np.histogram(np.clip(pose["yaw"], -1e3, 1e3), bins=np.concatenate([[-1e3], edges, [1e3]]))[0]
    abs_yaw = np.abs(pose["yaw"])
    shares = {f"|yaw|>{t}": float((abs_yaw > t).mean()) for t in thresholds}
    return PoseDistribution(table, counts.tolist(), shares)
