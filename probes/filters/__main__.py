"""``python -m probes.filters A B``: which filters two networks share, and how alike their layers' activations are.

A and B are backbone registry names (``dlib-resnet29``, ``mobileface``, ...)
or ``package.module:function[=arg]`` specs imported at run time that return
an ``nn.Module``. Corresponding layers are paired by name (same
architecture), else by order among layers of the same weight shape, or as
given by ``--pairs a=b,...``. Each pair's filters are matched one to one on
|cosine|; every layer's activations on the same faces (UTKFace by default)
are compared by linear CKA. Every number comes with its chance interval
from ``--n-baseline`` pairs of randomly initialised networks. Writes
filters.csv, filters.json, cka.csv, matched.png and cka.png into ``--out``.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..cli import DefaultsHelpFormatter
from ..datasets import load_dataset
from ..errors import FaceprobeError
from .compare import FilterComparison
from .networks import PAIRINGS, load_network


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m probes.filters", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("a", help="network A: registry name or package.module:function[=arg]")
    p.add_argument("b", help="network B: registry name or package.module:function[=arg]")
    p.add_argument("--weights-a", default=None, help="weight file for a registry backbone A")
    p.add_argument("--weights-b", default=None, help="weight file for a registry backbone B")
    p.add_argument("--random-a", action="store_true", help="use A with random weights (its untrained twin)")
    p.add_argument("--random-b", action="store_true", help="use B with random weights (its untrained twin)")
    p.add_argument("--pairs", default=None, help="explicit layer pairs 'layer_a=layer_b,...'")
    p.add_argument("--pairing", default="auto", choices=PAIRINGS)
    p.add_argument("--threshold", type=float, default=0.5, help="|cosine| above which matched filters count as shared")
    p.add_argument("--n-baseline", type=int, default=3, help="random network pairs for the chance interval")
    p.add_argument("--level", type=float, default=0.95, help="chance (prediction) interval level")
    p.add_argument("--seed", type=int, default=0, help="seeds the baseline networks, --random-* and the image draw")
    p.add_argument("--no-cka", action="store_true", help="compare filters only (no images)")
    p.add_argument("--dataset", default="utkface", choices=["utkface", "lfw", "folder"])
    p.add_argument("--data-root", default=None, help="dataset root (default $FACEPROBE_DATA)")
    p.add_argument("--n-images", type=int, default=300, help="shared images for CKA")
    p.add_argument("--grid", type=int, default=4, help="conv activations averaged onto at most grid x grid cells")
    p.add_argument("--max-dim", type=int, default=4096, help="at most channels x cells per layer for CKA")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--out", default=None, help="output folder (default runs/filters-A-vs-B)")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already holds files")
    p.add_argument("--no-progress", action="store_true")
    return p


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec.split("=")[0].split(":")[-1] if ":" in spec else spec)


def run(args: argparse.Namespace):
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/filters-{_slug(args.a)}{'-random' if args.random_a else ''}-vs-"
                          f"{_slug(args.b)}{'-random' if args.random_b else ''}")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:  # fail before the slow part
        raise FaceprobeError(f"output folder {out} is not empty; pass --overwrite or choose another --out")
    t0 = time.perf_counter()
    net_a = load_network(args.a, args.weights_a, args.device)
    net_b = load_network(args.b, args.weights_b, args.device)
    # Random twins' seeds come from a stream the baseline never draws from.
    if args.random_a:
        net_a = net_a.reinitialised(10_000 + 2 * args.seed)
    if args.random_b:
        net_b = net_b.reinitialised(10_001 + 2 * args.seed)
    images = None
    if not args.no_cka:
        kwargs = {} if args.dataset == "folder" else {"max_images": args.n_images, "seed": args.seed}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # malformed UTKFace names: counted by the loader, not our business
            images = load_dataset(args.dataset, args.data_root, **kwargs)
        if len(images) > args.n_images:
            images = images.subset(np.sort(np.random.default_rng(args.seed).choice(len(images), args.n_images,
                                                                                   replace=False)))
    comparison = FilterComparison(threshold=args.threshold, n_baseline=args.n_baseline, random_state=args.seed,
                                  pairing=args.pairing, grid=args.grid, max_dim=args.max_dim,
                                  batch_size=args.batch_size, level=args.level, progress=not args.no_progress)
    explicit = args.pairs is not None or args.pairing != "auto"
    result = comparison.compare(net_a, net_b, images=images, pairs=args.pairs, require_pairs=explicit)
    result.config.update({
        "command": "python -m probes.filters " + " ".join(sys.argv[1:]), "a": args.a, "b": args.b,
        "random_a": args.random_a, "random_b": args.random_b, "dataset": None if images is None else images.name,
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    })
    written = result.save(out, overwrite=args.overwrite)
    return result, written


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result, written = run(args)
    except FaceprobeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
