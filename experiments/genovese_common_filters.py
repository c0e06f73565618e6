"""Genovese et al. (ICIP 2019) on our IPCGAN: does an aging generator share filters with other generators?

    python experiments/genovese_common_filters.py --out runs/genovese [--steps-aging 3000] [--aging-run RUN]

Four generators of one architecture (:class:`decoders.aging.ipcgan.IPCGANGenerator`,
the config of the aging run), each in a folder under ``--out``:

``pretrain/``  denoises random crops of scikit-image's sample images (no faces: the astronaut, camera
               man and ``lfw_subset`` are left out) -- general-purpose pretraining;
``lfw/``       denoises LFW faces: the same architecture trained for another task on other images (a);
``aging/``     IPCGAN aging on UTKFace from scratch (or ``--aging-run RUN``, an existing run of
               ``python -m decoders.aging.train ipcgan``, whose config, seed and age classifier are reused);
``finetuned/`` IPCGAN aging started from ``pretrain/``'s generator, with the aging run's config, data,
               age classifier, seed and validation schedule (b).

Each is trained with the shared :class:`probes.training.Trainer` (resumable: run the command again to
continue). Then :class:`probes.filters.FilterComparison` compares aging vs lfw, aging vs pretrain,
aging vs finetuned, finetuned vs pretrain, and aging vs its own initial weights (how far training
moved the filters), on ``--n-images`` held-out UTKFace faces; every number sits beside the chance
interval of independently initialised generators. ``compare/<pair>/`` gets the usual filters.csv,
cka.csv and heatmaps; ``summary.json`` and ``summary.md`` answer the two questions:

1. does the aging generator share more filters than chance with (a) and with the pretrained one?
2. does fine-tuning reach the from-scratch generator's aging quality (validation age-classifier
   accuracy on the target group, identity cosine to the input) in fewer steps?

The generators are conditional (face + target group); for the comparison they are fed UTKFace faces
with one fixed target group (``--compare-group``). The seeds differ per generator (aging: the run's
seed, lfw: +1, pretrain: +2) so no two start from the same weights. The study itself:
:mod:`decoders.aging.common_filters`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from decoders.aging.common_filters import CommonFiltersConfig, CommonFiltersStudy
from decoders.aging.common_filters import load_fixed_group_generator as load_generator  # noqa: F401 (old spec)
from decoders.aging.ipcgan import IPCGANConfig
from decoders.aging.training import parse_overrides
from probes.cli import make_parser, run_command

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("experiments/genovese_common_filters.py", __doc__)
    p.add_argument("--out", default="runs/genovese")
    p.add_argument("--data-root", default=None, help="folder holding utkface/ and lfw_home/ (default $FACEPROBE_DATA)")
    p.add_argument("--aging-run", default=None,
                   help="an existing IPCGAN run to use as the from-scratch aging generator")
    p.add_argument("--steps-aging", type=int, default=3000,
                   help="from-scratch and fine-tuned aging steps (with --aging-run: that run's own step count)")
    p.add_argument("--steps-pretrain", type=int, default=2000)
    p.add_argument("--steps-lfw", type=int, default=2000)
    p.add_argument("--n-pretrain", type=int, default=4000, help="scikit-image crops")
    p.add_argument("--n-lfw", type=int, default=4000, help="LFW images")
    p.add_argument("--max-images", type=int, default=None, help="UTKFace faces for aging (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--validate-every", type=int, default=250)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="IPCGAN config field for a new aging run (ignored with --aging-run)")
    p.add_argument("--n-images", type=int, default=300, help="held-out UTKFace faces for CKA")
    p.add_argument("--n-baseline", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--compare-group", type=int, default=2, help="target group fed to the generators for CKA")
    p.add_argument("--tolerance", type=float, default=0.02, help="'comparable quality' margin on the val metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit-min", type=float, default=None,
                   help="stop each training stage after this many minutes (run again to continue)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def study_config(args: argparse.Namespace) -> CommonFiltersConfig:
    names = ("aging_run", "steps_aging", "steps_pretrain", "steps_lfw", "n_pretrain", "n_lfw", "max_images",
             "batch_size", "validate_every", "n_images", "n_baseline", "threshold", "compare_group", "tolerance",
             "seed", "time_limit_min", "data_root")
    model = {} if args.aging_run else parse_overrides(args.set, IPCGANConfig)
    return CommonFiltersConfig(model=model, progress=not args.no_progress, **{n: getattr(args, n) for n in names})


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


def run(args: argparse.Namespace) -> None:
    result = CommonFiltersStudy(study_config(args)).run(args.out)
    result.command = "python experiments/genovese_common_filters.py " + " ".join(sys.argv[1:])
    result.save(args.out)
    log.info("\n".join(result.comparison_lines()))
    log.info(result.markdown())


if __name__ == "__main__":
    sys.exit(main())
