"""Train a Deep Face Decoder: ``python -m decoders.train --backbone B --dataset D --out RUN``.

The command form of :func:`decoders.dfd.training.train_decoder` (see there for the datasets
and what RUN receives). An existing RUN with results is refused unless ``--resume`` (continue
from its latest checkpoint; settings that define the model must not change, the others default
to the run's) or ``--overwrite`` (its earlier results are removed, but only once every input has
been checked). Multi-process: ``torchrun --nproc_per_node N -m decoders.train ...`` (gloo on
CPU, nccl with ``--device cuda``).

    python -m decoders.train --backbone dlib-resnet29 --dataset lfw --out runs/dfd --steps 400
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from probes.cli import (
    add_backbone,
    add_cache_dir,
    add_data_root,
    add_max_images,
    add_runtime,
    describe_defaults,
    flag_name,
    make_parser,
    run_command,
)

from .dfd.losses import LossConfig
from .dfd.splits import DATASET_CHOICES
from .dfd.training import DecoderTrainingConfig, DecoderTrainingResult, config_for_run, train_decoder

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    # Settings default to None ("not given"): a resumed run keeps its own (DecoderTrainingConfig has the defaults).
    p = make_parser("python -m decoders.train", __doc__)
    p.add_argument("--out", required=True, help="run folder")
    add_backbone(p, default=None, help="target face network (default dlib-resnet29)")
    p.add_argument("--random-backbone", action="store_true", default=None,
                   help="random-init backbone (tests and chance baselines only)")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="default lfw")
    add_data_root(p)
    add_max_images(p, what="images of each dataset")
    p.add_argument("--min-images-per-person", type=int, help="keep people with at least this many images")
    p.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"), help="default 0.8 0.1 0.1")
    p.add_argument("--split-seed", type=int, help="seed of the identity-disjoint train/val/test split")
    p.add_argument("--seed", type=int, help="weights init and data order (default 0)")
    p.add_argument("--image-size", type=int, help="decoder output side: 64, 112 (default), 128, 224 ...")
    p.add_argument("--width", type=float, help="decoder channel multiplier (default 1)")
    p.add_argument("--norm", choices=("batch", "group", "none"), help="decoder normalisation layers")
    p.add_argument("--standardise", action="store_true", default=None,
                   help="standardise templates with the training templates' per-dimension mean and std "
                        "(default: unit templates rescaled to norm sqrt(d))")
    p.add_argument("--batch-size", type=int, help="per process (default 32)")
    p.add_argument("--lr", type=float, help="peak learning rate (Adam; warmup, then cosine decay)")
    p.add_argument("--steps", type=int,
                   help="total optimisation steps (default 400: about 35 minutes of training on 2 CPU cores)")
    p.add_argument("--time-limit-min", type=float,
                   help="stop (and save) after this many minutes of training (default: no limit)")
    g = p.add_argument_group("loss weights (0 disables a term)")
    for name in LossConfig.weight_names():
        g.add_argument(flag_name(name), type=float, dest=name, help=f"weight of the {name.replace('_', ' ')} loss")
    g.add_argument("--pixel-kind", choices=("l1", "l2"), help="pixel loss norm")
    g.add_argument("--lpips-net", choices=("alex", "vgg"), help="LPIPS trunk of the perceptual loss")
    add_runtime(p, batch_size=None)
    add_cache_dir(p, what="templates")
    for name, what in (("save-every", "save checkpoints/latest.pt"), ("keep-every", "keep checkpoints/step_N.pt"),
                       ("log-every", "write a log.csv row"), ("sample-every", "draw a sample grid"),
                       ("validate-every", "score the validation images")):
        p.add_argument("--" + name, type=int, help=f"{what} every this many steps")
    p.add_argument("--val-images", type=int, help="validation images scored in val.csv (default 128)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    describe_defaults(p, DecoderTrainingConfig().to_dict())
    return p


def train(args: argparse.Namespace) -> DecoderTrainingResult:
    config = config_for_run(args.out, vars(args), args.resume, args.overwrite)
    return train_decoder(config, args.out, args.resume, args.overwrite, data_root=args.data_root,
                         device=args.device, cache_dir=args.cache_dir,
                         progress=not args.no_progress)


def train_and_report(args: argparse.Namespace) -> None:
    summary = train(args).summary
    if int(os.environ.get("RANK", "0")) == 0:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in summary["last_losses"].items())
        log.info(f"trained {summary['step']} steps in {summary['train_time_s']} s "
                 f"({summary['n_train']} training images); last: {losses}")
        if "last_validation" in summary:
            log.info("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["last_validation"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), train_and_report, argv, name="decoders.train")


if __name__ == "__main__":
    sys.exit(main())
