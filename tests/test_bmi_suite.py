"""The target checks of benchmarks/bmi_suite.py on hand-made summaries (benchmark-mi itself is not needed)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
bmi_suite = pytest.importorskip("bmi_suite")


def _row(mean, truth, seconds, over=None):
    return {"mean": mean, "abs_error": abs(mean - truth), "seconds": seconds,
            "max_over_truth": (mean - truth) if over is None else over, "estimates": [mean]}


def _table(n_tasks=40, fp_error=0.05, overshoot_task=None):
    table = {}
    for i in range(n_tasks):
        truth = 1.0
        row = {"truth": truth, "family": "x", "tuned": False,
               "fp-mine": _row(truth - fp_error, truth, 1.0),
               "bmi-mine": _row(truth - 0.2, truth, 4.0), "bmi-nwj": _row(truth - 0.3, truth, 4.0)}
        if f"t{i}" == overshoot_task:
            row["fp-mine"] = _row(truth + 0.01, truth, 1.0, over=0.2)
        table[f"t{i}"] = row
    return table


def test_targets_met_when_accurate_fast_and_never_over():
    verdict = bmi_suite.targets(_table(), "fp-mine")
    assert verdict["met"] == {"no_overshoot": True, "accurate_on_32": True, "beats_bmi_on_30": True,
                              "time_ratio": True}
    assert verdict["time_ratio_geomean"] == pytest.approx(0.25)


def test_one_seed_above_truth_fails_the_overshoot_target_and_is_named():
    verdict = bmi_suite.targets(_table(overshoot_task="t3"), "fp-mine")
    assert not verdict["met"]["no_overshoot"] and verdict["overshoots"] == [{"task": "t3", "by": 0.2}]


def test_errors_beyond_tolerance_fail_accuracy_and_an_incomplete_table_meets_nothing():
    verdict = bmi_suite.targets(_table(fp_error=0.15), "fp-mine")  # worse than 0.1 and 10%, still beats bmi
    assert verdict["accurate"] == 0 and not verdict["met"]["accurate_on_32"]
    assert verdict["beats_bmi_best_neural"] == 40
    partial = bmi_suite.targets(_table(n_tasks=35), "fp-mine")
    assert not partial["met"]["accurate_on_32"] and not partial["met"]["beats_bmi_on_30"]


def test_families_name_the_outer_transform_first():
    assert bmi_suite.family("asinh-student-identity-2-2-1") == "asinh of Student-t"
    assert bmi_suite.family("spiral-normal_cdf-multinormal-sparse-3-3-2-2.0") == "spiral"
    assert bmi_suite.family("1v1-bimodal-0.75") == "bimodal"
    assert bmi_suite.family("multinormal-dense-5-5-0.5") == "dense Gaussian"
