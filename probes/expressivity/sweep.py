"""Per-layer expressivity sweep: every (layer, attribute) pair estimated, as one tidy table.

Labels come from the dataset where it has them (UTKFace age/sex) and from a
labeller otherwise (yaw; age/sex on LFW); the table's ``label_source`` column
says which. Identity is a discrete attribute from the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import DatasetError, UnknownNameError
from ..labellers import create_labeller
from .estimators import MINE, NWJ, SMILE, InfoNCE, LinearProbe, MIEstimator
from .results import EstimationError

ESTIMATORS: dict[str, type[MIEstimator]] = {
    "probe": LinearProbe, "mine": MINE, "nwj": NWJ, "smile": SMILE, "infonce": InfoNCE}

# Which labeller attribute stands for each sweep attribute, and its kind. Sex
# from a labeller is P(male), continuous, as in Dhar et al.; the dataset's own
# sex label is discrete.
LABELLER_OUTPUT = {"age": "age", "sex": "p_male", "yaw": "yaw", "pitch": "pitch", "roll": "roll"}
DEFAULT_LABELLERS = {"age": "faceapi-agegender", "sex": "faceapi-agegender", "yaw": "faceapi-headpose",
                     "pitch": "faceapi-headpose", "roll": "faceapi-headpose"}
KNOWN_ATTRIBUTES = ("age", "sex", "yaw", "pitch", "roll", "identity", "race")


def make_estimator(name: str, random_state: int = 0, **params) -> MIEstimator:
    """An estimator by its sweep name (``probe``, ``mine``, ``nwj``, ``smile``, ``infonce``)."""
    try:
        cls = ESTIMATORS[name.lower()]
    except KeyError:
        raise UnknownNameError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}") from None
    return cls(random_state=random_state, **params)


@dataclass(frozen=True)
class AttributeLabels:
    """One attribute's values for every image, where they came from, and their kind."""

    values: np.ndarray
    kind: str  # "continuous" or "discrete"
    source: str  # "dataset" or the labeller's name


def collect_labels(dataset, attributes: Sequence[str], labellers: Mapping[str, str] | None = None,
                   prefer: str = "dataset", batch_size: int = 64, device: str = "cpu",
                   progress: bool = True) -> dict[str, AttributeLabels]:
    """Labels for ``attributes``: from ``dataset`` when it has them (``prefer="dataset"``), else a labeller.

    ``labellers`` maps attribute -> labeller name (defaults: face-api's
    age/gender net for age and sex, the head-pose estimator for yaw/pitch/roll).
    """

    unknown = [a for a in attributes if a not in KNOWN_ATTRIBUTES]
    if unknown:
        raise UnknownNameError(f"unknown attribute(s) {unknown}; known: {', '.join(KNOWN_ATTRIBUTES)}")
    chosen = {**DEFAULT_LABELLERS, **(labellers or {})}
    out: dict[str, AttributeLabels] = {}
    need: dict[str, list[str]] = {}
    for attr in attributes:
        if attr in dataset.attributes and (prefer == "dataset" or attr not in LABELLER_OUTPUT):
            values = dataset.labels(attr)
            if attr == "identity":
                values = pd.factorize(pd.Series(values))[0]
            kind = "continuous" if attr == "age" else "discrete"
            out[attr] = AttributeLabels(np.asarray(values), kind, "dataset")
        elif attr in LABELLER_OUTPUT:
            need.setdefault(chosen[attr], []).append(attr)
        else:
            raise DatasetError(f"dataset {dataset.name!r} has no {attr!r} labels and no labeller estimates "
                               f"{attr!r}; available: {', '.join(dataset.attributes) or 'none'}")
    for labeller_name, attrs in need.items():
        labeller = create_labeller(labeller_name, device=device)
        missing = [LABELLER_OUTPUT[a] for a in attrs if LABELLER_OUTPUT[a] not in labeller.attributes]
        if missing:
            raise UnknownNameError(f"labeller {labeller_name!r} does not estimate {missing}; "
                                   f"it gives {', '.join(labeller.attributes)}")
        parts: dict[str, list[np.ndarray]] = {a: [] for a in attrs}
        starts = range(0, len(dataset), batch_size)
        for start in tqdm(starts, desc=f"labels [{labeller_name}]", unit="batch", disable=not progress):
            idx = np.arange(start, min(start + batch_size, len(dataset)))
            predicted = labeller.predict(dataset.load_images(idx), layout=dataset.layout)
            for a in attrs:
                parts[a].append(np.asarray(predicted[LABELLER_OUTPUT[a]], np.float64))
        for a in attrs:
            out[a] = AttributeLabels(np.concatenate(parts[a]), "continuous", labeller_name)
    return out


def _estimate(X: np.ndarray, y: np.ndarray, kind: str, layer: str, attr: str, est: str, seed: int, params: dict,
              threads: int | None = None):
    """One (layer, attribute, estimator, seed) fit; runs in a worker process when ``n_jobs`` > 1."""
    if threads is not None:  # workers share the cores: one torch pool each would oversubscribe them
        import torch

        torch.set_num_threads(threads)
    estimator = make_estimator(est, random_state=seed, attribute_kind=kind, **params)
    try:
        return estimator.estimate(X, y)
    except EstimationError as exc:
        raise EstimationError(f"layer {layer!r}, attribute {attr!r}, estimator {est!r}: {exc}") from exc


def expressivity_sweep(features: Mapping[str, np.ndarray], labels: Mapping[str, AttributeLabels],
                       estimators: Sequence[str] = ("probe",), seeds: Sequence[int] = (0,),
                       layer_order: Sequence[str] | None = None, estimator_params: Mapping[str, dict] | None = None,
                       n_jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Estimate I(layer; attribute) for every pair; one row per (layer, attribute, estimator, seed).

    Columns: layer, depth, relative_depth, attribute, attribute_kind, label_source, estimator,
    seed, estimate, estimate_bits, ci_low, ci_high, p_value, n, n_eval, wall_time_s.
    Images whose label is missing (NaN) are left out of that attribute's estimates
    and ``n`` says how many remain. An estimator error is raised with the layer
    and attribute named, never turned into a NaN row. ``n_jobs`` > 1 runs the
    fits in that many worker processes (-1: one per CPU); results do not depend on it.
    """
    layers = list(layer_order or features)
    missing = [layer for layer in layers if layer not in features]
    if missing:
        raise UnknownNameError(f"no features for layer(s) {missing}; captured: {', '.join(features)}")
    if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    params = estimator_params or {}
    for layer in layers:
        for attr, lab in labels.items():
            if len(features[layer]) != len(lab.values):
                raise EstimationError(f"layer {layer!r} has {len(features[layer])} feature rows but {attr!r} has "
                                      f"{len(lab.values)} labels")
    keep = {attr: ~pd.isna(lab.values) for attr, lab in labels.items()}
    jobs = [(layer, attr, est, seed) for layer in layers for attr in labels for est in estimators for seed in seeds]

    def calls():
        for layer, attr, est, seed in jobs:
            lab = labels[attr]
            yield (np.asarray(features[layer])[keep[attr]], lab.values[keep[attr]], lab.kind, layer, attr, est,
                   seed, params.get(est, {}))

    bar = tqdm(total=len(jobs), desc="expressivity", unit="fit", disable=not progress)
    if n_jobs == 1:
        results = []
        for call in calls():
            results.append(_estimate(*call))
            bar.update(1)
    else:
        import os

        from joblib import Parallel, delayed

        workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
        threads = max(1, (os.cpu_count() or 1) // workers)
        results = []
        parallel = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)
        for result in parallel(delayed(_estimate)(*call, threads=threads) for call in calls()):
            results.append(result)
            bar.update(1)
    bar.close()
    rows = []
    for (layer, attr, est, seed), result in zip(jobs, results):
        depth = layers.index(layer)
        rows.append({"layer": layer, "depth": depth, "relative_depth": depth / max(1, len(layers) - 1),
                     "attribute": attr, "attribute_kind": result.attribute_kind, "label_source": labels[attr].source,
                     "estimator": est, "seed": seed, "estimate": result.estimate,
                     "estimate_bits": result.estimate_bits, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "p_value": result.p_value, "n": result.n_samples, "n_eval": result.n_eval,
                     "wall_time_s": result.wall_time_s})
    return pd.DataFrame(rows)


def plot_expressivity(table: pd.DataFrame, title: str | None = None):
    """Expressivity against depth, one line per attribute with its CI band; one panel per estimator.

    Returns the matplotlib Figure (nothing is shown or saved).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty:
        raise ValueError("the expressivity table is empty: nothing to plot")
    estimators = list(dict.fromkeys(table["estimator"]))
    attributes = list(dict.fromkeys(table["attribute"]))
    palette = dict(zip(attributes, sns.color_palette("colorblind", len(attributes))))
    layers = table.drop_duplicates("depth").sort_values("depth")
    fig, axes = plt.subplots(1, len(estimators), figsize=(6.5 * len(estimators), 4.2), squeeze=False, sharey=False)
    for ax, est in zip(axes[0], estimators):
        part = table[table["estimator"] == est]
        mean = part.groupby(["attribute", "depth"], sort=True)[["estimate", "ci_low", "ci_high"]].mean().reset_index()
        for attr in attributes:
            line = mean[mean["attribute"] == attr]
            if line.empty:
                continue
            ax.plot(line["depth"], line["estimate"], marker="o", ms=3, label=attr, color=palette[attr])
            ax.fill_between(line["depth"], line["ci_low"], line["ci_high"], alpha=0.2, color=palette[attr])
        ax.set_xticks(layers["depth"])
        ax.set_xticklabels(layers["layer"], rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer (input -> output)")
        ax.set_ylabel("I(layer; attribute) [nats]")
        ax.set_title(est)
        ax.grid(alpha=0.3)
        ax.legend(title="attribute", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
