"""Perturbation analysis with reconstructions: ``python -m decoders.perturbation``.

The perturbation analysis of the Deep Face Decoder paper (Križaj et al.,
EAAI 2024): held-out faces are rotated, shifted, scaled, occluded, noised and
attacked (FGSM, PGD) in the frame the backbone reads, at several strengths
(:mod:`probes.template_drift` measures the template drift); the decoder then
draws each perturbed template, showing what the template still holds.

Per image and strength: cosine and L2 between the perturbed and the clean
template, the backbone's verification score and decision at the threshold of
``--fmr`` on LFW's pairs (:func:`decoders.dfd.lfw_scores.lfw_pair_scores`; or
``--threshold``), and for the reconstruction of the perturbed template: its
template (the uint8 reconstruction fed as a ``chip``) against the clean
template (``recon_cosine``, ``recon_verified``: does the drawing still pass as
the person?) and against the perturbed one (``recon_cosine_perturbed``).

``--out`` receives ``results.csv`` (one row per image, variant and strength),
``summary.csv`` (means with 95% intervals, verified rates with Wilson
intervals), ``results.json`` (the exact configuration, thresholds, summary and
the strength at which half the faces stop verifying), ``drift_<family>.png``
(seaborn, mean and 95% bootstrap CI over images), ``drift_attacks.png`` (noise,
FGSM and PGD on one plot) and ``strip_<family>[_<position>].png`` (original |
perturbed at each strength, and below each its reconstruction). An existing
``--out`` is refused unless ``--overwrite``.

    python -m decoders.perturbation --checkpoint runs/dfd --data-root /data --max-images 50 --out runs/dfd/perturb
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from probes import cli
from probes.datasets import LAYOUTS
from probes.template_drift import DEFAULT_POSITIONS, FAMILIES, PADDINGS
from probes.verification import IMPOSTOR_SETS

from .dfd.perturbation_analysis import PerturbationAnalysis, PerturbationConfig
from .dfd.perturbation_result import format_table
from .dfd.settings import run_and_save

log = logging.getLogger(__name__)

COMMAND = "decoders.perturbation"


def build_parser():
    p = cli.make_parser(f"python -m {COMMAND}", __doc__)
    p.add_argument("--checkpoint", required=True, help="decoder run folder (or a checkpoint inside it)")
    cli.add_out(p)
    p.add_argument("--images", help="folder of face images (default: the run's held-out --split)")
    p.add_argument("--layout", default="chip", choices=LAYOUTS, help="with --images: how they are framed")
    p.add_argument("--split", default="test", choices=("test", "val"), help="held-out part of the run's split.json")
    cli.add_data_root(p)
    cli.add_max_images(p, default=50)
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), help="default: all")
    p.add_argument("--strengths", action="append", metavar="FAMILY=V1,V2,...",
                   help="strengths of one family (repeatable; default: each family's built-in strengths); "
                        "units: " + "; ".join(
                       f"{f.name} {f.unit}" for f in FAMILIES.values()))
    p.add_argument("--positions", nargs="+", default=list(DEFAULT_POSITIONS),
                   help="occlusion positions (eyes, left_eye, right_eye, nose, mouth, centre, random)")
    p.add_argument("--fmr", type=float, default=1e-3, help="false match rate of the verification threshold")
    p.add_argument("--threshold", type=float,
                   help="verification threshold as a score instead of --fmr (cosine, or -L2 for euclidean backbones; "
                        "default: from --fmr)")
    p.add_argument("--impostors", choices=IMPOSTOR_SETS, default="auto",
                   help="impostor set for the threshold (see decoders.evaluate)")
    p.add_argument("--max-pairs", type=int,
                   help="seeded subset of LFW pairs for the threshold (quick runs; default all)")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations")
    p.add_argument("--pgd-step-size", type=float, help="default 2.5 * eps / steps")
    p.add_argument("--padding", choices=PADDINGS, default="zeros",
                   help="what geometric transforms bring in from outside the view")
    p.add_argument("--fill", type=float, default=0.0, help="occluder grey level in [0, 1]")
    p.add_argument("--strip-images", type=int, default=3, help="faces shown in each reconstruction strip")
    cli.add_seed(p)
    cli.add_backbone(p, default=None, help="refuse a checkpoint not trained against this backbone (default: "
                                           "the checkpoint's own)")
    cli.add_cache_dir(p, "templates and target chips")
    cli.add_runtime(p, batch_size=32)
    return p


def analyse(args, command: list[str]) -> None:
    config = PerturbationConfig(
        checkpoint=args.checkpoint, images=args.images, layout=args.layout, split=args.split,
        data_root=args.data_root, max_images=args.max_images,
        families=tuple(args.families) if args.families is not None else None,
        strengths=tuple(args.strengths) if args.strengths is not None else None, positions=tuple(args.positions),
        fmr=args.fmr, threshold=args.threshold, impostors=args.impostors, max_pairs=args.max_pairs,
        pgd_steps=args.pgd_steps, pgd_step_size=args.pgd_step_size, padding=args.padding, fill=args.fill,
        strip_images=args.strip_images, seed=args.seed, backbone=args.backbone, weights=args.weights,
        cache_dir=args.cache_dir, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress)
    result = run_and_save(PerturbationAnalysis(config), args, command)
    log.info(format_table(result.results))
    log.info(f"results: {Path(args.out).absolute() / 'results.json'}")


def main(argv: Sequence[str] | None = None) -> int:
    command = cli.module_command(COMMAND, argv)
    return cli.run_command(build_parser(), lambda args: analyse(args, command), argv)


if __name__ == "__main__":
    sys.exit(main())
