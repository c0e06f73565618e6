"""Estimated head yaw on UTKFace: a mirror-consistency check and the yaw distribution.

    python experiments/head_pose_yaw.py --data-root ../shared/data [--n 1000] [--n-mirror 200]

No data set here has ground-truth pose, so the check is internal: a mirrored
face must get the opposite yaw (target: mean |yaw + yaw_mirrored| < 3 degrees
on ``--n-mirror`` faces). Then the yaw (and pitch, roll) distribution of
``--n`` UTKFace crops is printed as percentiles and a histogram and written
to a results JSON (``--out``). Positive yaw = face turned to its own left.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

from probes.cli import add_data_root, add_seed, make_parser, run_command
from probes.datasets import load_utkface
from probes.labellers import create_labeller
from probes.labellers.evaluation import PoseDistribution, label_dataset, mirror_consistency, pose_distribution
from probes.outputs import atomic_write_bytes

log = logging.getLogger(__name__)

TARGET_MIRROR = 3.0
PERCENTILES = [1, 5, 10, 25, 50, 75, 90, 95, 99]
YAW_EDGES = list(range(-60, 61, 10))


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("head_pose_yaw.py", __doc__)
    add_data_root(parser)
    parser.add_argument("--n", type=int, default=1000, help="faces for the yaw distribution")
    parser.add_argument("--n-mirror", type=int, default=200, help="faces for the mirror check (taken from --n)")
    add_seed(parser)
    parser.add_argument("--labeller", default="faceapi-headpose")
    parser.add_argument("--layout", default="utkface")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/head_pose_yaw.json")
    return parser


def text_histogram(counts, edges, width: int = 40) -> list[str]:
    top = max(max(counts), 1)
    labels = [f"< {edges[0]}"] + [f"{lo:+d}..{hi:+d}" for lo, hi in pairwise(edges)] + [f">= {edges[-1]}"]
    return [f"{label:>10} {count:>5} {'#' * round(width * count / top)}" for label, count in zip(labels, counts)]


def report(args: argparse.Namespace, n: int, mirror: dict, distribution: PoseDistribution, seconds: float) -> None:
    passed = mirror["mean_abs_yaw_plus_mirrored"] < TARGET_MIRROR
    log.info(f"\n{args.labeller} on UTKFace (seed {args.seed}, layout {args.layout!r}), {seconds:.1f} s")
    log.info(f"mirror check on {mirror['n']} faces: mean |yaw + yaw_mirrored| = "
             f"{mirror['mean_abs_yaw_plus_mirrored']:.2f} deg "
             f"(median {mirror['median_abs_yaw_plus_mirrored']:.2f}, max {mirror['max_abs_yaw_plus_mirrored']:.2f}; "
             f"target < {TARGET_MIRROR}: {'PASS' if passed else 'FAIL'}); "
             f"pitch |diff| {mirror['mean_abs_pitch_diff']:.2f}, "
             f"roll |sum| {mirror['mean_abs_roll_plus_mirrored']:.2f}")
    log.info(f"\nestimated pose of {n} faces (degrees); percentiles:")
    log.info(f"{'':>6}" + "".join(f"{'p' + str(p):>8}" for p in PERCENTILES))
    for key in ("yaw", "pitch", "roll"):
        log.info(f"{key:>6}" + "".join(f"{v:>8.1f}" for v in distribution.percentiles[key].values()))
    log.info("\nyaw histogram (10-degree bins):")
    log.info("\n".join(text_histogram(distribution.yaw_counts, YAW_EDGES)))
    log.info("shares: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in distribution.abs_yaw_shares.items()))


def run(args: argparse.Namespace) -> None:
    faces = load_utkface(args.data_root, max_images=args.n, seed=args.seed)
    labeller = create_labeller(args.labeller)
    start = time.perf_counter()
    pose = label_dataset(labeller, faces, args.layout, batch_size=args.batch_size)
    mirrored = label_dataset(labeller, faces.subset(np.arange(args.n_mirror)), args.layout, mirror=True,
                             batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    mirror = mirror_consistency(pose, mirrored)
    distribution = pose_distribution(pose, PERCENTILES, YAW_EDGES)
    report(args, len(faces), mirror, distribution, seconds)
    result = {
        "experiment": "head_pose_yaw",
        "labeller": args.labeller,
        "weights_id": getattr(labeller, "weights_id", None),
        "note": "estimated pose (no ground truth): FaceLandmark68Net points + weak-perspective PnP against "
                "insightface's mean face; positive yaw = face turned to its own left (nose to image right)",
        "n": len(faces), "seed": args.seed, "layout": args.layout,
        "mirror": mirror, "mirror_target_deg": TARGET_MIRROR,
        "mirror_passed": mirror["mean_abs_yaw_plus_mirrored"] < TARGET_MIRROR,
        "percentiles": distribution.percentiles,
        "yaw_histogram": {"edges": YAW_EDGES, "counts": distribution.yaw_counts,
                          "note": "first/last counts are below the first / at or above the last edge"},
        "abs_yaw_shares": distribution.abs_yaw_shares,
        "seconds": seconds, "threads": args.threads,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, lambda handle: handle.write(json.dumps(result, indent=2).encode()))
    log.info(f"wrote {out}")


def main(argv=None) -> int:
    parser = build_parser()

    def checked_run(args: argparse.Namespace) -> None:
        if not 0 < args.n_mirror <= args.n:
            parser.error("--n-mirror must be in 1..--n")
        run(args)

    return run_command(parser, checked_run, argv)


if __name__ == "__main__":
    sys.exit(main())
