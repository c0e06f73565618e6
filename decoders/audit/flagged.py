"""The outputs the audit flags, each with its reason and score: identity lost, wrong target group, sex flip.

- identity lost: the output's verification score against its own input is under a face model's
  threshold at the headline FMR (one reason per face model);
- wrong target group: the judge estimates the output outside its target group (targets the judge
  can judge only: elsewhere its readings are not trusted enough to call an output wrong);
- sex flip: the judge's estimated sex of the output differs from that of its input.

:func:`flagged_outputs` lists every flagged output and reason; :func:`shown_flagged` picks the
worst of each reason for the report, with their images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ..aging.groups import AgeGroups
from .measure import AgedFaces

REASONS = ("identity lost", "wrong target group", "sex flip")


def flagged_outputs(per_output: pd.DataFrame, thresholds: Sequence[dict], judged: Mapping[int, bool],
                    groups: AgeGroups, fmr: float) -> pd.DataFrame:
    """One row per flagged output and reason: face, file, target, reason, backbone, score, threshold, detail,
    severity (how far past the line: larger is worse, comparable within a reason and face model)."""
    parts = []
    base = ["face", "file", "target", "target_label"]
    for row in thresholds:
        if row["fmr"] != fmr:
            continue
        role, threshold = row["role"], row["threshold"]
        lost = per_output[per_output[f"{role}_accepted_fmr_{fmr:g}"] == 0]
        score = lost[f"{role}_score"]
        parts.append(lost[base].assign(
            reason=REASONS[0], backbone=row["backbone"], score=score, threshold=threshold,
            severity=threshold - score,
            detail=[f"identity lost ({row['backbone']}): score {s:.3f} < threshold {threshold:.3f} at FMR {fmr:g}"
                    for s in score]))
    names = ["<" + str(groups.lower[0])] + list(groups.labels)
    wrong = per_output[(per_output["est_group_out"] != per_output["target"])
                       & per_output["target"].map(lambda t: bool(judged.get(int(t), False)))]
    parts.append(wrong[base].assign(
        reason=REASONS[1], backbone=None, score=wrong["est_age_out"], threshold=None,
        severity=wrong["abs_error_range"],
        detail=[f"wrong target group: the judge reads {a:.0f} y ({names[int(g) + 1]}), target {lab}"
                for a, g, lab in zip(wrong["est_age_out"], wrong["est_group_out"], wrong["target_label"])]))
    flips = per_output[per_output["sex_flip"] == 1]
    parts.append(flips[base].assign(
        reason=REASONS[2], backbone=None, score=flips["p_male_out"], threshold=0.5,
        severity=(flips["p_male_out"] - flips["p_male_in"]).abs(),
        detail=[f"sex flip: the judge's P(male) {a:.2f} -> {b:.2f}"
                for a, b in zip(flips["p_male_in"], flips["p_male_out"])]))
    columns = base + ["reason", "backbone", "score", "threshold", "severity", "detail"]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def flagged_counts(flagged: pd.DataFrame, per_output: pd.DataFrame) -> dict:
    """Per reason (and face model): flagged outputs, of how many, and how many source faces they come from."""
    out = {}
    for (reason, backbone), part in flagged.groupby(["reason", flagged["backbone"].fillna("")], sort=False):
        key = f"{reason} ({backbone})" if backbone else reason
        out[key] = {"outputs": len(part), "of_outputs": len(per_output), "source_faces": int(part["face"].nunique())}
    return out


def shown_flagged(flagged: pd.DataFrame, aged: AgedFaces, size: int) -> list[dict]:
    """Up to ``size`` flagged outputs, the worst of each reason in turn, each once with all its reasons and
    its input and output images."""
    if size <= 0 or flagged.empty:
        return []
    ranked = {key: part.sort_values("severity", ascending=False, kind="stable")[["face", "target"]].to_numpy()
              for key, part in flagged.groupby(["reason", flagged["backbone"].fillna("")], sort=False)}
    chosen: list[tuple[int, int]] = []
    depth = 0
    while len(chosen) < size and any(depth < len(r) for r in ranked.values()):
        for rows in ranked.values():  # round robin: every reason shows its worst cases first
            pick = tuple(int(v) for v in rows[depth]) if depth < len(rows) else None
            if pick is not None and len(chosen) < size and pick not in chosen:
                chosen.append(pick)
        depth += 1
    shown = []
    for face, target in chosen:
        part = flagged[(flagged["face"] == face) & (flagged["target"] == target)]
        shown.append({"face": face, "target": target, "file": part["file"].iloc[0],
                      "target_label": part["target_label"].iloc[0], "reasons": part["detail"].tolist(),
                      "input": aged.faces.images[face], "output": aged.outputs[target][face]})
    return shown
