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
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from probes.datasets import load_utkface
from probes.labellers import create_labeller

TARGET_MIRROR = 3.0
PERCENTILES = [1, 5, 10, 25, 50, 75, 90, 95, 99]
YAW_EDGES = list(range(-60, 61, 10))


def predict_files(labeller, dataset, layout, batch_size, mirror=False, chunk=256) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for i in tqdm(range(0, len(dataset), chunk), desc="mirrored" if mirror else "pose", unit="chunk"):
        images = dataset.load_images(np.arange(i, min(i + chunk, len(dataset))))
        if mirror:
            images = np.ascontiguousarray(images[:, :, ::-1])
        for key, value in labeller.predict(images, layout=layout, batch_size=batch_size).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def text_histogram(counts, edges, width: int = 40) -> list[str]:
    top = max(max(counts), 1)
    labels = [f"< {edges[0]}"] + [f"{lo:+d}..{hi:+d}" for lo, hi in pairwise(edges)] + [f">= {edges[-1]}"]
    return [f"{label:>10} {count:>5} {'#' * round(width * count / top)}" for label, count in zip(labels, counts)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None, help="folder holding utkface/ (default: $FACEPROBE_DATA)")
    parser.add_argument("--n", type=int, default=1000, help="faces for the yaw distribution")
    parser.add_argument("--n-mirror", type=int, default=200, help="faces for the mirror check (taken from --n)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labeller", default="faceapi-headpose")
    parser.add_argument("--layout", default="utkface")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/head_pose_yaw.json")
    args = parser.parse_args(argv)
    if not 0 < args.n_mirror <= args.n:
        parser.error("--n-mirror must be in 1..--n")
    torch.set_num_threads(args.threads)

    faces = load_utkface(args.data_root, max_images=args.n, seed=args.seed)
    labeller = create_labeller(args.labeller)
    start = time.perf_counter()
    pose = predict_files(labeller, faces, args.layout, args.batch_size)
    mirrored = predict_files(labeller, faces.subset(np.arange(args.n_mirror)), args.layout, args.batch_size,
                             mirror=True)
    seconds = time.perf_counter() - start

    m = args.n_mirror
    yaw_gap = np.abs(pose["yaw"][:m] + mirrored["yaw"])
    mirror = {
        "n": m,
        "mean_abs_yaw_plus_mirrored": float(yaw_gap.mean()),
        "median_abs_yaw_plus_mirrored": float(np.median(yaw_gap)),
        "max_abs_yaw_plus_mirrored": float(yaw_gap.max()),
        "corr_yaw_vs_minus_mirrored": float(np.corrcoef(pose["yaw"][:m], -mirrored["yaw"])[0, 1]),
        "mean_abs_pitch_diff": float(np.abs(pose["pitch"][:m] - mirrored["pitch"]).mean()),
        "mean_abs_roll_plus_mirrored": float(np.abs(pose["roll"][:m] + mirrored["roll"]).mean()),
    }
    passed = mirror["mean_abs_yaw_plus_mirrored"] < TARGET_MIRROR
    distribution = {key: {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(pose[key], PERCENTILES))}
                    for key in ("yaw", "pitch", "roll")}
    edges = np.array(YAW_EDGES, dtype=float)
    counts = np.histogram(np.clip(pose["yaw"], -1e3, 1e3), bins=np.concatenate([[-1e3], edges, [1e3]]))[0]
    abs_yaw = np.abs(pose["yaw"])
    shares = {f"|yaw|>{t}": float((abs_yaw > t).mean()) for t in (10, 20, 30, 45)}

    print(f"\n{args.labeller} on UTKFace (seed {args.seed}, layout {args.layout!r}), {seconds:.1f} s")
    print(f"mirror check on {m} faces: mean |yaw + yaw_mirrored| = {mirror['mean_abs_yaw_plus_mirrored']:.2f} deg "
          f"(median {mirror['median_abs_yaw_plus_mirrored']:.2f}, max {mirror['max_abs_yaw_plus_mirrored']:.2f}; "
          f"target < {TARGET_MIRROR}: {'PASS' if passed else 'FAIL'}); "
          f"pitch |diff| {mirror['mean_abs_pitch_diff']:.2f}, roll |sum| {mirror['mean_abs_roll_plus_mirrored']:.2f}")
    print(f"\nestimated pose of {len(faces)} faces (degrees); percentiles:")
    print(f"{'':>6}" + "".join(f"{'p' + str(p):>8}" for p in PERCENTILES))
    for key in ("yaw", "pitch", "roll"):
        print(f"{key:>6}" + "".join(f"{v:>8.1f}" for v in distribution[key].values()))
    print("\nyaw histogram (10-degree bins):")
    print("\n".join(text_histogram(counts.tolist(), YAW_EDGES)))
    print("shares: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shares.items()))

    result = {
        "experiment": "head_pose_yaw",
        "labeller": args.labeller,
        "weights_id": getattr(labeller, "weights_id", None),
        "note": "estimated pose (no ground truth): FaceLandmark68Net points + weak-perspective PnP against "
                "insightface's mean face; positive yaw = face turned to its own left (nose to image right)",
        "n": len(faces), "seed": args.seed, "layout": args.layout,
        "mirror": mirror, "mirror_target_deg": TARGET_MIRROR, "mirror_passed": passed,
        "percentiles": distribution,
        "yaw_histogram": {"edges": YAW_EDGES, "counts": counts.tolist(),
                          "note": "first/last counts are below the first / at or above the last edge"},
        "abs_yaw_shares": shares,
        "seconds": seconds, "threads": args.threads,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
