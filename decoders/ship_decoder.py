"""Ship a trained Deep Face Decoder under a name: ``python -m decoders.ship_decoder RUN --name NAME``.

Writes ``decoders/dfd/weights/NAME.safetensors`` (fp16 decoder weights, the run's config in the file's
metadata; at most 8 MiB, a larger decoder is refused with its size), ``NAME.split.json`` (the run's
train/val/test identities and held-out images, paths relative to the data folder) and the registry
entry: sha256, the training command, steps, minutes, data and licence notes. Then
``python -m decoders.evaluate --checkpoint NAME`` scores it on its held-out people, and
``decoders.load_decoder(NAME)`` loads it.

    python -m decoders.ship_decoder runs/dfd-dlib --name dfd-dlib-resnet29 --description "..."
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probes import cli
from probes.backbones.registry import get_spec
from probes.errors import FaceprobeError
from probes.shipped import DEFAULT_MACHINE, ShippedWeights, finished_run, training_record

from .dfd.shipped import DECODERS, export_decoder

COMMAND = "decoders.ship_decoder"
DATA_TERMS = {
    "lfw": "LFW (press photographs of public figures, for research; the shared copy is grayscale)",
    "utkface": "UTKFace crop_part1 (non-commercial research only)",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderShipConfig:
    run: Path
    name: str
    description: str
    machine: str = DEFAULT_MACHINE


def licence_notes(dataset: str, backbone: str) -> str:
    """The weights' licence and the terms they inherit from the faces and the network they were trained on."""
    data = [DATA_TERMS[d] for d in (("lfw", "utkface") if dataset == "both" else (dataset,)) if d in DATA_TERMS]
    try:
        network = f"the {backbone} templates it inverts: {get_spec(backbone).licence}"
    except FaceprobeError:
        network = f"the {backbone} templates it inverts: that network's own licence"
    return (f"weights: MIT, like faceprobe; trained on {', '.join(data) or dataset}, whose terms the weights "
            f"inherit (research only, no identification); {network}")


def trained_on(config: dict, split_file: str) -> str:
    """One line: the data, its split, the resolution and colour of the faces it draws."""
    data, dec = config["data"], config["decoder"]
    layouts = ", ".join(data.get("layouts", {})) or data.get("dataset", "?")
    colour = "grayscale LFW faces" if data.get("dataset") == "lfw" else "colour faces"
    return (f"{layouts} (shared data): {data.get('n_train')} training and {data.get('n_val')} validation images, "
            f"{colour} at {dec['image_size']} px; the held-out validation and test images (LFW's split by "
            f"identity: its test people were never seen in training) are listed in {split_file}")


def ship(config: DecoderShipConfig) -> ShippedWeights:
    run = Path(config.run)
    run_config, summary = finished_run(run, "python -m decoders.train")
    if not config.name or "/" in config.name or config.name.endswith(".safetensors"):
        raise FaceprobeError(f"--name {config.name!r}: give a plain name such as dfd-dlib-resnet29")
    DECODERS.folder.mkdir(parents=True, exist_ok=True)
    exported = export_decoder(run, DECODERS.folder / f"{config.name}.safetensors")
    trained = exported["config"]
    command, training = training_record(run_config, summary, exported["bytes"], config.machine)
    backbone = trained["backbone"]["name"]
    entry = ShippedWeights(
        name=config.name, kind=exported["kind"], file=f"{config.name}.safetensors", sha256=exported["sha256"],
        description=config.description, trained_on=trained_on(trained, exported["split_file"]), command=command,
        training=training, licence=licence_notes(trained["data"].get("dataset", "?"), backbone),
        extra={"split_file": exported["split_file"], "backbone": trained["backbone"], "decoder": trained["decoder"],
               "loss": trained.get("loss"), "last_validation": summary.get("last_validation")})
    DECODERS.add(entry)
    return entry


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(f"python -m {COMMAND}", __doc__)
    parser.add_argument("run", help="run folder of python -m decoders.train")
    parser.add_argument("--name", required=True, help="name to ship it under (e.g. dfd-dlib-resnet29)")
    parser.add_argument("--description", required=True, help="one line saying what it is")
    parser.add_argument("--machine", default=DEFAULT_MACHINE, help="what it was trained on, for the record")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def run(args) -> int:
        entry = ship(DecoderShipConfig(Path(args.run), args.name, args.description, args.machine))
        log.info(f"shipped {entry.name}: {DECODERS.folder / entry.file} ({entry.training['bytes']} bytes, "
                 f"sha256 {entry.sha256[:12]}...), step {entry.training['steps']}, "
                 f"{entry.training['minutes']} training minutes")
        return 0

    return cli.run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
