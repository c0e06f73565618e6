"""Face detectors on real data: detection rate, wrong faces picked, images per second.

    python benchmarks/detectors.py [--data-root DIR] [--n-lfw 1000] [--n-utk 1000] [--seed 0] \
        [--detectors ssd tiny] [--data lfw utkface] [--threads 1] [--out results/detectors/detectors.json]

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
# "ssd-before": detect_and_align's SSD as it ran before the net took one image per pass in channels_last
# layout (a whole batch per pass, contiguous layout).
EXTRA = {"ssd-faceapi": {}, "ssd-before": {**DETECTORS["ssd"][1], "forward_batch": None, "channels_last": False}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=os.environ.get("FACEPROBE_DATA"))
    parser.add_argument("--n-lfw", type=int, default=1000)
    parser.add_argument("--n-utk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", nargs="+", default=["lfw", "utkface"], choices=["lfw", "utkface"],
                        help="which data sets, in this order")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=[*DETECTORS, *EXTRA],
                        help="names of probes.align.DETECTORS, or ssd-faceapi: the SSD with face-api's own settings")
    parser.add_argument("--off-centre", type=float, default=0.2,
                        help="a chosen box centre farther than this x the image side from the centre is off")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/detectors/detectors.json")
    return parser


def measure(detector, images: np.ndarray, names: list[str], batch_size: int, off_centre: float, label: str,
            chunk: int = 100) -> dict:
    """One row: what ``detector`` finds in ``images`` (N x H x W x 3) and how fast (progress every ``chunk``).

    Speed is measured twice: wall time (what a user waits) and this process's CPU time (what the
    detector costs, less sensitive to other jobs on a shared machine: with one torch thread it is
    the wall time of an idle machine)."""
    found, pads, wall, cpu = [], [], 0.0, 0.0
    for start in range(0, len(images), chunk):
        t0, c0 = time.perf_counter(), time.process_time()
        boxes, used = detector.detect_with_pads(list(images[start:start + chunk]), batch_size=batch_size)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        found += boxes
        pads += used
        missed = [names[i] for i, boxes in enumerate(found) if not len(boxes)]
        print(f"  {label}: {len(found)}/{len(images)} images, {len(found) - len(missed)} found, "
              f"{len(found) / wall:.2f} img/s, {len(found) / cpu:.2f} img/CPU-s; missed so far: {missed}", flush=True)
    h, w = images.shape[1:3]
    hit = [i for i, boxes in enumerate(found) if len(boxes)]
    # which pass found the faces: a border of the detector, or (stage, border) of a cascade
    stages = getattr(detector, "stages", [(None, detector)])
    passes = [(name, p) if name else p for name, d in stages for p in (d.pad, *d.fallback_pads)]
    row = {"images": len(images), "found": len(hit), "first_pass": sum(p == passes[0] for p in pads),
           "by_pad": {" ".join(map(str, p)) if isinstance(p, tuple) else str(p): sum(q == p for q in pads)
                      for p in passes},
           "multi": sum(len(boxes) > 1 for boxes in found), "wall_s": wall, "images_per_s": len(images) / wall,
           "cpu_s": cpu, "images_per_cpu_s": len(images) / cpu,
           "missed": [names[i] for i, boxes in enumerate(found) if not len(boxes)]}
    if hasattr(detector, "found_by"):
        row["by_stage"] = {stage: sum(p is not None and p[0] == stage for p in pads) for stage in detector.found_by}
        row["found_by_later_stages"] = [names[i] for i, p in enumerate(pads) if p is not None and p[0] != stages[0][0]]
    for rule in RULES:
        far = []
        for i in hit:
            box = found[i][int(np.argmax(selection_values(found[i], (h, w), rule)))]
            dist = np.hypot((box[0] + box[2] - w) / 2, (box[1] + box[3] - h) / 2)
            if dist > off_centre * max(h, w):
                far.append(names[i])
        row[f"off_centre_{rule}"] = len(far)
        row[f"off_centre_{rule}_images"] = far
    row["median_box_side"] = float(np.median([max(found[i][0, 2] - found[i][0, 0], found[i][0, 3] - found[i][0, 1])
                                              / max(h, w) for i in hit])) if hit else None
    return row


def print_table(record: dict) -> None:
    print(f"{'detector':<11} {'data':<8} {'images':>6} {'found':>14} {'first pass':>10} {'multi':>6} "
          f"{'off-centre (score-centre / largest)':>36} {'img/s':>7} {'img/CPU-s':>9}")
    for r in record["rows"]:
        pct = 100 * r["found"] / r["images"]
        off = " / ".join(f"{r[f'off_centre_{rule}']} ({100 * r[f'off_centre_{rule}'] / max(r['found'], 1):.1f}%)"
                         for rule in RULES)
        print(f"{r['detector']:<11} {r['data']:<8} {r['images']:>6} {r['found']:>6} ({pct:5.1f}%) "
              f"{r['first_pass']:>10} {r['multi']:>6} {off:>36} {r['images_per_s']:>7.2f} "
              f"{r['images_per_cpu_s']:>9.2f}")
    print(f"load average {record['load_average_before']:.2f} before, {record['load_average_after']:.2f} after; "
          f"{record['threads']} torch thread(s) on {record['cpus']} CPUs")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    loaders = {"lfw": lambda: load_lfw_people(args.data_root, max_images=args.n_lfw, seed=args.seed),
               "utkface": lambda: load_utkface(args.data_root, max_images=args.n_utk, seed=args.seed)}
    sets = {name: loaders[name]() for name in args.data}
    data = {name: (faces.load_images(), [f"{p.parent.name}/{p.name}" for p in faces.paths])
            for name, faces in sets.items()}
    record = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "seed": args.seed, "off_centre": args.off_centre, "threads": args.threads, "cpus": os.cpu_count(),
              "torch": torch.__version__, "python": platform.python_version(),
              "load_average_before": load_average(), "detectors": {}, "rows": []}
    for name in args.detectors:
        settings = EXTRA[name] if name in EXTRA else DETECTORS[name][1]
        detector = SsdFaceDetector(**settings) if name in EXTRA else create_detector(name)
        record["detectors"][name] = {"class": type(detector).__name__, **settings}
        for data_name, (images, names) in data.items():
            row = {"detector": name, "data": data_name,
                   **measure(detector, images, names, args.batch_size, args.off_centre, f"{name} {data_name}"),
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
