"""Per-layer expressivity sweep: every (layer, attribute) pair estimated, as one tidy table.

Labels come from :func:`~probes.expressivity.labels.collect_labels`; the table's ``label_source``
column says where each attribute's came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ..errors import UnknownNameError
from ..stats import repeated_split_interval
from .estimators import make_estimator
from .labels import AttributeLabels
from .results import EstimationError, MIResult


def expressivity_sweep(features: Mapping[str, np.ndarray], labels: Mapping[str, AttributeLabels],
                       estimators: Sequence[str] = ("probe",), seeds: Sequence[int] = (0,),
                       layer_order: Sequence[str] | None = None, estimator_params: Mapping[str, dict] | None = None,
                       n_jobs: int = 1, progress: bool = True, groups: np.ndarray | None = None) -> pd.DataFrame:
    """Estimate I(layer; attribute) for every pair; one row per (layer, attribute, estimator, seed).

    Columns: layer, depth, relative_depth, attribute, attribute_kind, label_source, estimator,
    seed, estimate, estimate_bits, ci_low, ci_high, p_value, n, n_eval, wall_time_s.
    Images whose label is missing (NaN) are left out of that attribute's estimates
    and ``n`` says how many remain. An estimator error is raised with the layer
    and attribute named, never turned into a NaN row. ``n_jobs`` > 1 runs the
    fits in that many worker processes (-1: one per CPU); results do not depend on it.
    ``groups`` (one person per image, e.g. LFW's names): every attribute but identity itself is estimated
    on person-disjoint splits, so an attribute constant within a person cannot be read through identity.
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
    def groups_of(attr):
        return None if groups is None or attr == "identity" else np.asarray(groups)[keep[attr]]

    calls = ((np.asarray(features[layer])[keep[attr]], labels[attr].values[keep[attr]], labels[attr].kind,
              (layer, attr, est, seed), params.get(est, {}), groups_of(attr)) for layer, attr, est, seed in jobs)
    with tqdm(total=len(jobs), desc="expressivity", unit="fit", disable=not progress) as bar:
        results = _run_fits(calls, n_jobs, bar)
    rows = []
    for (layer, attr, est, seed), result in zip(jobs, results):
        depth = layers.index(layer)
        rows.append({"layer": layer, "depth": depth, "relative_depth": depth / max(1, len(layers) - 1),
                     "attribute": attr, "attribute_kind": result.attribute_kind, "label_source": labels[attr].source,
                     "estimator": est, "seed": seed, "estimate": result.estimate,
                     "estimate_bits": result.estimate_bits, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "p_value": result.p_value, "n": result.n_samples, "n_eval": result.n_eval,
                     "split": "person-disjoint" if groups is not None and attr != "identity" else "by image",
                     "ceiling_nats": result.diagnostics.get("label_entropy_nats"),
                     "capped": bool(result.diagnostics.get("capped_at_entropy", False)),
                     "wall_time_s": result.wall_time_s})
    return pd.DataFrame(rows)


POOLED_KEYS = ("layer", "depth", "relative_depth", "attribute", "attribute_kind", "label_source", "estimator")


def pool_over_seeds(table: pd.DataFrame, interval: str = "envelope") -> pd.DataFrame:
    """One row per (layer, attribute, estimator) over the table's seeds (each a new split and training seed).

    ``estimate`` is the mean over seeds; ``seed_sd`` the standard deviation of the estimates across seeds.
    ``ci_low``/``ci_high``, by ``interval``:

    * "envelope" (default): the lowest low and highest high of the seeds' 95% intervals, which covers the
      spread between splits and training seeds as well as the evaluation rows of each. Conservative: in a
      simulation (``experiments/interval_calibration.py``, LinearProbe, 3 splits, 300 data sets) it covered
      the estimator's expected value in 100% of data sets, against 94% for one split's bootstrap.
    * "corrected-t": :func:`probes.stats.repeated_split_interval` (Nadeau-Bengio), calibrated by
      construction (96% in the same simulation) but wider on average with 3 seeds (t has 2 degrees of
      freedom).

    With one seed both are that seed's interval. ``interval`` names the rule in the table.
    """
    if interval not in ("envelope", "corrected-t"):
        raise ValueError(f"interval={interval!r}: expected 'envelope' or 'corrected-t'")
    keys = [k for k in POOLED_KEYS if k in table.columns]
    pooled = table.groupby(keys, sort=False).agg(
        estimate=("estimate", "mean"), ci_low=("ci_low", "min"), ci_high=("ci_high", "max"),
        seed_sd=("estimate", "std"), n_seeds=("seed", "nunique"), p_value=("p_value", "max"), n=("n", "first"),
        n_eval=("n_eval", "first"))
    pooled["interval"] = np.where(pooled["n_seeds"] > 1, interval, "bootstrap of one seed")
    if interval == "corrected-t":
        for key, part in table.groupby(keys, sort=False):
            if part["seed"].nunique() > 1:
                n, n_eval = int(part["n"].iloc[0]), int(part["n_eval"].iloc[0])
                _, lo, hi = repeated_split_interval(part["estimate"], n - n_eval, n_eval)
                pooled.loc[key, ["ci_low", "ci_high"]] = max(lo, 0.0), hi  # an MI is never negative
    return pooled.reset_index().sort_values(["estimator", "depth", "attribute"], kind="stable", ignore_index=True)


def _run_fits(calls: Iterable[tuple], n_jobs: int, bar) -> list[MIResult]:
    """``_estimate(*call)`` for every call, in order: here, or in ``n_jobs`` worker processes."""
    if n_jobs == 1:
        results = []
        for call in calls:
            results.append(_estimate(*call))
            bar.update(1)
        return results
    workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    threads = max(1, (os.cpu_count() or 1) // workers)
    results = []
    parallel = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)
    for result in parallel(delayed(_estimate)(*call, threads=threads) for call in calls):
        results.append(result)
        bar.update(1)
    return results


def _estimate(X: np.ndarray, y: np.ndarray, kind: str, job: tuple[str, str, str, int], params: dict,
              groups: np.ndarray | None = None, threads: int | None = None) -> MIResult:
    """One (layer, attribute, estimator, seed) ``job``; runs in a worker process when ``n_jobs`` > 1."""
    if threads is not None:  # workers share the cores: one torch pool each would oversubscribe them
        torch.set_num_threads(threads)
    layer, attr, est, seed = job
    estimator = make_estimator(est, random_state=seed, attribute_kind=kind, **params)
    try:
        return estimator.estimate(X, y, groups)
    except EstimationError as exc:
        raise EstimationError(f"layer {layer!r}, attribute {attr!r}, estimator {est!r}: {exc}") from exc
