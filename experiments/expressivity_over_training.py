"""Expressivity over training (issue 3 §3): does identity information rise while age, sex and yaw fall?

    python experiments/expressivity_over_training.py --data-root ../shared/data --out results/over_training \
        [--steps 600] [--keep-every 50] [--min-images-per-person 20] [--utkface-images 600]

Trains ``small-facenet`` (64 x 64, 128-D) from random weights on LFW people with
at least ``--min-images-per-person`` images (CosFace identity loss), keeping a
checkpoint every ``--keep-every`` steps, and sweeps every checkpoint's tap layers
on held-out images of the training people (``lfw-heldout``) and, with
``--utkface-images`` > 0, on grey UTKFace faces with their own age and sex; see
:mod:`probes.expressivity.training_study`.

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
import logging
import shutil
import sys
from pathlib import Path

from probes.cli import add_data_root, add_seed, make_parser, run_command
from probes.errors import FaceprobeError
from probes.expressivity.training_study import OUTPUT_FILES, OverTrainingConfig, OverTrainingStudy

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("experiments/expressivity_over_training.py", __doc__)
    add_data_root(p)
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
    add_seed(p)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the estimates")
    p.add_argument("--out", default="results/expressivity_over_training")
    p.add_argument("--overwrite", action="store_true", help="replace results (and the training run) in --out")
    p.add_argument("--reuse-run", action="store_true", help="sweep the checkpoints already in --out/run")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace, argv=None) -> None:
    out = Path(args.out)
    run_dir = out / "run"
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if (existing or (run_dir / "checkpoints").is_dir()) and not (args.overwrite or args.reuse_run):
        raise FaceprobeError(f"{out} already holds results; pass --overwrite, --reuse-run or another --out")
    if args.overwrite and not args.reuse_run and run_dir.is_dir():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("data_root", "backbone", "min_images_per_person", "eval_fraction", "max_eval_per_person",
             "max_train_per_person", "utkface_images", "steps", "keep_every", "batch_size", "lr", "head", "margin",
             "scale", "seed", "jobs", "reuse_run")
    config = OverTrainingConfig(
        **{name: getattr(args, name) for name in names}, attributes=tuple(args.attributes),
        estimators=tuple(args.estimators), layers=tuple(args.layers) if args.layers else None,
        sweep_steps=tuple(args.sweep_steps) if args.sweep_steps else None, progress=not args.no_progress)
    result = OverTrainingStudy(config).run(run_dir)
    command = "python experiments/expressivity_over_training.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result.save(out, command=command, settings=vars(args))
    log.info(f"\n{result.embedding_layer}: estimate [CI] at step 0 / peak / final")
    for t in result.trend():
        verdict = ("rises" if t["rises_beyond_ci"] else "") + \
                  (" falls from peak" if t["falls_from_peak_beyond_ci"] else "")
        log.info(f"  {t['eval_set']:<12}{t['attribute']:<9}{t['step0']} / step {t['peak_step']} {t['peak']} / "
                 f"{t['final']}  {verdict.strip() or 'no change beyond CIs'}")
    rounded = {k: round(v, 1) for k, v in result.timings.items()}
    log.info(f"timings (s): {rounded}")
    log.info(f"wrote {out}/results.csv, results.json and the figures")


def main(argv=None) -> int:
    return run_command(build_parser(), lambda args: run(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
