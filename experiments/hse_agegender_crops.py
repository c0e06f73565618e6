"""How much the crop matters to the ``hse-agegender`` labeller on UTKFace: a tuning sweep.

    python experiments/hse_agegender_crops.py --data-root ../shared/data [--n-tune 1500] \
        [--scales 1.0 1.1 1.2 1.3 1.4 1.5] [--shifts -0.05 0 0.05] [--pads zeros edge]

Tuning faces are a seeded draw (``--seed``) from the UTKFace crops *outside*
the 1,000 that ``experiments/utkface_age_sex.py --n 1000 --seed 0`` evaluates,
so choices made here do not touch that figure. Each crop is square, of side
``scale`` (a fraction of the 200 x 200 aligned crop), centred on the mean face
centre of UTKFace's alignment shifted by ``shift`` (fractions, down is +);
where it reaches past the frame it is padded with zeros (the library's crop
path) or by repeating the edge pixels. The whole aligned crop, the HSE
authors' own UTKFace protocol, is always included. Prints one row per crop:
age MAE for both age read-outs and sex accuracy at P(male) >= 0.6.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from probes.backbones.hse import HSE_AGE, HSE_SEX, HSE_SPEC
from probes.backbones.registry import FaceBackbone
from probes.cli import add_data_root, add_seed, make_parser, run_command
from probes.datasets import load_utkface, subsample_indices
from probes.geometry import images_to_tensor
from probes.labellers.hse import AGE_READOUTS, HSEAgeGenderLabeller
from probes.outputs import atomic_write_bytes

log = logging.getLogger(__name__)

EDGE_PAD = 1.0  # edge padding adds this many image sides on each border


def face_centre() -> tuple[float, float]:
    """Centre (top, left) of the backbone's landmark-matched UTKFace crop: the aligned faces' centre."""
    top, left, height, width = HSE_SPEC.crops["utkface"]
    return top + height / 2, left + width / 2


def tuning_draw(data_root, n_tune: int, seed: int, eval_n: int, eval_seed: int):
    everything = load_utkface(data_root)
    held = {p.name for p in load_utkface(data_root, max_images=eval_n, seed=eval_seed).paths}
    rest = np.array([i for i, p in enumerate(everything.paths) if p.name not in held])
    if n_tune > len(rest):
        raise SystemExit(f"--n-tune {n_tune}: only {len(rest)} crops lie outside the evaluation draw")
    return everything, rest[subsample_indices(len(rest), n_tune, seed)]


def crops_to_try(scales, shifts, pads):
    yield "whole", "zeros", (0.0, 0.0, 1.0, 1.0)
    centre_top, centre_left = face_centre()
    for pad in pads:
        for scale in scales:
            for shift in shifts:
                top, left = centre_top + shift - scale / 2, centre_left - scale / 2
                yield f"scale {scale:.2f} shift {shift:+.2f}", pad, (top, left, scale, scale)


def run_crop(labeller: HSEAgeGenderLabeller, images: torch.Tensor, crop, pad: str, batch: int = 100):
    if pad == "edge":  # the same crop on an edge-padded canvas
        k = EDGE_PAD
        crop = ((crop[0] + k) / (1 + 2 * k), (crop[1] + k) / (1 + 2 * k), crop[2] / (1 + 2 * k), crop[3] / (1 + 2 * k))
    base = labeller.backbone
    backbone = FaceBackbone(dataclasses.replace(base.spec, crops={"utkface": crop}), base.net, base.weights_id)
    probs, p_male = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch]
            if pad == "edge":
                side = round(EDGE_PAD * x.shape[-1])
                x = torch.nn.functional.pad(x, (side, side, side, side), mode="replicate")
            out = backbone.net(backbone.preprocess(x, "utkface"), outputs=[HSE_AGE, HSE_SEX])
            probs.append(out[HSE_AGE])
            p_male.append(out[HSE_SEX][:, 0])
    return torch.cat(probs), torch.cat(p_male).numpy()


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("hse_agegender_crops.py", __doc__)
    add_data_root(parser)
    parser.add_argument("--n-tune", type=int, default=1500)
    add_seed(parser, default=1)
    parser.add_argument("--eval-n", type=int, default=1000, help="size of the evaluation draw kept out")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    parser.add_argument("--shifts", type=float, nargs="+", default=[-0.05, 0.0, 0.05])
    parser.add_argument("--pads", nargs="+", choices=("zeros", "edge"), default=["zeros", "edge"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/hse_agegender_crops.json")
    return parser


def score_crop(labeller: HSEAgeGenderLabeller, images: torch.Tensor, crop, pad: str, age, sex) -> dict:
    """Age MAE of both age read-outs and sex accuracy of ``labeller`` on ``images`` seen through ``crop``."""
    probs, p_male = run_crop(labeller, images, crop, pad)
    row = {}
    for readout in AGE_READOUTS:
        labeller.age_readout = readout
        row[f"age_mae_{readout}"] = float(np.abs(labeller.read_age(probs).numpy() - age).mean())
    labeller.age_readout = "top2"
    row["sex_accuracy"] = float(((p_male < labeller.sex_threshold).astype(int) == sex).mean())
    return row


def run(args: argparse.Namespace) -> None:
    dataset, tune = tuning_draw(args.data_root, args.n_tune, args.seed, args.eval_n, args.eval_seed)
    age, sex = dataset.labels("age")[tune], dataset.labels("sex")[tune]
    images = images_to_tensor(dataset.load_images(tune))
    labeller = HSEAgeGenderLabeller()
    rows = []
    configs = list(crops_to_try(args.scales, args.shifts, args.pads))
    for name, pad, crop in tqdm(configs, desc="crops", unit="crop"):
        row = {"crop": name, "pad": pad, "box": [round(c, 4) for c in crop]}
        rows.append({**row, **score_crop(labeller, images, crop, pad, age, sex)})

    log.info(f"{len(tune)} tuning crops (seed {args.seed}) outside the {args.eval_n}-crop evaluation draw")
    log.info(f"{'crop':26s} {'pad':6s} {'MAE top2':>9s} {'MAE exp':>8s} {'sex':>6s}")
    for r in rows:
        log.info(f"{r['crop']:26s} {r['pad']:6s} {r['age_mae_top2']:9.3f} {r['age_mae_expected']:8.3f} "
                 f"{100 * r['sex_accuracy']:5.1f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python experiments/hse_agegender_crops.py " + " ".join(sys.argv[1:])
    record = {"command": command, "n_tune": len(tune), "seed": args.seed, "weights_id": labeller.weights_id,
              "rows": rows}
    atomic_write_bytes(out, lambda handle: handle.write(json.dumps(record, indent=2).encode()))
    log.info(f"written: {out}")


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
