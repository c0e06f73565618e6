"""``python -m probes.expressivity``: how much each layer of a face network tells about age, sex, yaw, identity.

With no arguments: backbone ``dlib-resnet29`` on LFW faces (people with at
least 10 images, so identity is learnable; at most 2,000 images), labels from
the labellers (age, P(male), yaw) and identity from LFW's names, every tap
layer, the linear-probe bound beside MINE. Writes ``results.csv``,
``results.json`` (exact configuration, versions, timings) and
``expressivity.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import (
    add_backbone,
    add_data_root,
    add_max_images,
    add_out,
    add_runtime,
    make_parser,
    run_command,
)
from ..errors import FaceprobeError
from ..outputs import file_safe
from .estimators import ESTIMATORS
from .labels import KNOWN_ATTRIBUTES
from .pipeline import OUTPUT_FILES, ExpressivityConfig, ExpressivitySweep

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m probes.expressivity", __doc__)
    p.epilog = "--out defaults to runs/expressivity-BACKBONE-DATASET."
    add_backbone(p)
    p.add_argument("--dataset", default="lfw", choices=["lfw", "utkface", "folder"])
    add_data_root(p)
    p.add_argument("--labels-csv", default=None,
                   help="with --dataset folder: CSV with a 'file' column and labels (default: labels from the "
                        "labellers)")
    p.add_argument("--folder-layout", default="chip", choices=["chip", "lfw", "utkface", "people"],
                   help="with --dataset folder: how its images are cropped, or 'people': one sub-folder per person "
                        "of uncropped photos (identity = sub-folder name; faces detected, aligned and cached; "
                        "what was left out is written to skipped.csv in --out)")
    p.add_argument("--min-images-per-person", type=int, default=10, help="LFW: keep people with this many images")
    p.add_argument("--attributes", nargs="+", default=["age", "sex", "yaw", "identity"], choices=KNOWN_ATTRIBUTES)
    p.add_argument("--labels-from", default="dataset", choices=["dataset", "labeller"],
                   help="where an attribute the dataset has comes from")
    p.add_argument("--age-sex-labeller", default="faceapi-agegender")
    p.add_argument("--pose-labeller", default="faceapi-headpose")
    p.add_argument("--layers", nargs="+", default=None, help="tap layers (default: all of the backbone's)")
    p.add_argument("--estimator", nargs="+", default=["probe", "mine"], choices=sorted(ESTIMATORS))
    add_max_images(p, default=2000)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="estimator seeds: each a new split and training seed (one row per seed in results.csv; "
                        "results_pooled.csv and the figure pool them)")
    p.add_argument("--interval", default="envelope", choices=("envelope", "corrected-t"),
                   help="results_pooled.csv's interval over seeds: the envelope of their intervals (conservative) "
                        "or Nadeau-Bengio's corrected repeated-split t (calibrated, wider with 3 seeds)")
    p.add_argument("--projection-dim", type=int, default=512,
                   help="random projection for wider layers (memory); 0 keeps every channel")
    p.add_argument("--pool", default="avg", choices=("avg", "max"),
                   help="how a convolutional layer's H x W map becomes one vector")
    add_runtime(p, batch_size=64)
    p.add_argument("--jobs", type=int, default=-1,
                   help="worker processes for the estimates (-1: one per CPU core); results do not depend on it")
    # Not add_cache_dir: LayerCapture caches only where told (no default folder, no 'none').
    p.add_argument("--cache-dir", default=None, help="on-disk cache for captured features (default: no cache)")
    add_out(p, required=False, default_text="runs/expressivity-BACKBONE-DATASET")
    return p


def config_from_args(args: argparse.Namespace) -> ExpressivityConfig:
    return ExpressivityConfig(
        backbone=args.backbone, weights=args.weights, dataset=args.dataset, data_root=args.data_root,
        labels_csv=args.labels_csv, folder_layout=args.folder_layout,
        min_images_per_person=args.min_images_per_person, max_images=args.max_images,
        attributes=tuple(args.attributes), labels_from=args.labels_from, age_sex_labeller=args.age_sex_labeller,
        pose_labeller=args.pose_labeller, layers=tuple(args.layers) if args.layers else None,
        estimators=tuple(args.estimator), seeds=tuple(args.seeds), interval=args.interval,
        projection_dim=args.projection_dim, pool=args.pool,
        batch_size=args.batch_size, device=args.device, jobs=args.jobs, cache_dir=args.cache_dir,
        progress=not args.no_progress)


def run(args: argparse.Namespace) -> Path:
    out = Path(args.out or f"runs/expressivity-{file_safe(args.backbone)}-{args.dataset}")
    existing = [out / f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not args.overwrite:  # other files in --out are fine: only these three are replaced
        raise FaceprobeError(f"{out} already holds results ({', '.join(p.name for p in existing)}); "
                             "pass --overwrite or choose another --out")
    config = config_from_args(args)
    result = ExpressivitySweep(config).run()
    result.save(out, command="python -m probes.expressivity " + " ".join(sys.argv[1:]), settings=vars(args))
    t = result.timings
    log.info(f"{result.n_images} images, {len(result.layers)} layers x {len(result.label_sources)} attributes x "
             f"{len(config.estimators)} estimator(s): labels {t['labels_s']:.0f} s, capture {t['capture_s']:.0f} s, "
             f"estimation {t['estimation_s']:.0f} s")
    tables = [out / name for name in ("results.csv", "results_pooled.csv", "results.json") if (out / name).exists()]
    log.info(f"wrote {', '.join(map(str, tables))} and {out / 'expressivity.png'}")
    if result.skipped:
        log.warning(f"{len(result.skipped)} file(s) left out of the data set, listed with the reason in "
                    f"{out / 'skipped.csv'}")
    return out


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
