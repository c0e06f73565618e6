"""Ship a trained aging GAN under a name: ``python -m decoders.aging.ship RUN --name NAME``.

Writes ``decoders/aging/weights/NAME.safetensors`` (fp16, only the networks that age a face; at most
8 MB), ``NAME.heldout.txt`` (the UTKFace files the run held out of training, which the audit judges it
on) and the registry entry: sha256, the training command, steps, minutes, data and licence notes.
Then ``python -m decoders.audit --generator NAME`` audits it.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from probes.cli import add_data_root, make_parser, run_command
from probes.errors import FaceprobeError
from probes.shipped import ShippedWeights, finished_run, training_record

from .data import load_aging_faces
from .groups import AgeGroups
from .shipped import GENERATORS, export_generator

log = logging.getLogger(__name__)

LICENCE = ("weights: MIT, like faceprobe; trained on UTKFace, whose images are for non-commercial research "
           "only; the frozen networks of the losses keep their own licences (face-api.js MIT, dlib Boost)")


@dataclass(frozen=True)
class ShipConfig:
    run: Path
    name: str
    description: str
    data_root: str | None = None


def heldout_names(run: Path, groups: AgeGroups, data_root: str | None) -> tuple[list[str], dict]:
    """File names of the faces ``run`` held out of training (as its ``config.json`` lists them, or its
    split re-drawn as training drew it for a run that does not list them), and that ``config.json``."""
    record = json.loads((run / "config.json").read_text())
    if record["data"].get("val_paths"):
        return sorted(record["data"]["val_paths"]), record
    settings = record["cli"]
    faces = load_aging_faces(groups, int(record["model"]["image_size"]), data_root or record["data"]["data_root"],
                             settings["max_images"], seed=settings["seed"], progress=False)
    fraction = settings["val_fraction"]
    if not fraction:
        raise FaceprobeError(f"{run} held no faces out of training (val_fraction 0): nothing to audit it on")
    val = faces.split((1 - fraction, fraction), seed=settings["seed"])[1]
    if len(val) != record["data"]["n_val"]:
        raise FaceprobeError(f"{run}: re-drawing its split gives {len(val)} held-out faces, the run recorded "
                             f"{record['data']['n_val']} (different data under --data-root?)")
    return sorted(Path(p).name for p in val.paths), record


def ship(config: ShipConfig) -> ShippedWeights:
    run = Path(config.run)
    _, summary = finished_run(run, "python -m decoders.aging.train")
    GENERATORS.folder.mkdir(parents=True, exist_ok=True)
    exported = export_generator(run, GENERATORS.folder / f"{config.name}.safetensors")
    trained = exported["config"]
    names, record = heldout_names(run, AgeGroups.from_dict(trained["groups"]), config.data_root)
    heldout = f"{config.name}.heldout.txt"
    (GENERATORS.folder / heldout).write_text("\n".join(names) + "\n")
    data = record["data"]
    command, training = training_record(record, summary, exported["bytes"])
    entry = ShippedWeights(
        name=config.name, kind=exported["kind"], file=f"{config.name}.safetensors", sha256=exported["sha256"],
        description=config.description,
        trained_on=(f"UTKFace crop_part1 (shared data), {data['n_train']} faces in the {trained['groups']['name']} "
                    f"age groups at {data['image_size']} px; {data['n_val']} held out (listed in {heldout})"),
        command=command, training=training, licence=LICENCE,
        extra={"heldout_file": heldout, "model": record["model"], "identity": trained.get("identity"),
               "age_reader": trained.get("age_reader")})
    GENERATORS.add(entry)
    return entry


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m decoders.aging.ship", __doc__)
    parser.add_argument("run", help="run folder of python -m decoders.aging.train")
    parser.add_argument("--name", required=True, help="name to ship it under (e.g. ipcgan-utkface)")
    parser.add_argument("--description", required=True, help="one line saying what it is")
    add_data_root(parser)
    return parser


def main(argv=None) -> int:
    def run(args) -> int:
        entry = ship(ShipConfig(Path(args.run), args.name, args.description, args.data_root))
        log.info(f"shipped {entry.name}: {GENERATORS.folder / entry.file} ({entry.training['bytes']} bytes, "
                 f"sha256 {entry.sha256[:12]}...), step {entry.training['steps']}")
        return 0

    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
