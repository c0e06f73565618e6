"""Train an aging GAN: ``python -m decoders.aging.train ipcgan|agecgan --out RUN [options]``.

The command form of :func:`decoders.aging.training.train_aging_gan` (see there for the faces,
the age classifier and what RUN receives). Model settings beyond the common flags:
``--set KEY=VALUE`` for any field of the GAN's config dataclass (e.g. ``--set identity=10
--set g_blocks=4``). An existing RUN is refused unless ``--resume`` (settings that define the
run must not change, the others default to the run's) or ``--overwrite``. Which GANs exist:
``decoders.aging.models.MODELS``.

    python -m decoders.aging.train ipcgan --out runs/ipcgan --steps 3000 --time-limit-min 25
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from probes.cli import (
    add_data_root,
    add_max_images,
    add_runtime,
    apply_runtime,
    make_parser,
    module_command,
    run_command,
)

from .models import MODELS, gan_module
from .training import AgingTrainingConfig, AgingTrainingResult, config_for_run, parse_overrides, train_aging_gan

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    # Settings default to None ("not given"): a resumed run keeps its own (AgingTrainingConfig has the defaults).
    defaults = {f.name: f.default for f in dataclasses.fields(AgingTrainingConfig)}
    p = make_parser("python -m decoders.aging.train", __doc__)
    p.add_argument("model", choices=sorted(MODELS), help="which aging GAN")
    p.add_argument("--out", required=True, help="run folder")
    add_data_root(p)
    p.add_argument("--steps", type=int, help=f"optimisation steps (default {defaults['steps']})")
    p.add_argument("--time-limit-min", type=float, help="stop (and save) after this many minutes of training "
                                                        "(default: no limit)")
    p.add_argument("--batch-size", type=int, help=f"default {defaults['batch_size']}")
    p.add_argument("--image-size", type=int, choices=(64, 128), help="face side in pixels (default 64)")
    p.add_argument("--identity-backbone", help="face model of the identity loss (default dlib-resnet29)")
    p.add_argument("--identity-weights", help="weights file overriding the identity backbone's default")
    p.add_argument("--random-identity", action="store_true", default=None,
                   help="random-init identity backbone (tests only)")
    p.add_argument("--age-classifier", help="checkpoint of a trained age-group classifier (default: train one)")
    add_max_images(p, what="faces in the GAN's age groups")
    p.add_argument("--val-fraction", type=float, help="held-out faces for samples and validation (default 0.1)")
    p.add_argument("--seed", type=int, help="split, weights init and data order (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a field of the GAN's config (repeatable)")
    add_runtime(p, batch_size=None)
    p.add_argument("--cache-dir", help="resized-faces cache (default $FACEPROBE_HOME/cache/aging-faces)")
    for name in ("save_every", "keep_every", "log_every", "sample_every", "validate_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {defaults[name]}")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    return p


def gan_overrides(args: argparse.Namespace) -> dict:
    """The GAN settings the command line sets: ``--set`` items, ``--image-size``, ``--identity-backbone``."""
    overrides = parse_overrides(args.overrides, gan_module(args.model).Config)
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    if args.identity_backbone is not None:
        overrides["identity_backbone"] = args.identity_backbone
    return overrides


def train(args: argparse.Namespace) -> AgingTrainingResult:
    config = config_for_run(args.out, args.model, vars(args), gan_overrides(args), args.resume, args.overwrite)
    return train_aging_gan(config, args.out, args.resume, args.overwrite, data_root=args.data_root,
                           device=args.device, cache_dir=args.cache_dir, progress=not args.no_progress,
                           command=module_command("decoders.aging.train", getattr(args, "argv", None)))


def run(argv: Sequence[str] | None = None) -> dict:
    """The command as a function: trains and returns the summary dict."""
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)  # what the run records as its command
    apply_runtime(args)
    return train(args).summary


def train_and_report(args: argparse.Namespace) -> None:
    summary = train(args).summary
    losses = ", ".join(f"{k} {v:.4g}" for k, v in summary["last_losses"].items())
    log.info(f"trained {summary['model']} {summary['step']} steps in {summary['train_time_s']} s "
             f"({summary['n_train']} training faces); last: {losses}")
    if "last_validation" in summary:
        log.info("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["last_validation"].items()))
    log.info(f"checkpoint: {summary['checkpoint']}\nsamples: {summary['last_sample_grid']}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), train_and_report, argv, name="decoders.aging.train")


if __name__ == "__main__":
    sys.exit(main())
