"""Views of an :class:`~decoders.audit.AuditResult`: the headline and breakdown tables, and ``results.json``."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pandas as pd

from probes.outputs import json_ready, json_records

from .stats import ALL_TARGETS, format_ci


def compact_json(obj) -> str:
    """Indented JSON with lists of plain values kept on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def ci_cell(row, percent: bool) -> str:
    """A summary row as ``value [CI] (n=N)``."""
    return f"{format_ci(row['value'], row['ci_low'], row['ci_high'], percent=percent, digits=2)} (n={int(row['n'])})"


def headline_table(result) -> pd.DataFrame:
    """One row per target: the key numbers (breakdown ``all``) as formatted strings."""
    summary = result.tables["summary"]
    overall = summary[summary["breakdown"] == "all"]
    fmr = result.configuration["fmrs"][0]
    backbones = result.configuration["backbones"]
    diversity = result.flags["diversity"]["per_target"]
    rows = []
    for label in result.model["target_labels"]:
        part = overall[overall["target_label"] == label]

        def pick(metric, role=None, part=part):
            sel = part[part["metric"] == metric]
            if role is not None:
                sel = sel[sel["role"] == role]
            return sel.iloc[0] if len(sel) else None

        row = {"target": label}
        for role in ("train", "independent"):
            name = backbones[role]["name"]
            v = pick(f"verification_rate_fmr_{fmr:g}", role)
            row[f"verified @FMR {fmr:g}, {name}"] = format_ci(v["value"], v["ci_low"], v["ci_high"], percent=True)
            c = pick("identity_cosine", role)
            row[f"cosine, {name}"] = format_ci(c["value"], c["ci_low"], c["ci_high"], digits=3)
        judged = label not in result.flags["age_not_judged"]
        for metric, title, percent in (("est_age_out", "est. age", False), ("age_group_hit", "in target group", True),
                                       ("achieved_shift", "age shift (y)", False)):
            v = pick(metric)
            text = format_ci(v["value"], v["ci_low"], v["ci_high"], percent=percent, digits=1)
            row[title] = text if judged else f"not judged ({text})"
        v = pick("sex_flip")
        row["sex flip"] = format_ci(v["value"], v["ci_low"], v["ci_high"], percent=True)
        v = pick("abs_yaw_change")
        row["|yaw change| (deg)"] = format_ci(v["value"], v["ci_low"], v["ci_high"], digits=1)
        d = diversity.get(label, {})
        row["LPIPS across inputs (x real)"] = (f"{d['lpips_across_inputs']:.3f} ({d['ratio_to_real']:.2f}x)"
                                               + (" COLLAPSED" if d.get("collapsed") else "")) if d else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def breakdown_table(result, metric: str, role: str | None = None, percent: bool = False) -> pd.DataFrame:
    """Rows: breakdown levels (sex, race, source group, age gap); columns: targets (and all targets pooled,
    where summarised); cells: value [CI] (n)."""
    summary = result.tables["summary"]
    part = summary[(summary["metric"] == metric) & (summary["breakdown"] != "all")]
    if role is not None:
        part = part[part["role"] == role]
    if part.empty:
        return pd.DataFrame()
    part = part.assign(cell=[ci_cell(r, percent) for _, r in part.iterrows()],
                       row=[f"{b}: {lv}" for b, lv in zip(part["breakdown"], part["level"])])
    order = list(dict.fromkeys(part["row"]))
    table = part.pivot_table(index="row", columns="target_label", values="cell", aggfunc="first")
    table = table.reindex(order)[[t for t in [*result.model["target_labels"], ALL_TARGETS] if t in table.columns]]
    table.index.name = "breakdown"
    return table.fillna("")


def results_dict(result) -> dict:
    """Everything in ``results.json``."""
    tables = result.tables
    out = {
        "title": f"Aging audit: {result.model['name']}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": result.command, "model": result.model, "data": result.data,
        "configuration": result.configuration, "flags": result.flags, "notes": result.notes,
        "seconds": result.seconds, "headline": json_records(headline_table(result)),
        "thresholds": json_records(tables["thresholds"]), "estimator_real": json_records(tables["estimator_real"]),
        "confusion": json_records(tables["confusion"]), "confusion_real": json_records(tables["confusion_real"]),
        "diversity": json_records(tables["diversity"]), "summary": json_records(tables["summary"]),
        "tables": {name: f"tables/{name}.csv" for name in tables},
    }
    for name in ("expressivity", "decoder", "age_readers", "realism"):
        if name in tables:
            out[name] = json_records(tables[name])
    return json_ready(out)
