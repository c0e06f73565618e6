"""A backbone's verification scores on LFW ``pairs.txt``: what its thresholds at a false match rate rest on."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from probes.datasets import load_lfw_pairs
from probes.verification import (
    FMRThreshold,
    LFWScores,
    cross_identity_scores,
    pair_scores,
    same_identity_scores,
)

from .settings import ReconstructionError, setting_error
from .templates import compute_targets

PAIRS_CHIP_SIZE = 32  # the pairs' chips are never used; stored small so their cache entry stays small


def lfw_pair_scores(backbone, data_root: str | Path | None = None, cache_dir=None, max_pairs: int | None = None,
                    seed: int = 0, progress: bool = True, exclude_identities=()) -> LFWScores:
    """Genuine, mismatched-pair and cross-identity impostor scores of LFW ``pairs.txt`` for ``backbone``.

    ``max_pairs`` takes a seeded subset (half matched, half mismatched) for quick runs and tests.
    ``exclude_identities``: people left out of every score (the attack's test people: a threshold is
    set on people the attack is not scored on).
    """
    pairs = load_lfw_pairs(data_root, "10_folds")
    keep = np.arange(len(pairs))
    if max_pairs is not None:
        if max_pairs < 2:
            raise setting_error(ReconstructionError, "{max_pairs} must be at least 2, got {got}", got=max_pairs)
        rng = np.random.default_rng(seed)
        same = np.flatnonzero(pairs.same)
        diff = np.flatnonzero(~pairs.same)
        keep = np.sort(np.concatenate([rng.choice(same, min(len(same), max_pairs // 2), replace=False),
                                       rng.choice(diff, min(len(diff), max_pairs - max_pairs // 2), replace=False)]))
    ds = pairs.dataset()
    used = np.unique(np.concatenate([pairs.index_a[keep], pairs.index_b[keep]]))
    ds_used = ds.subset(used)
    where = np.full(len(ds), -1)
    where[used] = np.arange(len(used))
    targets = compute_targets(backbone, ds_used, PAIRS_CHIP_SIZE, cache_dir=cache_dir, progress=progress)
    metric = backbone.spec.verification_metric
    t = targets.templates
    a, b = t[where[pairs.index_a[keep]]], t[where[pairs.index_b[keep]]]
    ids = np.asarray(ds_used.labels("identity"), dtype=str)
    outside = ~np.isin(ids, np.asarray(list(exclude_identities), dtype=str))
    kept_pairs = outside[where[pairs.index_a[keep]]] & outside[where[pairs.index_b[keep]]]
    scores = pair_scores(a, b, metric)[kept_pairs]
    same = pairs.same[keep][kept_pairs]
    cross = cross_identity_scores(t[outside], ids[outside], metric)
    return LFWScores(metric, scores[same], scores[~same], cross, int(outside.sum()), len(set(ids[outside])),
                     pairs.subset, int(kept_pairs.sum()), len(set(ids[~outside])))


def threshold_record(scores: LFWScores, thresholds: list[FMRThreshold]) -> dict:
    """What the thresholds of one backbone rest on, for a results file."""
    return {"metric": scores.metric, "pairs_file": "pairs.txt (10 folds)", "n_pairs_used": scores.n_pairs,
            "n_genuine": len(scores.genuine), "n_impostor_pairs": len(scores.impostor_pairs),
            "n_impostor_cross": len(scores.impostor_cross), "n_images": scores.n_images,
            "n_identities": scores.n_identities,
            "cross_identity_set": "every unordered pair of distinct pair-file images with different LFW names"
                                  + (f", {scores.n_people_left_out} test people left out"
                                     if scores.n_people_left_out else ""),
            "at_fmr": {f"{t.fmr:g}": asdict(t) for t in thresholds}}


def folder_scores(templates: np.ndarray, identities, metric: str, name: str) -> LFWScores:
    """A folder's own verification scores, in the form of :func:`lfw_pair_scores`: every pair of its images of
    the same person (genuine) and of different people (the cross-identity impostors; there is no protocol
    file, so no mismatched pairs)."""
    ids = np.asarray(identities, dtype=str)
    return LFWScores(metric, same_identity_scores(templates, ids, metric), np.zeros(0),
                     cross_identity_scores(templates, ids, metric), len(ids), len(set(ids)), name)


def folder_threshold_record(scores: LFWScores, thresholds: list[FMRThreshold], folder: str) -> dict:
    """:func:`threshold_record` of :func:`folder_scores`: what a folder's own thresholds rest on."""
    return dict(threshold_record(scores, thresholds), pairs_file=None, n_pairs_used=0,
                cross_identity_set=f"every pair of {folder}'s aligned photos of different people (the attacked "
                                   "people's own photos: the folder is both the attack and its impostors)")
