"""The GAN's training age reader beside the independent judge: does the generator age faces, or fool its loss?

A generator trained against one age network can learn whatever moves that network's reading
rather than what ages a face. When the audited model names that network (its
``training_age_reader``), every output is read by it as well as by the audit's judge (the age
labeller), and per target group the two mean ages stand side by side with their gap. The generator
is flagged when the judge sees less than half the age range the training reader sees (oldest
minus youngest target), or when the two differ by more than 10 years at some target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from probes.stats import cluster_bootstrap_mean

from .config import AuditConfig
from .measure import FaceReaders
from .stats import interval_unit

SPAN_FRACTION = 0.5  # flag when the judge's span is under this fraction of the training reader's
GAP_YEARS = 10.0  # flag when the two mean ages of one target differ by more (years)


def reader_table(per_output: pd.DataFrame, per_face: pd.DataFrame, labels: Sequence[str], targets: Sequence[int],
                 config: AuditConfig) -> pd.DataFrame:
    """Per target: the judge's and the training reader's mean age of the outputs and their gap (reader - judge),
    with 95% intervals over source faces, beside both readings of the real faces of that group."""
    rng = np.random.default_rng(config.seed + 5)
    rows = []
    for t in targets:
        part = per_output[per_output["target"] == t]
        row = {"target": t, "target_label": labels[t]}
        for name, values in (("judge_age", part["est_age_out"]), ("reader_age", part["training_reader_age_out"]),
                             ("gap", part["training_reader_age_out"] - part["est_age_out"])):
            mean, low, high, n, n_sources = cluster_bootstrap_mean(values, part["face"], config.n_boot, rng=rng)
            row.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
        row.update({"n_outputs": n, "n_sources": n_sources})
        real = per_face[per_face["source_group"] == t]
        row.update({"real_n": len(real), "real_judge_age": _mean(real["est_age"]),
                    "real_reader_age": _mean(real["training_reader_age"]),
                    "real_gap": _mean(real["training_reader_age"] - real["est_age"]),
                    "interval": interval_unit(config.n_boot)})
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def reader_flags(table: pd.DataFrame, readers: FaceReaders) -> dict:
    """Whether the generator fools its own age loss rather than aging the face, with the numbers behind it.

    Spans run from the youngest audited target to the oldest (NaN with one target); the span test
    applies only where the training reader sees the outputs grow older. A reader that is the judge's
    own network gives no independent judgement: nothing is flagged, and the record says so.
    """
    ordered = table.sort_values("target")
    judge_span = reader_span = float("nan")
    if len(ordered) >= 2:
        judge_span = float(ordered["judge_age"].iloc[-1] - ordered["judge_age"].iloc[0])
        reader_span = float(ordered["reader_age"].iloc[-1] - ordered["reader_age"].iloc[0])
    wide = ordered[ordered["gap"].abs() > GAP_YEARS]
    same = readers.training_is_judge
    reasons = []
    if not same and reader_span > 0 and judge_span < SPAN_FRACTION * reader_span:
        reasons.append(f"the judge's age span over the targets ({judge_span:.1f} y) is under "
                       f"{SPAN_FRACTION:g} x the training reader's ({reader_span:.1f} y)")
    if not same:
        reasons += [f"target {r.target_label}: the training reader reads {r.reader_age:.1f} y, the judge "
                    f"{r.judge_age:.1f} y (gap {r.gap:+.1f} y > {GAP_YEARS:g}; real faces of that group: "
                    f"{r.real_gap:+.1f} y)" for r in wide.itertuples()]
    return {"training_reader": readers.training_age.name, "judge": readers.age.name, "same_network": bool(same),
            "judge_span": judge_span, "reader_span": reader_span,
            "span_ratio": judge_span / reader_span if reader_span > 0 else float("nan"),
            "max_abs_gap": float(ordered["gap"].abs().max()) if len(ordered) else float("nan"),
            "span_fraction": SPAN_FRACTION, "gap_years": GAP_YEARS,
            "fools_own_age_loss": bool(reasons), "reasons": reasons}
