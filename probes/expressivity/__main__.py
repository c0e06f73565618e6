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
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..backbones import create_backbone
from ..capture import LayerCapture
from ..cli import DefaultsHelpFormatter
from ..datasets import load_dataset
from ..errors import FaceprobeError
from .sweep import (
    ESTIMATORS,
    KNOWN_ATTRIBUTES,
    collect_labels,
    expressivity_sweep,
    plot_expressivity,
)

OUTPUT_FILES = ("results.csv", "results.json", "expressivity.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m probes.expressivity", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--backbone", default="dlib-resnet29")
    p.add_argument("--weights", default=None, help="weight file (required for backbones whose weights you bring)")
    p.add_argument("--dataset", default="lfw", choices=["lfw", "utkface", "folder"])
    p.add_argument("--data-root", "--data-home", dest="data_root", default=None,
                   help="dataset folder (lfw: the folder holding lfw_home/; default $FACEPROBE_DATA)")
    p.add_argument("--labels-csv", default=None, help="with --dataset folder: CSV with a 'file' column and labels")
    p.add_argument("--min-images-per-person", type=int, default=10, help="LFW: keep people with this many images")
    p.add_argument("--attributes", nargs="+", default=["age", "sex", "yaw", "identity"], choices=KNOWN_ATTRIBUTES)
    p.add_argument("--labels-from", default="dataset", choices=["dataset", "labeller"],
                   help="where an attribute the dataset has comes from")
    p.add_argument("--age-sex-labeller", default="faceapi-agegender")
    p.add_argument("--pose-labeller", default="faceapi-headpose")
    p.add_argument("--layers", nargs="+", default=None, help="tap layers (default: all of the backbone's)")
    p.add_argument("--estimator", nargs="+", default=["probe", "mine"], choices=sorted(ESTIMATORS))
    p.add_argument("--max-images", type=int, default=2000)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--projection-dim", type=int, default=512,
                   help="random projection for wider layers (memory); 0 keeps every channel")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--jobs", type=int, default=-1,
                   help="worker processes for the estimates (-1: one per CPU core); results do not depend on it")
    p.add_argument("--cache-dir", default=None, help="on-disk cache for captured features")
    p.add_argument("--out", default=None, help="output folder (default runs/expressivity-BACKBONE-DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> Path:
    out = Path(args.out or f"runs/expressivity-{args.backbone}-{args.dataset}")
    existing = [out / f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not args.overwrite:
        raise FaceprobeError(f"{out} already holds results ({', '.join(p.name for p in existing)}); "
                             "pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    timings = {}

    kwargs = {"max_images": args.max_images}
    if args.dataset == "lfw":
        kwargs["min_images_per_person"] = args.min_images_per_person
    if args.dataset == "folder":
        kwargs = {"labels_csv": args.labels_csv}
    dataset = load_dataset(args.dataset, args.data_root, **kwargs)
    if args.dataset == "folder" and args.max_images and len(dataset) > args.max_images:
        dataset = dataset.subset(np.random.default_rng(0).choice(len(dataset), args.max_images, replace=False))
    backbone = create_backbone(args.backbone, weights=args.weights, device=args.device)
    layers = args.layers or list(backbone.tap_layers)
    for layer in layers:
        backbone.layer(layer)  # unknown names fail now, listing the valid ones

    t0 = time.perf_counter()
    labellers = {a: args.age_sex_labeller for a in ("age", "sex")}
    labellers.update({a: args.pose_labeller for a in ("yaw", "pitch", "roll")})
    labels = collect_labels(dataset, args.attributes, labellers, prefer=args.labels_from,
                            batch_size=args.batch_size, device=args.device, progress=progress)
    timings["labels_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    capture = LayerCapture(backbone, layers, projection_dim=args.projection_dim or None, batch_size=args.batch_size,
                           cache_dir=args.cache_dir, progress=progress)
    features = capture.capture(dataset)
    timings["capture_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = expressivity_sweep(features, labels, estimators=args.estimator, seeds=args.seeds, layer_order=layers,
                               n_jobs=args.jobs, progress=progress)
    timings["estimation_s"] = time.perf_counter() - t0

    table.insert(0, "backbone", args.backbone)
    table.insert(1, "dataset", dataset.name)
    table.to_csv(out / "results.csv", index=False)
    fig = plot_expressivity(table, title=f"{args.backbone} on {dataset.name} (n={len(dataset)})")
    fig.savefig(out / "expressivity.png", dpi=130)
    import sklearn

    config = {k: v for k, v in vars(args).items()}
    summary = {
        "command": "python -m probes.expressivity " + " ".join(sys.argv[1:]),
        "config": config, "n_images": len(dataset), "layers": layers,
        "label_sources": {a: lab.source for a, lab in labels.items()},
        "backbone_weights_id": backbone.weights_id, "timings": timings,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__},
        "results": table.to_dict(orient="records"),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"{len(dataset)} images, {len(layers)} layers x {len(labels)} attributes x {len(args.estimator)} "
          f"estimator(s): labels {timings['labels_s']:.0f} s, capture {timings['capture_s']:.0f} s, "
          f"estimation {timings['estimation_s']:.0f} s")
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except FaceprobeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'results.csv'}, {out / 'results.json'} and {out / 'expressivity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
