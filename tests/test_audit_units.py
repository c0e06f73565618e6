"""The audit's numbers on synthetic tables (no face model): intervals over source faces."""

from __future__ import annotations

import numpy as np
import pandas as pd

from decoders.aging import IPCGAN_GROUPS
from decoders.audit.stats import ALL_TARGETS, Metric, interval_unit, summarise
from probes.stats import wilson_interval

LABELS = IPCGAN_GROUPS.labels


def outputs_frame(outcome: np.ndarray) -> pd.DataFrame:
    """A per-output table: faces x targets, ``outcome[face, target]`` as a 0/1 column."""
    faces, targets = outcome.shape
    return pd.DataFrame({"face": np.repeat(np.arange(faces), targets), "target": np.tile(np.arange(targets), faces),
                         "target_label": [LABELS[t] for t in np.tile(np.arange(targets), faces)],
                         "ok": outcome.reshape(-1).astype(float)})


def pooled_width(outcome: np.ndarray) -> tuple[float, dict]:
    table = summarise(outputs_frame(outcome), [Metric("ok", "ok", "rate")], LABELS, breakdowns=("all",),
                      n_boot=2000, seed=0, pooled=ALL_TARGETS)
    row = table[table["target_label"] == ALL_TARGETS].iloc[0].to_dict()
    return row["ci_high"] - row["ci_low"], row


def test_pooled_rates_resample_source_faces_not_outputs():
    rng = np.random.default_rng(0)
    # 60 faces x 3 targets; a face's three outputs share one outcome: 60 observations, not 180.
    shared = np.repeat(rng.random((60, 1)) < 0.5, 3, axis=1)
    width, row = pooled_width(shared)
    k = int(shared.sum())
    wlo, whi = wilson_interval(k, shared.size)
    assert (row["n"], row["n_sources"], row["successes"]) == (180, 60, k)
    assert width > 1.4 * (whi - wlo)  # sqrt(3) wider in theory than a per-output Wilson interval
    assert row["interval"] == interval_unit(2000) == "source faces, cluster bootstrap, 2000 resamples"
    # Independent outcomes: the faces' interval is about the per-output one.
    independent = rng.random((60, 3)) < 0.5
    width, _ = pooled_width(independent)
    wlo, whi = wilson_interval(int(independent.sum()), independent.size)
    assert 0.75 < width / (whi - wlo) < 1.25


def test_rates_at_zero_or_one_keep_an_interval():
    table = summarise(outputs_frame(np.ones((40, 2))), [Metric("ok", "ok", "rate")], LABELS, breakdowns=("all",),
                      n_boot=200, pooled=ALL_TARGETS)
    low, high = wilson_interval(40, 40)
    assert (table["value"] == 1.0).all() and np.allclose(table["ci_low"], low) and (table["ci_high"] == 1.0).all()
    assert table["interval"].str.startswith("source faces, Wilson over 40").all()
    # Means keep the bootstrap, and one source gives no interval at all.
    one = summarise(outputs_frame(np.array([[1.0, 0.0]])), [Metric("ok", "ok", "mean")], LABELS, breakdowns=("all",),
                    n_boot=200, pooled=ALL_TARGETS)
    pooled = one[one["target_label"] == ALL_TARGETS].iloc[0]
    assert pooled["value"] == 0.5 and np.isnan(pooled["ci_low"]) and pooled["n_sources"] == 1


def test_summary_without_pooling_has_no_pooled_rows():
    table = summarise(outputs_frame(np.zeros((5, 2))), [Metric("ok", "ok", "rate")], LABELS, breakdowns=("all",),
                      n_boot=50)
    assert ALL_TARGETS not in set(table["target_label"]) and len(table) == 2
