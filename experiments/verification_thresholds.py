"""Verification thresholds at fixed false match rates per backbone, on LFW impostor pairs (for ``probes.verify``).

    python experiments/verification_thresholds.py --data-root ../shared/data \
        [--backbones dlib-resnet29 hse-mobilenet-vggface2 mobileface] [--max-images 2000] [--per-person 4] \
        [--fmrs 1e-2 1e-3 1e-4] [--out results/verification_thresholds/lfw_subset.json] [--pin]

The images: a seeded subset of LFW people with at least two images, at most ``--per-person`` images each
(so a few people with hundreds of images do not make up most pairs), people drawn until ``--max-images``.
Each image goes through what ``probes.embed`` does with a photo: face detected (the one nearest the frame's
centre: LFW frames centre their subject), 68 landmarks, five-point alignment onto each backbone's template
(one detection serves every backbone), embedding. Images without a detected face are left out and counted.

Impostors: every unordered pair of subset images of different people (``probes.verification``'s
cross-identity population); a threshold at FMR f needs at least 10 / f of them or the script refuses.
Genuine pairs (every pair of images of one person) give the TMR at each threshold. Writes ``--out``;
``--pin`` also merges the backbones measured into ``probes/verification_thresholds.json``, the table
``probes.verify`` reads (only for registry names: a reference's weights are the user's).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from probes.align import DEFAULT_SELECT, FaceAligner
from probes.backbones import create_backbone, list_backbones
from probes.cli import add_data_root, make_parser, run_command
from probes.datasets import load_lfw_people
from probes.errors import FaceprobeError
from probes.images import load_image
from probes.outputs import atomic_write_bytes, provenance
from probes.quick import (
    PINNED_FMRS,
    THRESHOLDS_FILE,
    THRESHOLDS_FORMAT,
    backbone_record,
    face_finders,
    measure_thresholds,
)

log = logging.getLogger(__name__)

DEFAULT_BACKBONES = ("dlib-resnet29", "hse-mobilenet-vggface2", "mobileface")
SELECT = "centre"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("verification_thresholds.py", __doc__)
    add_data_root(p)
    p.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES),
                   help="registry names or references (module:function, file.py:function, model.onnx)")
    p.add_argument("--max-images", type=int, default=2000, help="images in the subset")
    p.add_argument("--per-person", type=int, default=4, help="at most this many images of one person")
    p.add_argument("--seed", type=int, default=0, help="which people and images are drawn")
    p.add_argument("--fmrs", nargs="+", type=float, default=list(PINNED_FMRS), help="false match rates")
    p.add_argument("--batch-size", type=int, default=64, help="images per chunk (detection, alignment, embedding)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--out", default="results/verification_thresholds/lfw_subset.json", help="where to write the JSON")
    p.add_argument("--pin", action="store_true", help=f"also merge the registry backbones into {THRESHOLDS_FILE.name}")
    return p


def lfw_subset(data_root, max_images: int, per_person: int, seed: int) -> tuple[list[Path], np.ndarray, dict]:
    """Paths and identities of the subset, and its description."""
    if max_images < 4 or per_person < 2:
        raise FaceprobeError(f"--max-images must be >= 4 and --per-person >= 2, got {max_images} and {per_person}")
    people = load_lfw_people(data_root, min_images_per_person=2)
    ids = np.asarray(people.labels("identity"), dtype=str)
    rng = np.random.default_rng(seed)
    names = np.unique(ids)
    chosen: list[int] = []
    n_people = 0
    for name in rng.permutation(names):
        if len(chosen) >= max_images:
            break
        rows = np.flatnonzero(ids == name)
        take = np.sort(rng.choice(rows, min(per_person, len(rows), max_images - len(chosen)), replace=False))
        if len(take) < 2:
            break  # a person with one image adds no genuine pair
        chosen += take.tolist()
        n_people += 1
    about = {"dataset": f"LFW (shared grayscale copy): {len(chosen):,} images of {n_people:,} people with >= 2 LFW "
                        f"images, <= {per_person} each (seed {seed})",
             "people_with_2_or_more_images": int(len(names)), "images_of_those_people": int(len(ids))}
    return [people.paths[i] for i in chosen], ids[chosen], about


def measure(args: argparse.Namespace, command: str) -> dict:
    paths, ids, about = lfw_subset(args.data_root, args.max_images, args.per_person, args.seed)
    backbones = {name: create_backbone(name).requires_grad_(False) for name in args.backbones}
    detector, landmarks = face_finders("cpu")
    first = next(iter(backbones.values()))
    finder = FaceAligner.for_backbone(first, landmarks=landmarks, detector=detector)
    aligners = {name: FaceAligner.for_backbone(b, landmarks=landmarks, detector=detector)
                for name, b in backbones.items()}
    templates = {name: [] for name in backbones}
    kept_ids, missing, seconds = [], [], {"detect_s": 0.0, **{f"{name}_s": 0.0 for name in backbones}}
    start = time.time()
    for lo in range(0, len(paths), args.batch_size):
        chunk = paths[lo:lo + args.batch_size]
        frames = [load_image(p) for p in chunk]
        t0 = time.time()
        found = finder.align_unaligned(frames, select=SELECT, on_missing="skip", names=[str(p) for p in chunk])
        seconds["detect_s"] += time.time() - t0
        missing += [str(Path(m).relative_to(Path(m).parents[1])) for m in found.missing_names]  # Person/file.jpg
        kept = [frames[i] for i in found.index]
        kept_ids += ids[lo:lo + args.batch_size][found.index].tolist()
        for name, net in backbones.items():
            t0 = time.time()
            chips = aligners[name].align_landmarked(kept, found.landmarks)
            templates[name].append(net.embed(chips, "chip", batch_size=args.batch_size))
            seconds[f"{name}_s"] += time.time() - t0
        done = min(lo + args.batch_size, len(paths))
        log.info(f"{done}/{len(paths)} images, {len(missing)} without a face, {time.time() - start:.0f} s")
    kept_ids = np.asarray(kept_ids, dtype=str)
    alignment = (f"probes.align: {type(detector).__name__} ({SELECT} face), 68 landmarks, five-point similarity "
                 f"onto the backbone's template (as probes.embed; probes.embed picks by {DEFAULT_SELECT!r} by default)")
    out = {}
    for name, net in backbones.items():
        record = measure_thresholds(np.concatenate(templates[name]), kept_ids, net.spec.verification_metric, args.fmrs)
        out[name] = {**backbone_record(net), **record, "dataset": about["dataset"], "alignment": alignment,
                     "n_faces_missed": len(missing), "seconds": round(seconds[f"{name}_s"], 1)}
        for key, r in record["at_fmr"].items():
            log.info(f"{name:<24} FMR {key:<7} threshold {r['threshold']:+.4f}  realised FMR {r['realised_fmr']:.2e}  "
                     f"TMR {r['genuine_accept_rate']:.4f}  ({record['n_impostors']:,} impostor pairs)")
    return {"format": THRESHOLDS_FORMAT, "command": command,
            **about, "faces_missed": missing, "detect_s": round(seconds["detect_s"], 1),
            "impostors": "every unordered pair of subset images of different people (cross-identity)",
            "genuine": "every unordered pair of subset images of the same person",
            "provenance": provenance(), "backbones": out}


def write_json(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda handle: handle.write((json.dumps(table, indent=1) + "\n").encode()))
    log.info(f"wrote {path}")


def pin(table: dict) -> None:
    """Merge the registry backbones of ``table`` into the package's thresholds file."""
    registered = set(list_backbones())
    pinned = json.loads(THRESHOLDS_FILE.read_text()) if THRESHOLDS_FILE.is_file() else {"backbones": {}}
    header = {k: v for k, v in table.items() if k not in ("backbones", "faces_missed")}
    for name, entry in table["backbones"].items():
        if name in registered:
            pinned["backbones"][name] = {**entry, "command": header["command"], "measured": header}
    pinned.update({"format": THRESHOLDS_FORMAT, "about": "verification thresholds at fixed FMRs per backbone; "
                   "written by experiments/verification_thresholds.py --pin; read by probes.verify"})
    write_json(THRESHOLDS_FILE, pinned)


def main(argv=None) -> int:
    def run(args: argparse.Namespace) -> None:
        table = measure(args, "python experiments/verification_thresholds.py " + " ".join(
            sys.argv[1:] if argv is None else argv))
        write_json(Path(args.out), table)
        if args.pin:
            pin(table)

    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
