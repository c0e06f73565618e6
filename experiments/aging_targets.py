"""Does an aging GAN reach issue 19's targets on faces it never saw? And how did it get there?

    python experiments/aging_targets.py --generator ipcgan-utkface --data-root ../shared/data \
        --max-images 300 --out results/aging_targets/ipcgan-utkface.json
    python experiments/aging_targets.py --generator runs/ipcgan-utkface --curve --max-images 150 \
        --out results/aging_targets/ipcgan-utkface-curve.json

Each measurement is :class:`decoders.audit.AgingAudit` (no expressivity, no yaw) on the generator's
held-out UTKFace faces (a shipped name's listed faces, a run's validation split). Judges are the
audit's independent ones, never the networks the GAN trained against: age by ``hse-agegender``,
identity by ``hse-mobilenet-vggface2`` at FMR 0.1% (the threshold from LFW identity-disjoint
impostors, as the audit takes it). ``--curve`` measures every kept checkpoint of a run folder
(``checkpoints/step_*.pt``) and draws the judges' figures against the training step, beside the
training reader's own readings (the run's ``val.csv``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from decoders.audit import AgingAudit, FaceSelection, load_generator
from probes.cli import make_parser, run_command
from probes.outputs import provenance, save_figure, write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

FMR = 1e-3
# Issue 19's targets per GAN kind: (oldest - youngest mean age, share of outputs in their group,
# share verified as their source, share of sex flips); None = no target.
TARGETS = {"ipcgan": {"span_years": 25.0, "hit_rate": 0.5, "verified": 0.9, "sex_flip": 0.05},
           "agecgan": {"span_years": 20.0, "hit_rate": None, "verified": 0.6, "sex_flip": None}}


def summary_values(summary: pd.DataFrame, metric: str, role: str | None = None) -> dict[str, dict]:
    """``{target label: {value, ci_low, ci_high, n}}`` of one metric, breakdown ``all``."""
    rows = summary[(summary["metric"] == metric) & (summary["breakdown"] == "all")]
    if role is not None:
        rows = rows[rows["role"] == role]
    return {r.target_label: {"value": float(r.value), "ci_low": float(r.ci_low), "ci_high": float(r.ci_high),
                             "n": int(r.n)} for r in rows.itertuples()}


def measure(generator: str, args) -> dict:
    """The audit's judges on ``generator``'s held-out faces, reduced to the targets' figures."""
    model = load_generator(generator)
    faces, record = FaceSelection(data_root=args.data_root, max_images=args.max_images, seed=args.seed,
                                  progress=False).load(model, checkpoint=generator)
    audit = AgingAudit(expressivity=None, pose_labeller=None, fmrs=(FMR,), data_root=args.data_root,
                       seed=args.seed, progress=False)
    result = audit.run(model, faces, selection=record)
    summary = result.tables["summary"]
    labels = list(model.groups.labels)
    age = summary_values(summary, "est_age_out")
    out = {"generator": generator, "kind": getattr(model, "kind", None), "step": getattr(model, "step", None),
           "faces": record, "judges": {"age": str(audit.age_labeller),
                                       "identity": str(audit.independent_backbone)},
           "age_by_target": age, "hit_rate_by_target": summary_values(summary, "age_group_hit"),
           "verified_by_target": summary_values(summary, f"verification_rate_fmr_{FMR:g}", "independent"),
           "sex_flip_by_target": summary_values(summary, "sex_flip"),
           "thresholds": result.tables["thresholds"].to_dict("records"),
           # the network the GAN was trained against, read beside the judge (None: the model names none)
           "age_readers": (result.tables["age_readers"].to_dict("records") if "age_readers" in result.tables
                           else None),
           "age_reader_flags": result.flags.get("age_readers"),
           "realism": result.tables["realism"].to_dict("records") if "realism" in result.tables else None}
    per_output = result.tables["per_output"]
    means = [age[label]["value"] for label in labels if label in age]
    out["overall"] = {"rising": bool(np.all(np.diff(means) > 0)), "span_years": float(means[-1] - means[0]),
                      "hit_rate": float(per_output["age_group_hit"].mean()),
                      "verified": float(per_output[f"independent_accepted_fmr_{FMR:g}"].mean()),
                      "sex_flip": float(per_output["sex_flip"].mean())}
    out["targets"] = check_targets(out["overall"], TARGETS.get(out["kind"], {}))
    return out


def check_targets(overall: dict, targets: dict) -> dict:
    """Each target: the goal, the measured value and whether it is met."""
    checks = {"rising": {"goal": "mean judged age rises with every target", "met": overall["rising"]}}
    for name, goal in targets.items():
        if goal is None:
            continue
        met = overall[name] <= goal if name == "sex_flip" else overall[name] >= goal
        checks[name] = {"goal": goal, "value": overall[name], "met": bool(met)}
    return checks


def curve(run: Path, args, folder: Path) -> dict:
    """:func:`measure` at every kept checkpoint of ``run``, with the training reader's readings.

    Each checkpoint's measurement is kept in ``folder`` (``step_N.json``) and reused by a later call
    with the same settings, so the curve can be extended while a run trains.
    """
    folder.mkdir(parents=True, exist_ok=True)
    points = []
    # the kept checkpoints, and the last one (a run stopped by its time limit keeps only latest.pt)
    paths = sorted((run / "checkpoints").glob("step_*.pt")) + [run / "checkpoints" / "latest.pt"]
    for path in paths:
        kept = folder / f"{path.stem}.json"
        settings = {"max_images": args.max_images, "seed": args.seed, "checkpoint": str(path),
                    "checkpoint_mtime": path.stat().st_mtime}
        if kept.is_file() and json.loads(kept.read_text()).get("settings") == settings:
            points.append(json.loads(kept.read_text()))
            continue
        point = {**measure(str(path), args), "settings": settings}
        if point["step"] in {p["step"] for p in points}:
            continue  # latest.pt is the last kept checkpoint
        write_json(kept, point)
        points.append(point)
    val = pd.read_csv(run / "val.csv") if (run / "val.csv").is_file() else None
    reader = val[["step"] + [c for c in val.columns if c.startswith("val_reader_age_g")]].to_dict("list") \
        if val is not None and any(c.startswith("val_reader_age_g") for c in val.columns) else None
    return {"run": str(run), "points": points, "training_reader": reader}


def curve_figure(record: dict):
    """Judged age per target (training reader dashed) and verified share against the training step."""
    points = record["points"]
    steps = [p["step"] for p in points]
    labels = list(points[0]["age_by_target"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8), constrained_layout=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(labels)))
    for i, (label, colour) in enumerate(zip(labels, colours)):
        values = [p["age_by_target"][label] for p in points]
        left.errorbar(steps, [v["value"] for v in values],
                      yerr=[[v["value"] - v["ci_low"] for v in values], [v["ci_high"] - v["value"] for v in values]],
                      color=colour, marker="o", ms=3, capsize=2, label=f"target {label}")
        reader = record.get("training_reader")
        if reader and f"val_reader_age_g{i}" in reader:
            left.plot(reader["step"], reader[f"val_reader_age_g{i}"], color=colour, ls="--", lw=0.8)
    left.set(xlabel="training step", ylabel="estimated age of output (years)",
             title="age: judge (solid, 95% CI), training reader (dashed)")
    left.legend(fontsize=7, frameon=False)
    verified = [p["overall"]["verified"] for p in points]
    right.plot(steps, np.array(verified) * 100, marker="o", ms=3, color="k")
    right.set(xlabel="training step", ylabel="outputs verified as source (%)", ylim=(0, 100),
              title=f"identity, independent face model, FMR {FMR:g}")
    for axis in (left, right):
        axis.title.set_fontsize(8)
    return fig


def main(argv=None) -> int:
    parser = make_parser("experiments/aging_targets.py", __doc__)
    parser.add_argument("--generator", required=True, help="shipped name, run folder or checkpoint")
    parser.add_argument("--curve", action="store_true", help="measure every kept checkpoint of a run folder")
    parser.add_argument("--data-root", default=None, help="folder holding utkface/ and lfw_home/ "
                        "(default $FACEPROBE_DATA)")
    parser.add_argument("--max-images", type=int, default=300, help="held-out faces measured (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="draw of the faces and bootstrap (default 0)")
    parser.add_argument("--out", required=True, help="JSON file to write (a figure goes beside it with --curve)")
    return run_command(parser, lambda args: run(args, argv), argv)


def run(args: argparse.Namespace, argv=None) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.curve:
        record = curve(Path(args.generator), args, out.with_suffix(""))
        fig = curve_figure(record)
        save_figure(fig, out.with_suffix(".png"), dpi=200)  # and .pdf, .svg
    else:
        record = measure(args.generator, args)
        for name, check in record["targets"].items():
            log.info(f"{name}: {check}")
    record.update(command=" ".join(["python", "experiments/aging_targets.py", *(argv or sys.argv[1:])]),
                  provenance=provenance())
    write_json(out, record)
    log.info(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
