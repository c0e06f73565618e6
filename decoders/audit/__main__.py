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
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from probes.cli import DefaultsHelpFormatter
from probes.errors import FaceprobeError

from ..aging.groups import AgeGroups
from ..dfd.templates import cache_dir_option
from .core import DEFAULT_INDEPENDENT_BACKBONE, EXPRESSIVITY_ATTRIBUTES, AgingAudit
from .references import REFERENCES, reference_model
from .sources import (
    GROUPS,
    AuditError,
    FolderAging,
    groups_by_name,
    load_generator,
    run_heldout,
    select_faces,
)


def parse_targets(values: Sequence[str] | None, groups: AgeGroups) -> list[int] | None:
    """``--targets`` as group indices: each value an index or a label of ``groups``."""
    if not values:
        return None
    out = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            if item in groups.labels:
                out.append(groups.labels.index(item))
                continue
            try:
                number = int(item)
            except ValueError:
                raise AuditError(f"--targets {item!r} is neither a group index nor a label of {groups.name} "
                                 f"({', '.join(groups.labels)})") from None
            out.append(number)
    return groups.check(out, argument="--targets").tolist()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.audit", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    src = p.add_argument_group("what to audit (one of)")
    src.add_argument("--generator", help="GAN checkpoint, module:function, or a reference: "
                                         + ", ".join(REFERENCES))
    src.add_argument("--aged-folder", help="folder of pre-aged images (with --aged-csv)")
    src.add_argument("--aged-csv", help="CSV with columns source, target_group, output (paths relative to "
                                        "--aged-folder)")
    src.add_argument("--groups", choices=sorted(GROUPS), help="age groups of a plain function or folder")
    src.add_argument("--image-size", type=int, help="image size of a plain function (square)")
    src.add_argument("--name", help="name shown in the report")
    src.add_argument("--inversion-steps", type=int,
                     help="for GANs that invert faces by optimisation (Age-cGAN): steps per face (0 = encoder only)")
    src.add_argument("--targets", nargs="+", help="target groups (indices or labels; default all)")
    data = p.add_argument_group("faces")
    data.add_argument("--data-root", help="folder holding utkface/ and lfw_home/ (default $FACEPROBE_DATA)")
    data.add_argument("--max-images", type=int, default=200, help="faces audited (seeded draw)")
    data.add_argument("--seed", type=int, default=0, help="seed of the draw, pairs, bootstrap")
    data.add_argument("--holdout", type=float,
                      help="audit the held-out part of AgingFaces.split((1-h, h), --split-seed); 0 = all faces. "
                           "Default: a checkpoint's own validation faces (from its run's config.json), else 0.1")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/held-out split")
    m = p.add_argument_group("measurements")
    m.add_argument("--train-backbone", help="the GAN's training face model (default: the model's "
                                            "identity_backbone, else dlib-resnet29)")
    m.add_argument("--independent-backbone", default=DEFAULT_INDEPENDENT_BACKBONE,
                   help="an independent face model (e.g. hse-mobilenet-vggface2, mobileface)")
    m.add_argument("--age-labeller", default="faceapi-agegender", choices=("faceapi-agegender", "hse-agegender"))
    m.add_argument("--pose-labeller", default="faceapi-headpose", help="yaw estimator ('none' skips yaw)")
    m.add_argument("--fmr", type=float, nargs="+", default=[1e-3], help="false match rates (first = headline)")
    m.add_argument("--no-lfw", action="store_true", help="thresholds from UTKFace impostor pairs, not LFW")
    m.add_argument("--lfw-max-pairs", type=int, help="seeded subset of LFW pairs (quick runs)")
    m.add_argument("--max-estimator-mae", type=float, default=8.0,
                   help="years: target groups whose real faces the estimator misreads by more are not judged")
    m.add_argument("--min-real-faces", type=int, default=10, help="real faces a group needs to be judged")
    m.add_argument("--collapse-fraction", type=float, default=0.25)
    m.add_argument("--target-fraction", type=float, default=0.1)
    m.add_argument("--lpips-pairs", type=int, default=200)
    m.add_argument("--expressivity", default="probe", help="estimator (probe, mine, nwj, smile, infonce) or 'none'")
    m.add_argument("--expressivity-attributes", nargs="+", default=list(EXPRESSIVITY_ATTRIBUTES),
                   choices=EXPRESSIVITY_ATTRIBUTES)
    m.add_argument("--decoder", help="DFD decoder checkpoint: reconstruct original and aged templates")
    m.add_argument("--decoder-faces", type=int, default=64, help="faces whose templates are decoded")
    m.add_argument("--gallery-size", type=int, default=12)
    m.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for mean CIs")
    o = p.add_argument_group("run")
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    o.add_argument("--cache-dir", help="template cache for LFW ('none' disables; default $FACEPROBE_HOME/cache)")
    o.add_argument("--batch-size", type=int, default=32)
    o.add_argument("--device", default="cpu")
    o.add_argument("--threads", type=int, help="torch CPU threads")
    o.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace, command: Sequence[str]) -> dict:
    from probes.outputs import check_output_folder

    from ..aging.data import load_aging_faces

    check_output_folder(args.out, args.overwrite)  # refuse before any work
    if bool(args.generator) == bool(args.aged_folder):
        raise AuditError("give exactly one of --generator and --aged-folder")
    if bool(args.aged_folder) != bool(args.aged_csv):
        raise AuditError("--aged-folder and --aged-csv go together")
    groups = groups_by_name(args.groups)
    folder = model = None
    reference = args.generator if args.generator in REFERENCES else None
    if args.aged_folder:
        folder = model = FolderAging(args.aged_folder, args.aged_csv, groups, args.image_size, name=args.name)
    else:
        model = load_generator(args.generator, groups, args.image_size, device=args.device)
    if args.inversion_steps is not None:
        inversion = getattr(model, "inversion", None)
        if inversion is None or not dataclasses.is_dataclass(inversion) or not hasattr(inversion, "steps"):
            raise AuditError(f"--inversion-steps: {getattr(model, 'name', type(model).__name__)} has no inversion "
                             "settings (only GANs that invert faces by optimisation, e.g. Age-cGAN)")
        if args.inversion_steps < 0:
            raise AuditError(f"--inversion-steps must be >= 0, got {args.inversion_steps}")
        model.inversion = dataclasses.replace(inversion, steps=args.inversion_steps)
    groups, size = model.groups, int(model.image_size)
    targets = parse_targets(args.targets, groups)
    if folder is not None and targets is None:
        targets = folder.targets()
        if not targets:
            raise AuditError(f"--aged-csv {args.aged_csv}: no target group is listed for every source")
    holdout, split_seed, sources, how, pool = args.holdout, args.split_seed, None, None, {}
    if folder is not None:
        sources, how = folder.sources(), f"sources listed in {args.aged_csv}"
    elif holdout is None and Path(args.generator).expanduser().exists():
        info = run_heldout(args.generator)
        if info is not None and "sources" in info:
            sources, how = info["sources"], info["how"]
        elif info is not None:
            holdout, split_seed, how = info["val_fraction"], info["seed"], info["how"]
            if info["max_images"]:
                pool = {"max_images": int(info["max_images"]), "seed": info["max_images_seed"]}
    if holdout is None:
        holdout = 0.1
    direct = holdout == 0 and sources is None and not pool and args.max_images
    if direct:
        # The same seeded draw select_faces would make, but only the drawn files are read.
        pool = {"max_images": args.max_images, "seed": args.seed}
    faces = load_aging_faces(groups, size, root=args.data_root, progress=not args.no_progress, **pool)
    faces, selection = select_faces(faces, holdout, split_seed, args.max_images, args.seed, sources=sources, how=how)
    if direct:
        selection["subsample"] = f"{len(faces)} drawn with seed {args.seed} (load_aging_faces)"
    if reference is not None:
        model = reference_model(reference, groups, size, faces.images)
    cache = cache_dir_option(args.cache_dir)
    audit = AgingAudit(
        train_backbone=args.train_backbone, independent_backbone=args.independent_backbone,
        age_labeller=args.age_labeller, pose_labeller=None if args.pose_labeller == "none" else args.pose_labeller,
        fmrs=args.fmr, data_root=args.data_root, use_lfw=not args.no_lfw, lfw_max_pairs=args.lfw_max_pairs,
        cache_dir=cache, max_estimator_mae=args.max_estimator_mae, min_real_faces=args.min_real_faces,
        collapse_fraction=args.collapse_fraction, target_fraction=args.target_fraction, lpips_pairs=args.lpips_pairs,
        expressivity=None if args.expressivity == "none" else args.expressivity,
        expressivity_attributes=args.expressivity_attributes, decoder=args.decoder,
        decoder_faces=args.decoder_faces, gallery_size=args.gallery_size, n_boot=args.bootstrap, seed=args.seed,
        batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    result = audit.run(model, faces, targets, name=args.name or getattr(model, "name", None),
                       selection=selection, command=command)
    result.save(args.out, args.overwrite)
    return {"result": result, "out": args.out}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = [sys.executable, "-m", "decoders.audit"] + list(sys.argv[1:] if argv is None else argv)
    try:
        done = run(args, command)
    except FaceprobeError as exc:
        print(f"decoders.audit: error: {exc}", file=sys.stderr)
        return 2
    result = done["result"]
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        print(result.headline().to_string(index=False))
    flags = result.flags
    print(f"collapsed: {flags['collapsed']}; ignores target: {flags['ignores_target']}; age not judged: "
          f"{', '.join(flags['age_not_judged']) or 'none'}; threshold fallback: "
          f"{', '.join(flags['threshold_fallback_backbones']) or 'none'}; loose thresholds: "
          f"{', '.join(r['backbone'] for r in flags['loose_thresholds']) or 'none'}")
    print(f"report: {done['out']}/report.html ({result.seconds['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
