"""Speed of the full expressivity sweep: every dlib-resnet29 tap layer x {age, sex, yaw, identity}.

Issue 3's target: 10,000 faces, every layer and attribute with a 95% CI and a
permutation p-value, estimated in <= 5 minutes on 2 CPU cores *after capture*.
This script prints the breakdown (labels, capture, estimation) and the
estimation time per attribute, for ``--jobs 1`` and ``--jobs N`` side by side.

Labels and features are cached in ``--cache-dir`` (an ``.npz`` keyed by the
settings), so a repeat run times estimation alone::

    python benchmarks/expressivity_sweep_speed.py --data-root ../shared/data --max-images 10000 \
        --cache-dir runs/sweep-speed-cache --jobs 1 2 --out results/expressivity_sweep_speed.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from probes.backbones import create_backbone
from probes.capture import LayerCapture
from probes.datasets import load_lfw_people
from probes.expressivity.labels import AttributeLabels, collect_labels
from probes.expressivity.sweep import expressivity_sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import load_average  # noqa: E402

ATTRIBUTES = ("age", "sex", "yaw", "identity")


def cached_inputs(args) -> tuple[dict, dict, dict]:
    """(features, labels, timings) for the settings, from the cache when present."""
    key = hashlib.sha256(json.dumps([args.backbone, args.max_images, args.seed, args.data_root and
                                     str(Path(args.data_root).resolve())]).encode()).hexdigest()[:16]
    path = Path(args.cache_dir) / f"sweep-inputs-{key}.npz" if args.cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            features = {layer: npz[f"f_{layer}"] for layer in meta["layers"]}
            labels = {a: AttributeLabels(npz[f"y_{a}"], meta["kinds"][a], meta["sources"][a]) for a in ATTRIBUTES}
        return features, labels, {**meta["timings"], "from_cache": True}
    dataset = load_lfw_people(args.data_root, min_images_per_person=1, max_images=args.max_images, seed=args.seed)
    t0 = time.perf_counter()
    labels = collect_labels(dataset, ATTRIBUTES, batch_size=64)
    t_labels = time.perf_counter() - t0
    backbone = create_backbone(args.backbone)
    t0 = time.perf_counter()
    features = LayerCapture(backbone, batch_size=64).capture(dataset)
    t_capture = time.perf_counter() - t0
    timings = {"labels_s": t_labels, "capture_s": t_capture, "n_images": len(dataset), "from_cache": False}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"layers": list(features), "kinds": {a: lab.kind for a, lab in labels.items()},
                "sources": {a: lab.source for a, lab in labels.items()}, "timings": timings}
        arrays = {f"f_{k}": v for k, v in features.items()}
        arrays.update({f"y_{a}": np.asarray(lab.values) for a, lab in labels.items()})
        np.savez(path, meta=json.dumps(meta), **arrays)
    return features, labels, timings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("FACEPROBE_DATA"))
    p.add_argument("--backbone", default="dlib-resnet29")
    p.add_argument("--max-images", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--estimator", default="probe")
    p.add_argument("--jobs", type=int, nargs="*", default=[1, 2],
                   help="process counts to time side by side (none: only fill the cache)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="JSON file for the measurements")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    features, labels, timings = cached_inputs(args)
    n = len(next(iter(features.values())))
    print(f"{n} faces, {len(features)} layers x {len(labels)} attributes; labels {timings['labels_s']:.0f} s, "
          f"capture {timings['capture_s']:.0f} s" + (" (cached earlier)" if timings["from_cache"] else ""))
    runs = []
    for jobs in args.jobs:
        load = load_average()
        t0 = time.perf_counter()
        table = expressivity_sweep(features, labels, estimators=(args.estimator,), n_jobs=jobs)
        wall = time.perf_counter() - t0
        per_attr = table.groupby("attribute")["wall_time_s"].sum().round(1).to_dict()
        runs.append({"jobs": jobs, "estimation_s": wall, "fit_time_by_attribute_s": per_attr,
                     "load_average_before": load, "target_met": wall <= 300})
        print(f"jobs={jobs}: estimation {wall:.1f} s ({'meets' if wall <= 300 else 'misses'} the 300 s target); "
              f"summed fit time by attribute: {per_attr}; load average before {load:.2f}")
        final = table[table["layer"] == table["layer"].iloc[-1]][["attribute", "estimate", "ci_low", "ci_high"]]
        print(final.round(3).to_string(index=False))
    if len(runs) > 1:
        print(f"speed-up jobs={runs[-1]['jobs']} vs jobs={runs[0]['jobs']}: "
              f"{runs[0]['estimation_s'] / runs[-1]['estimation_s']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python benchmarks/expressivity_sweep_speed.py "
                                              + " ".join(argv or sys.argv[1:]), "n_images": n,
                                              "layers": list(features), "inputs": timings, "runs": runs,
                                              "cpu_count": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
