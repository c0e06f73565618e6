"""Train the aging GANs (IPCGAN, Age-cGAN) with their CPU defaults; print where the checkpoints are.

    python experiments/train_aging_gans.py --data-root ../shared/data --out runs/aging \
        [--models ipcgan agecgan] [--time-limit-min 16] [--resume]

Each GAN trains with :func:`decoders.aging.training.train_aging_gan` (what ``python -m
decoders.aging.train MODEL`` runs) into ``OUT/MODEL`` (see that module for what a run folder
holds); load a result with ``decoders.aging.models.load_aging_model(OUT/MODEL)``. A GAN whose
module is not registered in ``decoders.aging.models.MODELS`` is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from decoders.aging.models import MODELS
from decoders.aging.training import config_for_run, train_aging_gan
from probes.cli import make_parser, run_command

log = logging.getLogger(__name__)

# CPU settings per GAN beyond the library's defaults (steps is a ceiling; the time limit decides):
# (run settings, GAN settings).
MODEL_SETTINGS = {
    "ipcgan": ({"steps": 20000, "sample_every": 100, "validate_every": 250}, {}),
    # 800 GAN steps, then 250 encoder steps: about 6 minutes on an idle 2-core CPU (18 under heavy load).
    "agecgan": ({"batch_size": 32, "steps": 1050}, {"gan_steps": 800}),
}


def main(argv=None) -> int:
    parser = make_parser("experiments/train_aging_gans.py", __doc__)
    parser.add_argument("--data-root", default=None, help="folder holding utkface/ (default $FACEPROBE_DATA)")
    parser.add_argument("--out", default="runs/aging")
    parser.add_argument("--models", nargs="+", default=["ipcgan", "agecgan"])
    parser.add_argument("--time-limit-min", type=float, default=16.0, help="training minutes per GAN")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="continue earlier runs in --out")
    return run_command(parser, run, argv)


def run(args: argparse.Namespace) -> None:
    done = {}
    for model in args.models:
        if model not in MODELS:
            log.info(f"{model}: not registered in decoders.aging.models.MODELS yet; skipped")
            continue
        out = Path(args.out) / model
        settings, overrides = MODEL_SETTINGS.get(model, ({}, {}))
        config = config_for_run(out, model, {"time_limit_min": args.time_limit_min, **settings}, overrides,
                                resume=args.resume)
        summary = train_aging_gan(config, out, resume=args.resume, data_root=args.data_root,
                                  device=args.device).summary
        done[model] = summary
        log.info(f"{model}: {summary['step']} steps in {summary['train_time_s']} s; "
                 f"checkpoint {summary['checkpoint']}; samples {summary['last_sample_grid']}")
    for summary in done.values():
        log.info(f"load with: decoders.aging.models.load_aging_model({str(Path(summary['checkpoint']))!r})")


if __name__ == "__main__":
    sys.exit(main())
