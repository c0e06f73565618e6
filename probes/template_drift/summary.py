"""Summaries and figures of a drift table: intervals per strength, failure strengths, drift plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..stats import cluster_bootstrap_mean
from .families import PerturbationError, get_family


def summarise(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per family, variant and strength: mean cosine and L2 with t-intervals, verified rate with a Wilson interval.

    With a ``person`` column (several images of one person are not independent) every interval is a
    bootstrap over people instead, and ``n_people`` says how many there were.
    """
    from scipy import stats

    if "person" in table.columns:
        return _summarise_by_person(table, confidence)
    if table.empty:
        raise PerturbationError("the drift table is empty: nothing to summarise")
    out = []
    for (family, variant, strength), g in table.groupby(["family", "variant", "strength"], sort=False):
        n = len(g)
        row = {"family": family, "variant": variant, "strength": strength, "unit": g["unit"].iloc[0], "n": n}
        for col in ("cosine", "l2") + tuple(c for c in g.columns if c.startswith("recon_") and
                                            c not in ("recon_verified",) and g[c].dtype != object):
            m, sd = float(g[col].mean()), float(g[col].std(ddof=1)) if n > 1 else float("nan")
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
            row.update({f"{col}_mean": m, f"{col}_ci_low": m - half, f"{col}_ci_high": m + half})
        for col in ("verified", "recon_verified"):
            if col in g.columns and g[col].notna().all():
                k = int(g[col].astype(bool).sum())
                ci = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
                row.update({f"{col}_rate": k / n, f"{col}_ci_low": float(ci.low), f"{col}_ci_high": float(ci.high)})
        row["linf_max"] = float(g["linf"].max())
        out.append(row)
    return pd.DataFrame(out)


def _summarise_by_person(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    if table.empty:
        raise PerturbationError("the drift table is empty: nothing to summarise")
    out = []
    for (family, variant, strength), g in table.groupby(["family", "variant", "strength"], sort=False):
        people = g["person"].to_numpy()
        row = {"family": family, "variant": variant, "strength": strength, "unit": g["unit"].iloc[0], "n": len(g),
               "n_people": int(pd.Series(people).nunique())}
        for col in ("cosine", "l2") + tuple(c for c in g.columns if c.startswith("recon_") and
                                            c not in ("recon_verified",) and g[c].dtype != object):
            m, lo, hi, _, _ = cluster_bootstrap_mean(g[col].to_numpy(np.float64), people, confidence=confidence)
            row.update({f"{col}_mean": m, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        for col in ("verified", "recon_verified"):
            if col in g.columns and g[col].notna().all():
                m, lo, hi, _, _ = cluster_bootstrap_mean(g[col].astype(bool).to_numpy(np.float64), people,
                                                         confidence=confidence)
                row.update({f"{col}_rate": m, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        row["linf_max"] = float(g["linf"].max())
        out.append(row)
    return pd.DataFrame(out)


def failure_strengths(summary: pd.DataFrame, below: float = 0.5, column: str = "verified_rate") -> pd.DataFrame:
    """Per family and variant, the smallest strength (in the family's order of increasing effect) at which
    the ``column`` rate falls below ``below``; NaN when it never does."""
    if column not in summary.columns:
        raise PerturbationError(f"the summary has no {column!r} column (measure with a threshold)")
    out = []
    for (family, variant), g in summary.groupby(["family", "variant"], sort=False):
        fam = get_family(family)
        # Effect grows with the distance from the identity strength (scaling: both ways from 1).
        g = g.assign(_effect=(g["strength"] - fam.identity).abs()).sort_values("_effect")
        hit = g[g[column] < below]
        out.append({"family": family, "variant": variant, "below": below,
                    "strength": float(hit["strength"].iloc[0]) if len(hit) else float("nan")})
    return pd.DataFrame(out)


_LABELS = {"cosine": "cosine to the clean template", "l2": "L2 distance to the clean template",
           "verified": "fraction still verified"}


def plot_drift(table: pd.DataFrame, metrics: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
               title: str | None = None, ci: float = 95, seed: int = 0):
    """Drift against strength, mean over images with a ``ci``% bootstrap band, one panel per metric.

    Default panels: cosine, L2 (``euclidean`` backbones) and the fraction still
    verified (when measured with a threshold; its threshold is drawn on the
    score panel). One line per family when the table holds several, else one
    per variant (occlusion position). Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty:
        raise PerturbationError("the drift table is empty: nothing to plot")
    families = list(dict.fromkeys(table["family"]))
    metric = table["metric"].iloc[0]
    has_threshold = table["verified"].notna().all()
    if metrics is None:
        metrics = ["cosine"] + (["l2"] if metric == "euclidean" else []) + (["verified"] if has_threshold else [])
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise PerturbationError(f"no column(s) {', '.join(missing)} in the drift table; columns: "
                                f"{', '.join(table.columns)}")
    labels = {**_LABELS, **(labels or {})}
    data = table.copy()
    for m in metrics:
        if data[m].dtype == object or data[m].dtype == bool:
            data[m] = data[m].astype(float)
    if len(families) > 1:
        hue = "family"
    elif data["variant"].nunique() > 1:
        hue = "variant"
    else:
        hue = None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.lineplot(data=data, x="strength", y=m, hue=hue, marker="o", errorbar=("ci", ci), n_boot=1000,
                     seed=seed, ax=ax, palette="colorblind" if hue else None, legend=ax is axes[0][0])
        ax.set_ylabel(labels.get(m, m))
        ax.set_xlabel(f"{families[0] if len(families) == 1 else 'strength'} ({data['unit'].iloc[0]})")
        ax.grid(alpha=0.3)
        threshold = table["threshold"].iloc[0] if has_threshold else None
        if threshold is not None and ((m == "cosine" and metric == "cosine") or (m == "l2" and metric == "euclidean")):
            value = threshold if m == "cosine" else -threshold
            ax.axhline(value, ls="--", color="grey", lw=1)
            ax.annotate("verification threshold", (ax.get_xlim()[0], value), fontsize=7, color="grey",
                        xytext=(3, 3), textcoords="offset points")
        if m in ("verified",) or m.endswith("_verified"):
            ax.set_ylim(-0.03, 1.03)
    n = table["image"].nunique()
    fig.suptitle(title or f"{', '.join(families)}: template drift on {table['metric'].iloc[0]} backbone "
                 f"({n} images, mean and {ci:g}% CI)", fontsize=10)
    fig.tight_layout()
    return fig
