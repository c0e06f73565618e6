"""Diversity and collapse: LPIPS between outputs, beside the same between real faces.

Outputs of different inputs for one target should differ about as much as the inputs do
(else the generator has collapsed), and outputs of one input for different targets as much
as real faces of different age groups (else it ignores the target).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from probes.perceptual import MIN_SIDE, perceptual_distance
from probes.stats import cluster_bootstrap_mean

from ..aging.data import resize_faces
from .config import AuditConfig
from .measure import AgedFaces


class LPIPSRows:
    """Mean LPIPS with a bootstrap interval, one row per comparison (drawn from one seeded generator)."""

    def __init__(self, config: AuditConfig, side: int, rng: np.random.Generator, bar):
        self.config, self.rng, self.bar, self.rows = config, rng, bar, []
        self.min_side = MIN_SIDE.get(config.lpips_net, 32)
        self.grow = side < self.min_side  # LPIPS needs images of some size: small ones are brought up first

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(a), 64):
                x, y = a[s:s + 64], b[s:s + 64]
                if self.grow:
                    x, y = resize_faces(x, 2 * self.min_side), resize_faces(y, 2 * self.min_side)
                out.append(perceptual_distance(x, y, net=self.config.lpips_net, device=self.config.device)
                           .cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def add(self, comparison: str, which: str, target: str, values: np.ndarray, units: np.ndarray | None = None,
            unit: str = "pairs") -> float:
        """A row: the mean with an interval resampling ``units`` (one per value; each value its own when None)."""
        units = np.arange(len(values)) if units is None else units
        mean, low, high, k, n_units = cluster_bootstrap_mean(values, units, self.config.n_boot, rng=self.rng)
        self.rows.append({"comparison": comparison, "set": which, "target_label": target, "n_pairs": k,
                          "mean_lpips": mean, "ci_low": low, "ci_high": high, "n_units": n_units,
                          "interval": f"{unit}, bootstrap, {self.config.n_boot} resamples"})
        self.bar.update(1)
        return mean


def random_pairs(rng: np.random.Generator, n: int, count: int, allowed: Callable | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` pairs of distinct indices below ``n`` (and ``allowed(i, j)`` where given)."""
    if n < 2:
        return np.zeros(0, int), np.zeros(0, int)
    i = rng.integers(0, n, 4 * count)
    j = rng.integers(0, n, 4 * count)
    keep = i != j if allowed is None else (i != j) & allowed(i, j)
    return i[keep][:count], j[keep][:count]


def measure_diversity(aged: AgedFaces, labels: Sequence[str], config: AuditConfig) -> tuple[pd.DataFrame, dict]:
    """The diversity table and the collapse / ignores-target flags."""
    faces, outputs, targets = aged.faces, aged.outputs, aged.targets
    n, count = len(faces), config.lpips_pairs
    rng = np.random.default_rng(config.seed + 1)
    bar = tqdm(total=3 + 2 * len(targets), desc="diversity (LPIPS)", unit="set", disable=not config.progress,
               leave=False)
    lpips = LPIPSRows(config, faces.image_size, rng, bar)
    i, j = random_pairs(rng, n, count)
    real_across = lpips.add("different inputs, same target", "real", "all",
                            lpips.distances(faces.images[i], faces.images[j]))
    gi, gj = random_pairs(rng, n, count, lambda a, b: faces.group[a] != faces.group[b])
    real_ages = lpips.add("same input, different targets", "real", "all",
                          lpips.distances(faces.images[gi], faces.images[gj]) if len(gi) else np.zeros(0))
    flags = {"per_target": {}}
    across_all, change_all = [], []
    for t in targets:
        values = lpips.distances(outputs[t][i], outputs[t][j])
        across_all.append(values)
        mean = lpips.add("different inputs, same target", "outputs", labels[t], values)
        change = lpips.distances(outputs[t], faces.images)
        change_all.append(change)
        lpips.add("output vs its input", "outputs", labels[t], change, unit="source faces")
        ratio = mean / real_across if real_across > 0 else float("nan")
        flags["per_target"][labels[t]] = {"lpips_across_inputs": mean, "ratio_to_real": ratio,
                                          "collapsed": bool(ratio < config.collapse_fraction)}
    # Pooled over targets, the same pair (and the same face) recurs once per target: resample those, not values.
    lpips.add("different inputs, same target", "outputs", "all", np.concatenate(across_all),
              np.tile(np.arange(len(i)), len(targets)), "pairs of source faces (each once over all targets)")
    lpips.add("output vs its input", "outputs", "all", np.concatenate(change_all),
              np.tile(np.arange(n), len(targets)), "source faces (each once over all targets)")
    between = between_targets(lpips, aged, rng, count)
    bar.close()
    across = float(np.mean(np.concatenate(across_all)))
    flags.update(diversity_flags(real_across, across, real_ages, between, config))
    return pd.DataFrame(lpips.rows), flags


def between_targets(lpips: LPIPSRows, aged: AgedFaces, rng: np.random.Generator, count: int) -> float:
    """Mean LPIPS between outputs of one input for two different targets (NaN with one target)."""
    targets, outputs = aged.targets, aged.outputs
    if len(targets) < 2:
        return float("nan")
    k = rng.integers(0, len(aged.faces), count)
    ta = rng.integers(0, len(targets), count)
    tb = (ta + rng.integers(1, len(targets), count)) % len(targets)
    a = np.stack([outputs[targets[x]][f] for x, f in zip(ta, k)])
    b = np.stack([outputs[targets[x]][f] for x, f in zip(tb, k)])
    return lpips.add("same input, different targets", "outputs", "all", lpips.distances(a, b), k, "source faces")


def diversity_flags(real_across: float, across: float, real_ages: float, between: float,
                    config: AuditConfig) -> dict:
    """Collapsed: outputs of different inputs far less different than the inputs; ignores the target: outputs
    of one input for different targets far less different than real faces of different age groups."""
    return {
        "real_lpips_across_inputs": real_across, "outputs_lpips_across_inputs": across,
        "collapse_ratio": across / real_across if real_across > 0 else float("nan"),
        "collapse_fraction": config.collapse_fraction,
        "collapsed": bool(real_across > 0 and across / real_across < config.collapse_fraction),
        "real_lpips_different_age_groups": real_ages, "outputs_lpips_between_targets": between,
        "target_ratio": between / real_ages if real_ages and real_ages > 0 else float("nan"),
        "target_fraction": config.target_fraction,
        "ignores_target": bool(math.isfinite(between) and real_ages > 0
                               and between / real_ages < config.target_fraction),
    }
