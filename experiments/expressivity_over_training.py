"""Expressivity over training (issue 3 §3): does identity information rise while age, sex and yaw fall?

    python experiments/expressivity_over_training.py --data-root ../shared/data --out results/over_training \
        [--steps 600] [--keep-every 50] [--min-images-per-person 20] [--utkface-images 600]

1. Trains ``small-facenet`` (64 x 64, 128-D) from random weights on LFW people
   with at least ``--min-images-per-person`` images, with a CosFace identity
   loss (probes.training.identity), keeping a checkpoint every
   ``--keep-every`` steps (step 0 = the random initialisation).
2. Sweeps every checkpoint's tap layers with the same estimator on the same
   faces (probes.expressivity.over_training):

   - ``lfw-heldout``: other images of the *training people* (a per-person
     split), so identity is a closed set the network was trained on, as in
     Dhar et al.'s identity expressivity. Age, P(male) and yaw there are
     labeller estimates (face-api age/gender, head pose) -- LFW has none;
   - ``utkface`` (``--utkface-images`` > 0): UTKFace faces with their own age
     and sex labels (yaw estimated), shown in grey like LFW (whose copy here is
     grey only), so the network sees the kind of input it was trained on. No
     identities there.

Writes into ``--out``: ``run/`` (checkpoints, log.csv, val.csv),
``results.csv`` (one row per eval set, step, layer, attribute, estimator),
``expressivity_over_training.png`` (nats, one panel per layer),
``expressivity_over_training_normalised.png`` (each curve over its peak) and
``results.json`` (the exact command, configuration, timings, validation
accuracy per step and, per attribute at the embedding, the step-0 / peak /
final estimates with CIs and whether the rise or fall is beyond them).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probes.backbones import get_spec
from probes.cli import DefaultsHelpFormatter
from probes.datasets import load_lfw_people, load_utkface
from probes.expressivity.over_training import (
    expressivity_over_training,
    plot_expressivity_over_training,
)
from probes.expressivity.sweep import collect_labels
from probes.training.identity import face_chips, load_identity_checkpoints, split_per_identity, train_identity_network
from probes.training.runs import read_log

OUTPUT_FILES = ("results.csv", "results.json", "expressivity_over_training.png",
                "expressivity_over_training_normalised.png")


def trend(table: pd.DataFrame, layer: str) -> list[dict]:
    """Per (eval set, attribute, estimator) at ``layer``: step 0, peak and final estimates and what the CIs allow."""
    out = []
    rows = table[table["layer"] == layer]
    for (eval_set, attr, est), part in rows.groupby(["eval_set", "attribute", "estimator"], sort=False):
        part = part.groupby("step")[["estimate", "ci_low", "ci_high"]].mean().sort_index()
        first, last = part.iloc[0], part.iloc[-1]
        peak_step = int(part["estimate"].idxmax())
        peak = part.loc[peak_step]
        out.append({
            "eval_set": eval_set, "attribute": attr, "estimator": est, "layer": layer,
            "step0": [round(float(v), 4) for v in first], "peak_step": peak_step,
            "peak": [round(float(v), 4) for v in peak], "final_step": int(part.index[-1]),
            "final": [round(float(v), 4) for v in last],
            "rises_beyond_ci": bool(last["ci_low"] > first["ci_high"]),
            "falls_from_peak_beyond_ci": bool(last["ci_high"] < peak["ci_low"]),
        })
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder holding lfw_home/ and utkface/ ($FACEPROBE_DATA)")
    p.add_argument("--backbone", default="small-facenet", help="registry architecture trained from scratch")
    p.add_argument("--min-images-per-person", type=int, default=20)
    p.add_argument("--eval-fraction", type=float, default=0.3, help="per person, held out for the sweep")
    p.add_argument("--max-eval-per-person", type=int, default=12)
    p.add_argument("--max-train-per-person", type=int, default=100, help="caps George W Bush's 530 images")
    p.add_argument("--utkface-images", type=int, default=0, help="also sweep this many UTKFace faces (true age/sex)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--keep-every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--head", default="cosine", choices=["cosine", "linear"])
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--scale", type=float, default=16.0)
    p.add_argument("--attributes", nargs="+", default=["age", "sex", "yaw", "identity"])
    p.add_argument("--estimators", nargs="+", default=["probe"])
    p.add_argument("--layers", nargs="+", default=None, help="tap layers (default all)")
    p.add_argument("--sweep-steps", nargs="+", type=int, default=None, help="checkpoints to sweep (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the estimates")
    p.add_argument("--out", default="results/expressivity_over_training")
    p.add_argument("--overwrite", action="store_true", help="replace results (and the training run) in --out")
    p.add_argument("--reuse-run", action="store_true", help="sweep the checkpoints already in --out/run")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    out = Path(args.out)
    run_dir = out / "run"
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if (existing or (run_dir / "checkpoints").is_dir()) and not (args.overwrite or args.reuse_run):
        print(f"error: {out} already holds results; pass --overwrite, --reuse-run or another --out", file=sys.stderr)
        return 2
    if args.overwrite and not args.reuse_run and run_dir.is_dir():
        import shutil

        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    spec = get_spec(args.backbone)

    # -- data: the same LFW people for training and for the sweep, other images of them for the sweep
    t0 = time.perf_counter()
    people = load_lfw_people(args.data_root, min_images_per_person=args.min_images_per_person)
    ids = people.labels("identity")
    train_idx, eval_idx = split_per_identity(ids, args.eval_fraction, args.max_eval_per_person, seed=args.seed)
    if args.max_train_per_person:
        rng = np.random.default_rng(args.seed)
        keep = [rng.permutation(m)[:args.max_train_per_person] for m in
                (train_idx[ids[train_idx] == person] for person in np.unique(ids[train_idx]))]
        train_idx = np.sort(np.concatenate(keep))
    train_set, eval_set = people.subset(train_idx), people.subset(eval_idx)
    train_chips = face_chips(train_set, spec, progress=progress)
    eval_chips = face_chips(eval_set, spec, progress=progress)
    timings["chips_s"] = time.perf_counter() - t0

    # -- train (or reuse) the network, keeping step checkpoints
    t0 = time.perf_counter()
    if not args.reuse_run:
        result = train_identity_network(
            train_chips, train_set.labels("identity"), run_dir, backbone=args.backbone, steps=args.steps,
            batch_size=args.batch_size, keep_every=args.keep_every, seed=args.seed, head=args.head,
            scale=args.scale, margin=args.margin, lr=args.lr, val_images=eval_chips,
            val_identities=eval_set.labels("identity"), progress=progress)
        timings["training_s"] = time.perf_counter() - t0
        timings["training_compute_s"] = result.elapsed_s
    models = load_identity_checkpoints(run_dir, steps=args.sweep_steps)

    # -- labels, once per eval set
    t0 = time.perf_counter()
    sets = {"lfw-heldout": (eval_chips, collect_labels(eval_set, args.attributes, progress=progress))}
    if args.utkface_images:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            utk = load_utkface(args.data_root, max_images=args.utkface_images, seed=args.seed)
        chips = face_chips(utk, spec, progress=progress)
        # BT.601 luminance replicated to R = G = B, as in the LFW copy the network was trained on.
        grey = np.rint(chips.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        utk_attrs = [a for a in args.attributes if a != "identity"]
        sets["utkface"] = (np.repeat(grey[..., None], 3, axis=-1), collect_labels(utk, utk_attrs, progress=progress))
    timings["labels_s"] = time.perf_counter() - t0

    # -- the sweep over checkpoints
    tables = []
    for name, (chips, labels) in sets.items():
        t0 = time.perf_counter()
        table = expressivity_over_training(models, chips, labels, estimators=args.estimators, layers=args.layers,
                                           seeds=[args.seed], n_jobs=args.jobs, progress=progress)
        timings[f"sweep_{name}_s"] = time.perf_counter() - t0
        table.insert(0, "eval_set", name)
        table.insert(1, "n_images", len(chips))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "results.csv", index=False)

    # -- figures: one row of panels per eval set would mix scales; draw the held-out LFW set, UTKFace beside it
    for normalise, filename in ((False, OUTPUT_FILES[2]), (True, OUTPUT_FILES[3])):
        for name in sets:
            part = table[table["eval_set"] == name]
            fig = plot_expressivity_over_training(
                part, normalise=normalise,
                title=f"{args.backbone} trained on {len(train_chips)} LFW faces of {len(np.unique(ids))} people; "
                      f"swept on {name} (n={len(sets[name][0])}, {args.estimators[0]})")
            target = out / (filename if name == "lfw-heldout" else filename.replace(".png", f"_{name}.png"))
            fig.savefig(target, dpi=120)

    val = read_log(run_dir / "val.csv") if (run_dir / "val.csv").is_file() else None
    import sklearn

    summary = {
        "command": "python experiments/expressivity_over_training.py " + " ".join(sys.argv[1:] if argv is None
                                                                                    else argv),
        "config": vars(args),
        "data": {"people": len(np.unique(ids)), "train_images": len(train_chips),
                 "eval_images": {name: len(chips) for name, (chips, _) in sets.items()},
                 "label_sources": {name: {a: lab.source for a, lab in labels.items()}
                                   for name, (_, labels) in sets.items()}},
        "steps_swept": [s for s, _ in models],
        "validation_accuracy": None if val is None else
        {int(r.step): round(float(r.val_accuracy), 4) for r in val.itertuples()},
        "trend_at_embedding": trend(table, spec.embedding_layer),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\n{spec.embedding_layer}: estimate [CI] at step 0 / peak / final")
    for t in summary["trend_at_embedding"]:
        verdict = ("rises" if t["rises_beyond_ci"] else "") + \
                  (" falls from peak" if t["falls_from_peak_beyond_ci"] else "")
        print(f"  {t['eval_set']:<12}{t['attribute']:<9}{t['step0']} / step {t['peak_step']} {t['peak']} / "
              f"{t['final']}  {verdict.strip() or 'no change beyond CIs'}")
    print(f"timings (s): {summary['timings_s']}")
    print(f"wrote {out}/results.csv, results.json and the figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
