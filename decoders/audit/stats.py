"""Rates and means with 95% intervals over source faces, broken down by target and by face attributes.

Each source face gives one output per target, so outputs of one face are dependent: every
interval resamples source faces (a cluster bootstrap, :func:`probes.stats.cluster_bootstrap_mean`),
for rates and means alike. :func:`summarise` turns a tidy per-output table into one long table:
metric x target x breakdown level, with pooled rows over all targets where asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from probes.stats import cluster_bootstrap_mean, wilson_interval

SEX_LABELS = {0: "male", 1: "female"}
RACE_LABELS = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
BREAKDOWNS = ("all", "sex", "race", "source_group", "age_gap")
ALL_TARGETS = "all targets"  # the target label of rows pooled over every target


@dataclass(frozen=True)
class Metric:
    """One summarised column: ``kind`` is ``"rate"`` (0/1 values, with a count of successes) or ``"mean"``."""

    name: str
    column: str
    kind: str
    description: str = ""


def level_labels(frame: pd.DataFrame, groups_labels: Sequence[str]) -> dict[str, pd.Series]:
    """Readable level of each breakdown for every row of a per-output/per-face frame."""
    out = {"all": pd.Series("all", index=frame.index)}
    if "sex" in frame:
        out["sex"] = frame["sex"].map(lambda v: SEX_LABELS.get(int(v), "unknown"))
    if "race" in frame:
        out["race"] = frame["race"].map(lambda v: RACE_LABELS.get(int(v), "unknown"))
    if "source_group" in frame:
        out["source_group"] = frame["source_group"].map(
            lambda g: groups_labels[int(g)] if 0 <= int(g) < len(groups_labels) else "none")
    if "age_gap" in frame:
        out["age_gap"] = frame["age_gap"].map(lambda d: f"{int(d):+d}")
    return out


def interval_unit(n_boot: int) -> str:
    """What the intervals resample, as the tables and records say it."""
    return f"source faces, cluster bootstrap, {n_boot} resamples"


def source_interval(values, sources, kind: str, n_boot: int, rng: np.random.Generator) -> dict:
    """value, ci_low, ci_high, n (outputs), n_sources, successes (rates) and the interval's unit.

    A percentile bootstrap over source faces. A rate whose outputs all succeed (or all fail)
    gives every replicate the same value, an interval of zero width that claims certainty; it
    gets a Wilson interval over the source faces instead (each face counted once: the fewest
    independent observations the outputs can stand for), and says so.
    """
    value, low, high, n, n_sources = cluster_bootstrap_mean(values, sources, n_boot, rng=rng)
    unit = interval_unit(n_boot)
    successes = None
    if kind == "rate":
        v = np.asarray(values, np.float64)
        successes = int(np.nansum(v))
        if n and successes in (0, n):
            low, high = wilson_interval(n_sources if successes else 0, n_sources)
            unit = f"source faces, Wilson over {n_sources} (all outputs {'succeed' if successes else 'fail'})"
    return {"n": n, "n_sources": n_sources, "value": value, "ci_low": low, "ci_high": high,
            "successes": successes, "interval": unit}


def summarise(frame: pd.DataFrame, metrics: Sequence[Metric], groups_labels: Sequence[str],
              by: str | None = "target_label", breakdowns: Sequence[str] = BREAKDOWNS, n_boot: int = 1000,
              seed: int = 0, extra: Mapping[str, object] | None = None, source: str = "face",
              pooled: str | None = None) -> pd.DataFrame:
    """Long table: one row per metric x ``by`` value x breakdown level.

    Columns: metric, kind, ``by`` (when given), breakdown, level, n (outputs), n_sources, value,
    ci_low, ci_high, successes (rates only), interval (its unit), plus ``extra`` constants.
    Intervals resample the ``source`` column's values (:func:`source_interval`). ``pooled``: the
    ``by`` value of extra rows over every ``by`` value together (None: no such rows).
    """
    rng = np.random.default_rng(seed)
    levels = {name: series.to_numpy() for name, series in level_labels(frame, groups_labels).items()}
    columns = {m.column: frame[m.column].to_numpy(np.float64) for m in metrics if m.column in frame}
    sources = frame[source].to_numpy()
    keys = [None] if by is None else list(dict.fromkeys(frame[by])) + ([pooled] if pooled is not None else [])
    key_values = None if by is None else frame[by].to_numpy()
    rows = []
    for key in keys:
        in_key = np.ones(len(frame), bool) if by is None or key == pooled else key_values == key
        for metric in metrics:
            if metric.column not in columns:
                continue
            column = columns[metric.column]
            for breakdown in breakdowns:
                if breakdown not in levels:
                    continue
                lab = levels[breakdown]
                for level in _ordered_levels(lab[in_key]):
                    chosen = in_key & (lab == level)
                    row = {"metric": metric.name, "kind": metric.kind}
                    if by is not None:
                        row[by] = key
                    row.update({"breakdown": breakdown, "level": level})
                    row.update(source_interval(column[chosen], sources[chosen], metric.kind, n_boot, rng))
                    row.update(extra or {})
                    rows.append(row)
    return pd.DataFrame(rows)


def _ordered_levels(labels) -> list[str]:
    """Levels in a stable, readable order (age gaps numerically)."""
    unique = list(dict.fromkeys(labels))
    try:
        return sorted(unique, key=lambda s: int(s))
    except (TypeError, ValueError):
        return sorted(unique, key=str)


def format_ci(value, low, high, percent: bool = False, digits: int = 3) -> str:
    """``0.912 [0.88, 0.94]`` (or ``91.2% [88.0, 94.0]``); ``n/a`` for NaN."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if percent:
        text = f"{100 * value:.1f}%"
        if low is not None and np.isfinite(low):
            text += f" [{100 * low:.1f}, {100 * high:.1f}]"
        return text
    text = f"{value:.{digits}f}"
    if low is not None and np.isfinite(low):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text
