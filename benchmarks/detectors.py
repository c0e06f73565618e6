"""Face detectors on real data: detection rate, wrong faces picked, images per second.

    python benchmarks/detectors.py [--data-root DIR] [--n-lfw 1000] [--n-utk 1000] [--seed 0] \
        [--detectors ssd tiny] [--threads 1] [--out results/detectors/detectors.json]

For each detector of :data:`probes.align.DETECTORS` (the settings ``detect_and_align`` uses) and
each data set (``--n-lfw`` LFW frames and ``--n-utk`` UTKFace crops, seeded subsamples), it counts:

- ``found``: images with at least one face (and ``first_pass``: found in the first round, the
  detector's ``pad`` and ``merge_pads``, before its ``fallback_pads``);
- ``multi``: images with two or more detections;
- ``off_centre``: among the images with a face, those whose chosen face (by each rule of
  :data:`probes.align.SELECT_RULES` reported: ``score-centre``, the default, and ``largest``) has
  its box centre farther than ``--off-centre`` (default 0.2) x the image side from the image centre.
  Both LFW frames and UTKFace crops centre their one subject, so such a pick is a wrong face or a
  bad box;
- ``images_per_s``: images over the wall time of detection alone (images already in memory), with
  ``--threads`` torch threads; the load average before and after is recorded, since the machine may
  be shared.

Writes one JSON record (the command, settings, load average, versions and the rows) and prints the
table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _timing import load_average, write_record

from probes.align import DETECTORS, create_detector, selection_values
from probes.datasets import load_lfw_people, load_utkface
from probes.labellers.ssd import SsdFaceDetector

RULES = ("score-centre", "largest")
# Detectors measured beside DETECTORS' settings: the SSD as face-api runs it (one pass, no border).
EXTRA = {"ssd-faceapi": {}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=os.environ.get("FACEPROBE_DATA"))
    parser.add_argument("--n-lfw", type=int, default=1000)
    parser.add_argument("--n-utk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=[*DETECTORS, *EXTRA],
                        help="names of probes.align.DETECTORS, or ssd-faceapi: the SSD with face-api's own settings")
    parser.add_argument("--off-centre", type=float, default=0.2,
                        help="a chosen box centre farther than this x the image side from the centre is off")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/detectors/detectors.json")
    return parser


def measure(detector, images: np.ndarray, batch_size: int, off_centre: float, label: str, chunk: int = 100) -> dict:
    """One row: what ``detector`` finds in ``images`` (N x H x W x 3) and how fast (progress every ``chunk``)."""
    found, pads, wall = [], [], 0.0
    for start in range(0, len(images), chunk):
        t0 = time.perf_counter()
        boxes, used = detector.detect_with_pads(list(images[start:start + chunk]), batch_size=batch_size)
        wall += time.perf_counter() - t0
        found += boxes
        pads += used
        print(f"  {label}: {len(found)}/{len(images)} images, {len(found) / wall:.2f} img/s", flush=True)
    h, w = images.shape[1:3]
    hit = [i for i, boxes in enumerate(found) if len(boxes)]
    row = {"images": len(images), "found": len(hit), "first_pass": sum(p == detector.pad for p in pads),
           "by_pad": {str(p): sum(q == p for q in pads) for p in (detector.pad, *detector.fallback_pads)},
           "multi": sum(len(boxes) > 1 for boxes in found), "wall_s": wall, "images_per_s": len(images) / wall}
    for rule in RULES:
        far = 0
        for i in hit:
            box = found[i][int(np.argmax(selection_values(found[i], (h, w), rule)))]
            dist = np.hypot((box[0] + box[2] - w) / 2, (box[1] + box[3] - h) / 2)
            far += bool(dist > off_centre * max(h, w))
        row[f"off_centre_{rule}"] = far
    row["median_box_side"] = float(np.median([max(found[i][0, 2] - found[i][0, 0], found[i][0, 3] - found[i][0, 1])
                                              / max(h, w) for i in hit])) if hit else None
    return row


def print_table(record: dict) -> None:
    print(f"{'detector':<11} {'data':<8} {'images':>6} {'found':>14} {'first pass':>10} {'multi':>6} "
          f"{'off-centre (score-centre / largest)':>36} {'img/s':>7}")
    for r in record["rows"]:
        pct = 100 * r["found"] / r["images"]
        off = " / ".join(f"{r[f'off_centre_{rule}']} ({100 * r[f'off_centre_{rule}'] / max(r['found'], 1):.1f}%)"
                         for rule in RULES)
        print(f"{r['detector']:<11} {r['data']:<8} {r['images']:>6} {r['found']:>6} ({pct:5.1f}%) "
              f"{r['first_pass']:>10} {r['multi']:>6} {off:>36} {r['images_per_s']:>7.2f}")
    print(f"load average {record['load_average_before']:.2f} before, {record['load_average_after']:.2f} after; "
          f"{record['threads']} torch thread(s) on {record['cpus']} CPUs")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = {"lfw": load_lfw_people(args.data_root, max_images=args.n_lfw, seed=args.seed).load_images(),
            "utkface": load_utkface(args.data_root, max_images=args.n_utk, seed=args.seed).load_images()}
    record = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "seed": args.seed, "off_centre": args.off_centre, "threads": args.threads, "cpus": os.cpu_count(),
              "torch": torch.__version__, "python": platform.python_version(),
              "load_average_before": load_average(), "detectors": {}, "rows": []}
    for name in args.detectors:
        settings = EXTRA[name] if name in EXTRA else DETECTORS[name][1]
        detector = SsdFaceDetector(**settings) if name in EXTRA else create_detector(name)
        record["detectors"][name] = {"class": type(detector).__name__, **settings}
        for data_name, images in data.items():
            row = {"detector": name, "data": data_name,
                   **measure(detector, images, args.batch_size, args.off_centre, f"{name} {data_name}"),
                   "load_average": load_average()}
            record["rows"].append(row)
            print(f"{name} {data_name}: {row['found']}/{row['images']} found, {row['images_per_s']:.2f} img/s",
                  flush=True)
    record["load_average_after"] = load_average()
    write_record(args.out, record)
    print_table(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
