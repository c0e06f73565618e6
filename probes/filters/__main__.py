"""``python -m probes.filters A B``: which filters two networks share, and how alike their layers' activations are.

A and B are backbone registry names (``dlib-resnet29``, ``mobileface``, ...)
or ``package.module:function[=arg]`` specs imported at run time that return
an ``nn.Module``. Corresponding layers are paired by name (same
architecture), else by order among layers of the same weight shape, or as
given by ``--pairs a=b,...``. Each pair's filters are matched one to one on
|cosine|; every layer's activations on the same faces (UTKFace by default)
are compared by linear CKA. Every number comes with its chance interval
from ``--n-baseline`` pairs of randomly initialised networks. Writes
filters.csv, filters.json, cka.csv, matched.png (when layers correspond) and cka.png, the
figures also as PDF and SVG, into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import warnings
from pathlib import Path

from ..cli import add_data_root, add_out, add_runtime, add_seed, make_parser, run_command
from ..datasets import FaceDataset, load_dataset, subsample_indices
from ..outputs import check_output_folder, provenance
from .compare import FilterComparison
from .networks import Network, load_network
from .pairing import PAIRINGS

log = logging.getLogger(__name__)

# Random twins' seeds come from a stream the baseline never draws from.
RANDOM_TWIN_SEED = {"a": 10_000, "b": 10_001}


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m probes.filters", __doc__)
    for side in ("a", "b"):
        p.add_argument(side, help=f"network {side.upper()}: registry name or package.module:function[=arg]")
    for side in ("a", "b"):
        p.add_argument(f"--weights-{side}", default=None,
                       help=f"weight file for a registry backbone {side.upper()} (default: its own)")
    for side in ("a", "b"):
        p.add_argument(f"--random-{side}", action="store_true",
                       help=f"use {side.upper()} with random weights (its untrained twin)")
    p.add_argument("--pairs", default=None,
                   help="explicit layer pairs 'layer_a=layer_b,...' (default: paired by --pairing)")
    p.add_argument("--pairing", default="auto", choices=PAIRINGS)
    p.add_argument("--threshold", type=float, default=0.5, help="|cosine| above which matched filters count as shared")
    p.add_argument("--n-baseline", type=int, default=3, help="random network pairs for the chance interval")
    p.add_argument("--level", type=float, default=0.95, help="chance (prediction) interval level")
    add_seed(p)
    p.add_argument("--no-cka", action="store_true", help="compare filters only (no images)")
    p.add_argument("--dataset", default="utkface", choices=["utkface", "lfw", "folder"])
    add_data_root(p)
    p.add_argument("--n-images", type=int, default=300, help="shared images for CKA")
    p.add_argument("--grid", type=int, default=4, help="conv activations averaged onto at most grid x grid cells")
    p.add_argument("--max-dim", type=int, default=4096, help="at most channels x cells per layer for CKA")
    add_runtime(p, batch_size=32)
    add_out(p, required=False, default_text="runs/filters-A-vs-B")
    return p


def default_out(args: argparse.Namespace) -> Path:
    def slug(spec: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", spec.split("=")[0].split(":")[-1] if ":" in spec else spec)

    return Path(f"runs/filters-{slug(args.a)}{'-random' if args.random_a else ''}-vs-"
                f"{slug(args.b)}{'-random' if args.random_b else ''}")


def network(args: argparse.Namespace, side: str) -> Network:
    net = load_network(getattr(args, side), getattr(args, f"weights_{side}"), args.device)
    return net.reinitialised(RANDOM_TWIN_SEED[side] + 2 * args.seed) if getattr(args, f"random_{side}") else net


def shared_images(args: argparse.Namespace) -> FaceDataset:
    kwargs = {} if args.dataset == "folder" else {"max_images": args.n_images, "seed": args.seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed UTKFace names: counted by the loader, not our business
        images = load_dataset(args.dataset, args.data_root, **kwargs)
    if len(images) > args.n_images:
        images = images.subset(subsample_indices(len(images), args.n_images, args.seed))
    return images


def run(args: argparse.Namespace) -> None:
    out = Path(args.out) if args.out else default_out(args)
    check_output_folder(out, args.overwrite)  # fail before the slow part
    start = time.perf_counter()
    net_a, net_b = network(args, "a"), network(args, "b")
    images = None if args.no_cka else shared_images(args)
    comparison = FilterComparison(threshold=args.threshold, n_baseline=args.n_baseline, random_state=args.seed,
                                  pairing=args.pairing, grid=args.grid, max_dim=args.max_dim,
                                  batch_size=args.batch_size, level=args.level, progress=not args.no_progress)
    explicit = args.pairs is not None or args.pairing != "auto"
    result = comparison.compare(net_a, net_b, images=images, pairs=args.pairs, require_pairs=explicit)
    result.config.update({
        "command": "python -m probes.filters " + " ".join(sys.argv[1:]), "a": args.a, "b": args.b,
        "random_a": args.random_a, "random_b": args.random_b, "dataset": None if images is None else images.name,
        "seconds": round(time.perf_counter() - start, 1), "versions": provenance(),
    })
    written = result.save(out, overwrite=args.overwrite)
    log.info(result.summary())
    log.info("wrote " + ", ".join(str(p) for p in written))


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
