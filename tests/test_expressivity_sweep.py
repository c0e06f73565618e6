"""The per-layer sweep, its figure and the `python -m probes.expressivity` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probes.errors import UnknownNameError
from probes.expressivity import EstimationError
from probes.expressivity.__main__ import main
from probes.expressivity.estimators import make_estimator
from probes.expressivity.figures import plot_expressivity
from probes.expressivity.labels import AttributeLabels
from probes.expressivity.sweep import expressivity_sweep

FAST = {"probe": {"n_bootstrap": 50, "n_permutations": 20}}


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(10, 70, n)
    noise = rng.normal(size=(n, 8))
    features = {
        "early": noise,  # carries nothing
        "late": np.column_stack([age / 20 + 0.3 * rng.normal(size=n), noise[:, 1:]]),
    }
    return features, {"age": AttributeLabels(age, "continuous", "dataset")}


def test_sweep_table_orders_layers_and_finds_signal():
    features, labels = _synthetic()
    table = expressivity_sweep(features, labels, estimators=["probe"], seeds=[0, 1], estimator_params=FAST,
                               progress=False)
    assert list(table.columns[:4]) == ["layer", "depth", "relative_depth", "attribute"]
    assert len(table) == 4 and set(table["seed"]) == {0, 1}
    late = table[table.layer == "late"]
    early = table[table.layer == "early"]
    # truth I(age; late) = 1.064 nats (uniform age plus Gaussian noise); the probe's normal-score bound
    # stays below it
    assert (late["estimate"] > 0.85).all() and (late["estimate"] < 1.064).all() and (late["p_value"] < 0.05).all()
    assert (early["estimate"] < 0.1).all()
    assert (table.loc[table.layer == "late", "ci_low"] > 0.5).all()  # the intervals exclude no-information
    assert not table[["estimate", "ci_low", "ci_high", "p_value"]].isna().any().any()


def test_sweep_drops_missing_labels_and_names_failures():
    features, labels = _synthetic(200)
    age = labels["age"].values.copy()
    age[:20] = np.nan
    table = expressivity_sweep(features, {"age": AttributeLabels(age, "continuous", "x")}, estimator_params=FAST,
                               progress=False)
    assert (table["n"] == 180).all()
    constant = {"sex": AttributeLabels(np.ones(200), "discrete", "dataset")}
    with pytest.raises(EstimationError, match="layer 'early', attribute 'sex'"):
        expressivity_sweep(features, constant, estimator_params=FAST, progress=False)
    with pytest.raises(UnknownNameError, match="captured"):
        expressivity_sweep(features, labels, layer_order=["nope"], progress=False)
    with pytest.raises(UnknownNameError, match="choose from"):
        make_estimator("ksg")


def test_plot_returns_a_figure():
    features, labels = _synthetic(200)
    table = expressivity_sweep(features, labels, estimator_params=FAST, progress=False)
    fig = plot_expressivity(table, title="t")
    assert fig.axes and fig.axes[0].get_title() == "estimator: probe"
    assert len(fig.axes[0].lines) == 1


def test_command_writes_three_files_and_refuses_overwrite(tmp_path, data_root, faceapi_weights, capsys):
    out = tmp_path / "run"
    argv = ["--dataset", "utkface", "--data-root", str(data_root), "--max-images", "80", "--attributes", "age", "sex",
            "--layers", "conv32_down", "conv128_down", "fc", "--estimator", "probe", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["layer"]) == {"conv32_down", "conv128_down", "fc"}
    assert set(table["label_source"]) == {"dataset"}  # UTKFace has true age and sex
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["backbone"] == "dlib-resnet29" and summary["n_images"] == 80
    assert {"capture_s", "estimation_s"} <= set(summary["timings"])
    assert (out / "expressivity.png").stat().st_size > 10_000
    before = (out / "results.csv").read_bytes()
    assert main(argv) == 2  # exists: refused, nothing lost
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before
    assert main(argv[:-3] + ["--layers", "conv999", "--out", str(tmp_path / "x")]) == 2
    assert "valid layers" in capsys.readouterr().err


def test_worker_processes_give_the_same_table():
    features, labels = _synthetic(n=300)
    sex = (features["late"][:, 0] + np.random.default_rng(3).normal(size=300) > 2).astype(int)
    labels = {**labels, "sex": AttributeLabels(sex, "discrete", "dataset")}
    serial = expressivity_sweep(features, labels, estimator_params=FAST, progress=False)
    parallel = expressivity_sweep(features, labels, estimator_params=FAST, n_jobs=2, progress=False)
    columns = [c for c in serial.columns if c != "wall_time_s"]
    pd.testing.assert_frame_equal(serial[columns], parallel[columns])
    with pytest.raises(ValueError, match="n_jobs"):
        expressivity_sweep(features, labels, n_jobs=0, progress=False)


def test_pooled_over_seeds_spans_the_split_to_split_spread():
    from probes.expressivity.sweep import pool_over_seeds

    features, labels = _synthetic()
    table = expressivity_sweep(features, labels, estimators=["probe"], seeds=[0, 1, 2], estimator_params=FAST,
                               progress=False)
    pooled = pool_over_seeds(table)
    assert len(pooled) == 2 and (pooled["n_seeds"] == 3).all()
    for _, row in pooled.iterrows():
        per_seed = table[(table.layer == row.layer) & (table.attribute == row.attribute)]
        assert row.estimate == pytest.approx(per_seed["estimate"].mean())
        assert row.seed_sd == pytest.approx(per_seed["estimate"].std())  # the splits do differ
        # the pooled interval spans the split-to-split range of the estimates
        assert row.ci_low <= per_seed["estimate"].min() and per_seed["estimate"].max() <= row.ci_high
    assert (pooled.loc[pooled.layer == "late", "seed_sd"] > 0).all()


def test_corrected_t_pooling_matches_the_formula_and_names_its_rule():
    from scipy.stats import t as student_t

    from probes.expressivity.sweep import pool_over_seeds

    features, labels = _synthetic()
    table = expressivity_sweep(features, labels, estimators=["probe"], seeds=[0, 1, 2], estimator_params=FAST,
                               progress=False)
    pooled = pool_over_seeds(table, interval="corrected-t")
    assert (pooled["interval"] == "corrected-t").all()
    row = pooled.iloc[0]
    e = table[(table.layer == row.layer) & (table.attribute == row.attribute)]["estimate"].to_numpy()
    n_eval = int(table["n_eval"].iloc[0])
    half = student_t.ppf(0.975, 2) * np.sqrt((1 / 3 + n_eval / (int(table["n"].iloc[0]) - n_eval)) * e.var(ddof=1))
    assert row.ci_high == pytest.approx(e.mean() + half)
    assert row.ci_low == pytest.approx(max(e.mean() - half, 0.0))
    one = pool_over_seeds(table[table.seed == 0], interval="corrected-t")
    assert (one["interval"] == "bootstrap of one seed").all()
    with pytest.raises(ValueError, match="interval='wide'"):
        pool_over_seeds(table, interval="wide")


def test_repeated_split_interval_refuses_a_single_estimate():
    from probes.stats import repeated_split_interval

    with pytest.raises(ValueError, match="at least 2"):
        repeated_split_interval([0.3], 700, 300)
