"""The audit's numbers on synthetic tables (no face model): intervals over source faces, the training age reader
against the judge, realism, flagged outputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from decoders.aging import IPCGAN_GROUPS
from decoders.audit import AuditConfig, AuditError
from decoders.audit.age_readers import reader_flags
from decoders.audit.flagged import flagged_counts, flagged_outputs, shown_flagged
from decoders.audit.measure import FaceReaders, training_reader
from decoders.audit.realism import realism_rows, split_distances
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


def test_new_settings_are_checked_by_name():
    assert AuditConfig(flagged_size="3", frechet_splits=2.0).checked().flagged_size == 3
    with pytest.raises(AuditError, match="flagged_size must be >= 0, got -1"):
        AuditConfig(flagged_size=-1).checked()
    with pytest.raises(AuditError, match="frechet_splits must be positive, got 0"):
        AuditConfig(frechet_splits=0).checked()


def test_summary_without_pooling_has_no_pooled_rows():
    table = summarise(outputs_frame(np.zeros((5, 2))), [Metric("ok", "ok", "rate")], LABELS, breakdowns=("all",),
                      n_boot=50)
    assert ALL_TARGETS not in set(table["target_label"]) and len(table) == 2


# --------------------------------------------------------------------------- training age reader vs judge


class NamedReader:
    """A labeller stand-in that only has a name and weights (what the readers' bookkeeping looks at)."""

    def __init__(self, name: str, weights_id: str = "w1"):
        self.name, self.weights_id = name, weights_id

    def predict(self, images, layout="chip", batch_size=64):
        raise AssertionError("not read in these tests")


def reader_verdict(judge, reader, same: bool = False) -> dict:
    judge, reader = np.asarray(judge, float), np.asarray(reader, float)
    table = pd.DataFrame({"target": np.arange(len(judge)), "target_label": LABELS[:len(judge)], "judge_age": judge,
                          "reader_age": reader, "gap": reader - judge, "real_gap": 1.5})
    readers = FaceReaders({}, NamedReader("judge-net"), None, NamedReader("reader-net"), same)
    return reader_flags(table, readers)


def test_fools_its_own_age_loss_by_span_or_gap():
    aging = reader_verdict([15, 25, 35, 45, 60], [17, 27, 38, 47, 63])
    assert not aging["fools_own_age_loss"] and aging["span_ratio"] == pytest.approx(45 / 46)
    # The judge sees 8 years of aging where the reader sees 21 (< half), every gap within 10 years.
    span = reader_verdict([20, 22, 24, 26, 28], [15, 22, 27, 30, 36])
    assert span["fools_own_age_loss"] and len(span["reasons"]) == 1 and "span" in span["reasons"][0]
    assert (span["judge_span"], span["reader_span"]) == (8.0, 21.0)
    # Spans agree, but one target is read 13 years apart.
    gap = reader_verdict([15, 25, 35, 45, 60], [15, 25, 48, 45, 60])
    assert gap["fools_own_age_loss"] and len(gap["reasons"]) == 1 and gap["reasons"][0].startswith("target 31-40")
    assert "gap +13.0 y" in gap["reasons"][0] and gap["max_abs_gap"] == 13.0
    # The judge's own network: no independent judgement, nothing flagged whatever the numbers.
    same = reader_verdict([20, 22, 24, 26, 28], [15, 22, 27, 30, 60], same=True)
    assert same["same_network"] and not same["fools_own_age_loss"] and same["reasons"] == []
    # One target: no span to compare.
    single = reader_verdict([30], [32])
    assert np.isnan(single["judge_span"]) and not single["fools_own_age_loss"]


def test_training_reader_comes_from_the_setting_or_the_model():
    judge = NamedReader("hse-agegender")

    class Model:
        training_age_reader = "hse-agegender"

    assert training_reader(AuditConfig(), object(), judge) == (None, False)
    assert training_reader(AuditConfig(), Model(), judge) == (judge, True)  # not loaded twice
    other = NamedReader("faceapi-agegender")
    assert training_reader(AuditConfig(training_age_reader=other), Model(), judge) == (other, False)
    twin = NamedReader("hse-agegender")
    assert training_reader(AuditConfig(training_age_reader=twin), object(), judge) == (twin, True)
    assert training_reader(AuditConfig(training_age_reader=NamedReader("hse-agegender", "w2")), object(),
                           judge)[1] is False
    with pytest.raises(AuditError, match="training_age_reader must be a labeller name or a labeller, got int"):
        training_reader(AuditConfig(training_age_reader=5), object(), judge)


# --------------------------------------------------------------------------- realism


def test_frechet_realism_beside_its_floor():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], [100, 20, 5])
    real = rng.normal(size=(125, 8))
    outputs = {0: rng.normal(size=(125, 8)), 1: rng.normal(size=(125, 8)) + 3.0, 2: rng.normal(size=(125, 8))}
    table = realism_rows({"toy": (real, outputs)}, groups, [0, 1, 2], LABELS, AuditConfig(frechet_splits=10))
    rows = table.set_index("target")
    # Outputs drawn like the real faces sit at the floor; shifted ones far above it.
    assert 0.6 < rows.loc[0, "ratio_to_floor"] < 1.6 and rows.loc[1, "ratio_to_floor"] > 5
    assert rows.loc[0, "frechet_low"] <= rows.loc[0, "frechet"] <= rows.loc[0, "frechet_high"]
    # 50 faces per side cover 8 dims twice over: no reduction; 10 per side do not: PCA to 5; 2 per side: nothing.
    assert (rows.loc[0, "faces_per_side"], rows.loc[0, "dim_used"]) == (50, 8)
    assert rows.loc[0, "reduction"].startswith("none")
    assert (rows.loc[1, "faces_per_side"], rows.loc[1, "dim_used"]) == (10, 5)
    assert rows.loc[1, "reduction"].startswith("PCA of each split's pooled features to 5 of 8 dims")
    assert rows.loc[2, "reduction"].startswith("not measured: 5 real face(s)") and np.isnan(rows.loc[2, "frechet"])
    assert (rows["real_faces_of_group"].tolist(), rows["outputs_of_target"].tolist()) == ([100, 20, 5], [125] * 3)


def test_split_keeps_reference_faces_out_of_the_outputs():
    # Outputs that are exact copies of their sources: drawing a reference face's own output would give FD 0
    # against itself; the split draws outputs of other faces, so the distance stays at the floor's level.
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 2))
    distances, floors, m, dim = split_distances(real, real.copy(), np.arange(40), 20, rng)
    assert (m, dim) == (20, 2) and (distances > 0).all()
    assert 0.5 < distances.mean() / floors.mean() < 2


# --------------------------------------------------------------------------- flagged outputs


def flagged_frame() -> pd.DataFrame:
    faces, targets = np.repeat(np.arange(4), 2), np.tile([0, 1], 4)
    return pd.DataFrame({
        "face": faces, "file": [f"f{f}.jpg" for f in faces], "target": targets,
        "target_label": [LABELS[t] for t in targets],
        "train_score": [0.9, 0.2, 0.4, 0.45, 0.9, 0.9, 0.9, 0.9],
        "train_accepted_fmr_0.05": [1, 0, 0, 0, 1, 1, 1, 1.0],
        "independent_score": [0.9] * 8, "independent_accepted_fmr_0.05": [1.0] * 8,
        "est_group_out": [0, 3, 2, 1, 0, 0, 1, 4], "est_age_out": [15, 45, 35, 25, 12, 14, 25, 70.0],
        "abs_error_range": [0, 20, 15, 0, 0, 0, 5, 40.0],
        "sex_flip": [0, 0, 0, 0, 1, 0, 0, 0.0], "p_male_in": [0.9] * 8,
        "p_male_out": [0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9]})


def test_flagged_outputs_name_reason_and_score():
    thresholds = [{"role": "train", "backbone": "net-a", "fmr": 0.05, "threshold": 0.5},
                  {"role": "independent", "backbone": "net-b", "fmr": 0.05, "threshold": 0.3}]
    frame = flagged_frame()
    flagged = flagged_outputs(frame, thresholds, {0: True, 1: False}, IPCGAN_GROUPS, 0.05)
    by = flagged.groupby("reason")["face"].apply(list).to_dict()
    # Identity lost three times (net-a), wrong group only at the judged target 0 (faces 1 and 3), one sex flip.
    assert by == {"identity lost": [0, 1, 1], "wrong target group": [1, 3], "sex flip": [2]}
    lost = flagged[flagged["reason"] == "identity lost"]
    assert lost["detail"].iloc[0] == "identity lost (net-a): score 0.200 < threshold 0.500 at FMR 0.05"
    np.testing.assert_allclose(lost["severity"], [0.3, 0.1, 0.05])
    wrong = flagged[flagged["reason"] == "wrong target group"]
    assert wrong["detail"].iloc[0] == "wrong target group: the judge reads 35 y (31-40), target 11-20"
    assert flagged[flagged["reason"] == "sex flip"]["detail"].iloc[0] == "sex flip: the judge's P(male) 0.90 -> 0.10"
    counts = flagged_counts(flagged, frame)
    assert counts["identity lost (net-a)"] == {"outputs": 3, "of_outputs": 8, "source_faces": 2}
    assert counts["wrong target group"]["source_faces"] == 2 and "identity lost (net-b)" not in counts
    # Shown: the worst of each reason in turn, each output once with all its reasons.
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    aged = SimpleNamespace(faces=SimpleNamespace(images=images), outputs={0: images + 1, 1: images + 2})
    shown = shown_flagged(flagged, aged, 3)
    assert [(s["face"], s["target"]) for s in shown] == [(0, 1), (1, 0), (2, 0)]
    assert len(shown[1]["reasons"]) == 2 and np.array_equal(shown[0]["output"], images[0] + 2)
    assert shown_flagged(flagged, aged, 0) == [] and len(shown_flagged(flagged, aged, 50)) == 5  # distinct outputs
    none = flagged_outputs(frame.assign(sex_flip=0.0, est_group_out=frame["target"]), thresholds[1:], {0: True},
                           IPCGAN_GROUPS, 0.05)
    assert none.empty and flagged_counts(none, frame) == {}
