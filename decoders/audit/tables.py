"""The audit's tidy tables: real faces, outputs, the age estimator on real faces, the summary, confusions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from probes.backbones import FaceBackbone
from probes.stats import bootstrap_mean, rate
from probes.verification import pair_scores

from ..aging.data import AgingFaces
from ..aging.groups import AgeGroups
from .config import AuditConfig
from .measure import AgedFaces, Measured
from .stats import ALL_TARGETS, RACE_LABELS, SEX_LABELS, Metric, summarise


def per_face_table(faces: AgingFaces, real: Measured) -> pd.DataFrame:
    """One row per real face: its labels and what the estimators read from it."""
    return pd.DataFrame({
        "face": np.arange(len(faces)), "file": [Path(p).name for p in faces.paths],
        "age": faces.ages, "sex": faces.sex, "race": faces.race, "source_group": faces.group,
        "source_label": [faces.groups.labels[g] for g in faces.group],
        "sex_label": [SEX_LABELS.get(int(s), "unknown") for s in faces.sex],
        "race_label": [RACE_LABELS.get(int(r), "unknown") for r in faces.race],
        "est_age": real.age, "est_age_error": real.age - faces.ages,
        "abs_est_age_error": np.abs(real.age - faces.ages),
        "est_group": faces.groups.of(real.age), "est_p_male": real.p_male, "est_sex": real.sex,
        "est_sex_correct": np.where(faces.sex >= 0, (real.sex == faces.sex).astype(float), np.nan),
        "yaw": real.yaw,
        **({"training_reader_age": real.training_age} if real.training_age is not None else {}),
    })


def per_output_table(aged: AgedFaces, nets: dict[str, FaceBackbone], thresholds: list[dict]) -> pd.DataFrame:
    """One row per face and target: achieved age, attribute drift and identity scores against the input."""
    faces, real = aged.faces, aged.real
    groups = faces.groups
    mids = groups.midpoints()
    lower = np.asarray(groups.lower, np.float64)
    upper = np.append(lower[1:], np.inf)
    parts = []
    for t in aged.targets:
        m = aged.measured[t]
        est_group = groups.of(m.age)
        frame = {
            "face": np.arange(len(faces)), "file": [Path(p).name for p in faces.paths],
            "target": t, "target_label": groups.labels[t], "source_group": faces.group,
            "age_gap": t - faces.group, "sex": faces.sex, "race": faces.race, "age": faces.ages,
            "est_age_in": real.age, "est_age_out": m.age,
            "achieved_shift": m.age - real.age, "target_shift": mids[t] - real.age,
            "est_group_out": est_group, "age_group_hit": (est_group == t).astype(float),
            "abs_error_midpoint": np.abs(m.age - mids[t]),
            "abs_error_range": np.maximum(0, np.maximum(lower[t] - m.age, m.age - (upper[t] - 1e-9))),
            "p_male_in": real.p_male, "p_male_out": m.p_male, "p_male_shift": m.p_male - real.p_male,
            "sex_in": real.sex, "sex_out": m.sex, "sex_flip": (m.sex != real.sex).astype(float),
            "sex_differs_from_label": np.where(faces.sex >= 0, (m.sex != faces.sex).astype(float), np.nan),
            "yaw_in": real.yaw, "yaw_out": m.yaw, "yaw_change": m.yaw - real.yaw,
            "abs_yaw_change": np.abs(m.yaw - real.yaw),
        }
        if m.training_age is not None:
            frame.update({"training_reader_age_in": real.training_age, "training_reader_age_out": m.training_age})
        for role, net in nets.items():
            frame.update(identity_columns(role, net, real.embeddings[role], m.embeddings[role], thresholds))
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)


def identity_columns(role: str, net: FaceBackbone, inputs: np.ndarray, outputs: np.ndarray,
                     thresholds: list[dict]) -> dict[str, np.ndarray]:
    """Cosine and verification score of each input/output template pair, and acceptance at each FMR."""
    score = pair_scores(inputs, outputs, net.spec.verification_metric)
    columns = {f"{role}_cosine": pair_scores(inputs, outputs, "cosine"), f"{role}_score": score}
    for row in thresholds:
        if row["role"] == role:
            columns[f"{role}_accepted_fmr_{row['fmr']:g}"] = (score >= row["threshold"]).astype(float)
    return columns


def estimator_on_real_faces(per_face: pd.DataFrame, groups: AgeGroups, config: AuditConfig
                            ) -> tuple[pd.DataFrame, dict[int, bool]]:
    """The age estimator on real faces of each group: can it judge outputs aimed at that group?"""
    rows, judged = [], {}
    rng = np.random.default_rng(config.seed)
    for g, label in enumerate(groups.labels):
        part = per_face[per_face["source_group"] == g]
        mae, mae_lo, mae_hi, _ = bootstrap_mean(part["abs_est_age_error"], config.n_boot, rng=rng)
        acc, acc_lo, acc_hi, _, _ = rate((part["est_group"] == g).astype(float))
        bias = float(part["est_age_error"].mean()) if len(part) else float("nan")
        if len(part) < config.min_real_faces:
            ok, reason = False, f"only {len(part)} real face(s) of this group (< {config.min_real_faces})"
        elif not mae <= config.max_estimator_mae:
            ok, reason = False, f"estimator MAE {mae:.1f} y on real faces > {config.max_estimator_mae:g} y"
        else:
            ok, reason = True, ""
        judged[g] = ok
        rows.append({"group": g, "group_label": label, "n": len(part), "mae": mae, "mae_ci_low": mae_lo,
                     "mae_ci_high": mae_hi, "bias": bias, "group_accuracy": acc, "group_accuracy_ci_low": acc_lo,
                     "group_accuracy_ci_high": acc_hi, "judged": ok, "reason": reason})
    return pd.DataFrame(rows), judged


AGE_METRICS = (Metric("est_age_out", "est_age_out", "mean"), Metric("achieved_shift", "achieved_shift", "mean"),
               Metric("target_shift", "target_shift", "mean"), Metric("age_group_hit", "age_group_hit", "rate"),
               Metric("abs_error_midpoint", "abs_error_midpoint", "mean"),
               Metric("abs_error_range", "abs_error_range", "mean"))
ATTRIBUTE_METRICS = (Metric("sex_flip", "sex_flip", "rate"),
                     Metric("sex_differs_from_label", "sex_differs_from_label", "rate"),
                     Metric("p_male_shift", "p_male_shift", "mean"), Metric("yaw_change", "yaw_change", "mean"),
                     Metric("abs_yaw_change", "abs_yaw_change", "mean"))


def summary_table(per_output: pd.DataFrame, labels: Sequence[str], nets: dict[str, FaceBackbone],
                  judged: dict[int, bool], config: AuditConfig) -> pd.DataFrame:
    """Every metric by target and breakdown level, with 95% intervals over source faces (identity, age,
    attributes); identity and attributes also pooled over all targets (where one face gives several outputs)."""
    parts = []
    for role, net in nets.items():
        metrics = [Metric(f"verification_rate_fmr_{f:g}", f"{role}_accepted_fmr_{f:g}", "rate",
                          f"outputs verified as their input at FMR {f:g}") for f in config.fmrs]
        metrics += [Metric("identity_cosine", f"{role}_cosine", "mean", "cosine of input and output templates"),
                    Metric("identity_score", f"{role}_score", "mean", "verification score (cosine or -L2)")]
        parts.append(summarise(per_output, metrics, labels, n_boot=config.n_boot, seed=config.seed,
                               extra={"section": "identity", "role": role, "backbone": net.name},
                               pooled=ALL_TARGETS))
    table = summarise(per_output, AGE_METRICS, labels, n_boot=config.n_boot, seed=config.seed,
                      extra={"section": "age", "role": None, "backbone": None})
    table["judged"] = table["target_label"].map(lambda lab: judged[labels.index(lab)])
    parts.append(table)
    parts.append(summarise(per_output, ATTRIBUTE_METRICS, labels, n_boot=config.n_boot, seed=config.seed,
                           extra={"section": "attributes", "role": None, "backbone": None}, pooled=ALL_TARGETS))
    out = pd.concat(parts, ignore_index=True)
    if "judged" not in out:
        out["judged"] = None
    return out


def confusion_tables(per_output: pd.DataFrame, per_face: pd.DataFrame, groups: AgeGroups
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts of estimated groups: by target for the outputs, by true group for the real faces."""
    columns = [f"<{groups.lower[0]}"] + list(groups.labels)
    used = sorted(set(per_output["target"]))
    row_of = {t: i for i, t in enumerate(used)}
    confusion = count_table([row_of[t] for t in per_output["target"]], per_output["est_group_out"],
                            [groups.labels[t] for t in used], "target", columns)
    confusion_real = count_table(per_face["source_group"].tolist(), per_face["est_group"],
                                 list(groups.labels), "true_group", columns)
    return confusion, confusion_real


def count_table(rows: Sequence[int], estimated, row_labels: Sequence[str], name: str,
                columns: Sequence[str]) -> pd.DataFrame:
    """Counts of (row, estimated group) pairs; estimated group -1 (younger than every group) is the first column."""
    counts = np.zeros((len(row_labels), len(columns)), np.int64)
    for r, c in zip(rows, estimated):
        counts[r, int(c) + 1] += 1
    frame = pd.DataFrame(counts, columns=columns)
    frame.insert(0, name, row_labels)
    return frame
