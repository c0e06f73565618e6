"""``python -m decoders.audit``: audit a face-aging model on held-out UTKFace faces.

    python -m decoders.audit --generator runs/ipcgan/checkpoints/latest.pt --out audit/ipcgan
    python -m decoders.audit --generator identity --groups ipcgan --image-size 64 --out audit/identity
    python -m decoders.audit --generator mypkg.aging:age --groups agecgan --image-size 64 --out audit/mine
    python -m decoders.audit --aged-folder aged/ --aged-csv aged/list.csv --groups ipcgan --out audit/folder

``--out`` receives ``report.html`` (self-contained), ``results.json``,
``tables/*.csv`` and ``figures/*.png``. An existing non-empty ``--out`` is
refused unless ``--overwrite``; nothing is written there before the audit has
finished.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import pandas as pd

from probes.cli import (
    add_cache_dir,
    add_data_root,
    add_max_images,
    add_out,
    add_runtime,
    add_seed,
    make_parser,
    run_command,
)
from probes.outputs import check_output_folder

from .config import DEFAULT_INDEPENDENT_BACKBONE, EXPRESSIVITY_ATTRIBUTES
from .core import AgingAudit
from .faces import FaceSelection
from .references import REFERENCES, reference_model
from .result import AuditResult
from .sources import GROUPS, AgingSource, chosen_targets

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m decoders.audit", __doc__)
    src = p.add_argument_group("what to audit (one of)")
    src.add_argument("--generator", help="GAN checkpoint, module:function, or a reference: "
                                         + ", ".join(REFERENCES) + " (no default: this or --aged-folder)")
    src.add_argument("--aged-folder", help="folder of pre-aged images (with --aged-csv; no default: this or "
                                           "--generator)")
    src.add_argument("--aged-csv", help="CSV with columns source, target_group, output (paths relative to "
                                        "--aged-folder; no default)")
    src.add_argument("--groups", choices=sorted(GROUPS), help="age groups of a plain function or folder (default: a "
                     "checkpoint's own; ipcgan for the identity and collapsed references)")
    src.add_argument("--image-size", type=int, help="image size of a plain function (square; default: a "
                     "checkpoint's own; 64 for the references)")
    src.add_argument("--name", help="name shown in the report (default: the generator's own name)")
    src.add_argument("--inversion-steps", type=int,
                     help="for GANs that invert faces by optimisation (Age-cGAN): steps per face (0 = encoder only; "
                          "default: the checkpoint's setting)")
    src.add_argument("--targets", nargs="+", help="target groups (indices or labels; default all)")
    data = p.add_argument_group("faces")
    add_data_root(data)
    add_max_images(data, default=200, what="faces")
    add_seed(data)
    data.add_argument("--holdout", type=float,
                      help="audit the held-out part of AgingFaces.split((1-h, h), --split-seed); 0 = all faces. "
                           "Default: a checkpoint's own validation faces (from its run's config.json), else 0.1")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/held-out split")
    m = p.add_argument_group("measurements")
    m.add_argument("--train-backbone", help="the GAN's training face model (default: the model's "
                                            "identity_backbone, else dlib-resnet29)")
    m.add_argument("--independent-backbone", default=DEFAULT_INDEPENDENT_BACKBONE,
                   help="an independent face model (e.g. hse-mobilenet-vggface2, mobileface)")
    m.add_argument("--age-labeller", default="hse-agegender", choices=("hse-agegender", "faceapi-agegender"),
                   help="age/sex judge; faceapi-agegender was trained on UTKFace, so it is not independent there")
    m.add_argument("--training-age-reader", choices=("hse-agegender", "faceapi-agegender"),
                   help="the age network the GAN was trained against (default: the model's own record, if any); "
                        "its readings go beside the judge's")
    m.add_argument("--pose-labeller", default="faceapi-headpose", help="yaw estimator ('none' skips yaw)")
    m.add_argument("--fmr", type=float, nargs="+", default=[1e-3], help="false match rates (first = headline)")
    m.add_argument("--no-lfw", action="store_true", help="thresholds from UTKFace impostor pairs, not LFW")
    m.add_argument("--lfw-max-pairs", type=int, help="seeded subset of LFW pairs (quick runs; default all)")
    m.add_argument("--max-estimator-mae", type=float, default=8.0,
                   help="years: target groups whose real faces the estimator misreads by more are not judged")
    m.add_argument("--min-real-faces", type=int, default=10, help="real faces a group needs to be judged")
    m.add_argument("--collapse-fraction", type=float, default=0.25)
    m.add_argument("--target-fraction", type=float, default=0.1)
    m.add_argument("--lpips-pairs", type=int, default=200)
    m.add_argument("--expressivity", default="probe", help="estimator (probe, mine, nwj, smile, infonce) or 'none'")
    m.add_argument("--expressivity-attributes", nargs="+", default=list(EXPRESSIVITY_ATTRIBUTES),
                   choices=EXPRESSIVITY_ATTRIBUTES)
    m.add_argument("--decoder", help="DFD decoder checkpoint: reconstruct original and aged templates "
                   "(default: no reconstructions)")
    m.add_argument("--decoder-faces", type=int, default=64, help="faces whose templates are decoded")
    m.add_argument("--gallery-size", type=int, default=12)
    m.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for mean CIs")
    o = p.add_argument_group("run")
    add_out(o)
    add_cache_dir(o, "LFW templates")
    add_runtime(o, batch_size=32)
    return p


def audit_from_args(args: argparse.Namespace) -> AgingAudit:
    """The audit's settings from the measurement and run flags."""
    return AgingAudit(
        train_backbone=args.train_backbone, independent_backbone=args.independent_backbone,
        age_labeller=args.age_labeller, pose_labeller=None if args.pose_labeller == "none" else args.pose_labeller,
        training_age_reader=args.training_age_reader,
        fmrs=args.fmr, data_root=args.data_root, use_lfw=not args.no_lfw, lfw_max_pairs=args.lfw_max_pairs,
        cache_dir=args.cache_dir, max_estimator_mae=args.max_estimator_mae,
        min_real_faces=args.min_real_faces, collapse_fraction=args.collapse_fraction,
        target_fraction=args.target_fraction, lpips_pairs=args.lpips_pairs,
        expressivity=None if args.expressivity == "none" else args.expressivity,
        expressivity_attributes=args.expressivity_attributes, decoder=args.decoder,
        decoder_faces=args.decoder_faces, gallery_size=args.gallery_size, n_boot=args.bootstrap, seed=args.seed,
        batch_size=args.batch_size, device=args.device, progress=not args.no_progress)


def run(args: argparse.Namespace, command: Sequence[str]) -> AuditResult:
    """Load what to audit and the faces, audit, save into ``--out``, print the headline."""
    check_output_folder(args.out, args.overwrite)  # refuse before any work
    model = AgingSource(generator=args.generator, aged_folder=args.aged_folder, aged_csv=args.aged_csv,
                        groups=args.groups, image_size=args.image_size, name=args.name,
                        inversion_steps=args.inversion_steps, device=args.device).load()
    targets = chosen_targets(args.targets, model)
    selection = FaceSelection(data_root=args.data_root, max_images=args.max_images, seed=args.seed,
                              holdout=args.holdout, split_seed=args.split_seed, progress=not args.no_progress)
    faces, record = selection.load(model, checkpoint=args.generator)
    if args.generator in REFERENCES:  # the collapsed reference draws the mean of the audited faces
        model = reference_model(args.generator, model.groups, int(model.image_size), faces.images)
    result = audit_from_args(args).run(model, faces, targets, name=args.name or getattr(model, "name", None),
                                       selection=record, command=command)
    result.save(args.out, args.overwrite)
    print_summary(result, args.out)
    return result


def print_summary(result: AuditResult, out: str) -> None:
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        log.info(result.headline().to_string(index=False))
    flags = result.flags
    log.info(f"collapsed: {flags['collapsed']}; ignores target: {flags['ignores_target']}; age not judged: "
             f"{', '.join(flags['age_not_judged']) or 'none'}; threshold fallback: "
             f"{', '.join(flags['threshold_fallback_backbones']) or 'none'}; loose thresholds: "
             f"{', '.join(r['backbone'] for r in flags['loose_thresholds']) or 'none'}")
    readers = flags.get("age_readers")
    if readers is not None:
        log.info("fools its own age loss: " + ("; ".join(readers["reasons"]) if readers["fools_own_age_loss"] else
                                               "no" + (" (its reader is the judge: not judged independently)"
                                                       if readers["same_network"] else "")))
    log.info(f"report: {out}/report.html ({result.seconds['total']:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    command = [sys.executable, "-m", "decoders.audit"] + list(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser(), lambda args: run(args, command), argv)


if __name__ == "__main__":
    sys.exit(main())
