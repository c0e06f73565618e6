"""Preprocessing self-check: pinned inputs through the public API must give pinned embeddings.

    python -m probes.backbones list
    python -m probes.backbones check NAME [NAME ...] [--data-root DIR] [--weights PATH]
    python -m probes.backbones check NAME --write-reference      # maintainers only

Each backbone with a pinned reference (``probes/backbones/reference/NAME.json``)
embeds three deterministic synthetic images (layouts ``chip`` and ``lfw``)
and, when the shared data are found (``--data-root`` or ``$FACEPROBE_DATA``),
two LFW frames (layout ``lfw``) and two UTKFace crops (layout ``utkface``),
all through :meth:`FaceBackbone.embed`. Every embedding must match the
reference to cosine >= 0.9999 with a norm within 0.1%; otherwise the
preprocessing (crop, size, colour order, mean/std) or the weights differ from
what the reference was made with, and the check fails, saying which input.
References store the first 64 dimensions and the full norm of each embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FaceprobeError
from ..images import load_image
from .registry import create_backbone, get_spec, list_backbones

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
MIN_COSINE = 0.9999
MAX_NORM_ERROR = 1e-3
STORED_DIMS = 64
SYNTHETIC_SIZE = 250
LFW_FILES = ("George_W_Bush/George_W_Bush_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg")
UTKFACE_FILES = ("100_1_0_20170110183726390.jpg.chip.jpg", "10_0_0_20161220222308131.jpg.chip.jpg")


def synthetic_images(size: int = SYNTHETIC_SIZE) -> np.ndarray:
    """Three deterministic uint8 RGB images: smooth colour waves with a bright oval (a crude 'face')."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    images = []
    for k in range(3):
        waves = np.stack([np.sin(2 * np.pi * ((k + 1) * xx + 0.5 * yy)), np.cos(2 * np.pi * (yy - 0.3 * k * xx)),
                          np.sin(2 * np.pi * (1 + k) * xx * yy)], axis=-1)
        oval = np.exp(-(((xx - 0.5) / (0.18 + 0.02 * k)) ** 2 + ((yy - 0.52) / 0.25) ** 2))[..., None]
        image = 100 + 60 * waves + 90 * oval
        images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
    return np.stack(images)


@dataclass
class Probe:
    """One reference input: an id, its layout and the uint8 image (None when unavailable)."""

    key: str
    layout: str
    image: np.ndarray | None
    missing: str = ""


def reference_probes(data_root: str | Path | None) -> list[Probe]:

    synth = synthetic_images()
    probes = [Probe("synthetic-0", "chip", synth[0]), Probe("synthetic-1", "lfw", synth[1]),
              Probe("synthetic-2", "lfw", synth[2])]
    root = Path(data_root) if data_root else (Path(os.environ["FACEPROBE_DATA"]) if os.environ.get("FACEPROBE_DATA")
                                              else None)
    for folder, files, layout in (("lfw_home/lfw", LFW_FILES, "lfw"), ("utkface", UTKFACE_FILES, "utkface")):
        for name in files:
            path = root / folder / name if root else None
            key = f"{layout}:{Path(name).name}"
            if path is None or not path.is_file():
                probes.append(Probe(key, layout, None, "shared data not found (pass --data-root)" if root is None
                                    else f"{path} not found"))
            else:
                probes.append(Probe(key, layout, load_image(path)))
    return probes


def reference_path(name: str) -> Path:
    return REFERENCE_DIR / f"{name}.json"


def embed_probes(backbone, probes: list[Probe]) -> dict[str, np.ndarray]:
    return {p.key: backbone.embed(p.image[None], layout=p.layout)[0].astype(np.float64)
            for p in probes if p.image is not None}


def write_reference(name: str, data_root=None, weights=None) -> Path:
    """Embed the probes with the current code and weights and pin the result (maintainers)."""
    torch.manual_seed(0)
    backbone = create_backbone(name, weights=weights)
    probes = reference_probes(data_root)
    missing = [p.key for p in probes if p.image is None]
    if missing:
        raise FaceprobeError(f"writing a reference needs every input; missing {missing}: pass --data-root")
    entries = [{"input": p.key, "layout": p.layout, "norm": float(np.linalg.norm(e)),
                "head": [float(f"{v:.7g}") for v in e[:STORED_DIMS]]}
               for p, e in zip(probes, embed_probes(backbone, probes).values())]
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    path = reference_path(name)
    path.write_text(json.dumps({"backbone": name, "weights_id": backbone.weights_id,
                                "embedding_size": backbone.spec.embedding_size, "stored_dims": STORED_DIMS,
                                "torch": torch.__version__, "python": platform.python_version(),
                                "entries": entries}, indent=1) + "\n")
    return path


def load_reference(name: str) -> dict:
    path = reference_path(name)
    if not path.is_file():
        raise FaceprobeError(f"backbone {name!r} has no pinned reference ({path}); references exist for: "
                             f"{', '.join(sorted(p.stem for p in REFERENCE_DIR.glob('*.json')))}")
    return json.loads(path.read_text())


@dataclass
class CheckRow:
    input: str
    layout: str
    cosine: float | None
    norm_ratio: float | None
    ok: bool | None  # None = skipped
    note: str = ""


def check_backbone(name: str, data_root=None, weights=None, backbone=None,
                   inputs: Sequence[str] | None = None) -> list[CheckRow]:
    """Compare ``backbone`` (default: ``create_backbone(name, weights)``) with the pinned reference.

    ``inputs`` restricts the check to these reference inputs (e.g. ``"synthetic-0"``).
    """
    reference = load_reference(name)
    if inputs is not None:
        unknown = sorted(set(inputs) - {e["input"] for e in reference["entries"]})
        if unknown:
            raise FaceprobeError(f"unknown reference input(s) {unknown}; the reference of {name!r} has: "
                                 f"{', '.join(e['input'] for e in reference['entries'])}")
        reference["entries"] = [e for e in reference["entries"] if e["input"] in inputs]
    if backbone is None:
        backbone = create_backbone(name, weights=weights)
    probes = {p.key: p for p in reference_probes(data_root)}
    embeddings = embed_probes(backbone, [probes[e["input"]] for e in reference["entries"] if e["input"] in probes])
    rows = []
    for entry in reference["entries"]:
        key = entry["input"]
        if key not in embeddings:
            rows.append(CheckRow(key, entry["layout"], None, None, None,
                                 probes[key].missing if key in probes else "unknown input"))
            continue
        mine = embeddings[key]
        head = np.asarray(entry["head"], np.float64)
        part = mine[:len(head)]
        cosine = float(part @ head / (np.linalg.norm(part) * np.linalg.norm(head) + 1e-30))
        ratio = float(np.linalg.norm(mine) / entry["norm"])
        ok = cosine >= MIN_COSINE and abs(ratio - 1) <= MAX_NORM_ERROR
        rows.append(CheckRow(key, entry["layout"], cosine, ratio, ok))
    return rows


def _run_check(name: str, args) -> bool:
    pinned = load_reference(name).get("weights_id")
    backbone = create_backbone(name, weights=args.weights)
    rows = check_backbone(name, args.data_root, backbone=backbone)
    print(f"{name}: reference {reference_path(name).name}; need cosine >= {MIN_COSINE} and norm within "
          f"{100 * MAX_NORM_ERROR:g}%")
    if pinned != backbone.weights_id:
        print(f"  note: weights {backbone.weights_id[:16]}... differ from the reference's {str(pinned)[:16]}...")
    for r in rows:
        if r.ok is None:
            print(f"  {r.input:<48} {r.layout:<8} skipped: {r.note}")
        else:
            print(f"  {r.input:<48} {r.layout:<8} cosine {r.cosine:.6f}  norm ratio {r.norm_ratio:.5f}  "
                  f"{'ok' if r.ok else 'FAIL'}")
    failed = [r for r in rows if r.ok is False]
    checked = [r for r in rows if r.ok is not None]
    if failed:
        print(f"FAIL {name}: {len(failed)} of {len(checked)} reference input(s) embed differently "
              f"({', '.join(r.input for r in failed)}): the preprocessing (crop per layout, input size, colour "
              "order, mean/std) or the weights are not the ones the reference was made with")
        return False
    if not checked:
        print(f"FAIL {name}: no reference input could be embedded")
        return False
    print(f"PASS {name}: {len(checked)} reference input(s) match"
          + (f" ({len(rows) - len(checked)} skipped)" if len(checked) < len(rows) else ""))
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probes.backbones", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered backbones and whether a reference is pinned")
    p_check = sub.add_parser("check", help="compare embeddings of pinned inputs with the pinned reference")
    p_check.add_argument("names", nargs="+", metavar="NAME")
    p_check.add_argument("--data-root", default=None, help="folder holding lfw_home/ and utkface/ "
                                                           "(default $FACEPROBE_DATA)")
    p_check.add_argument("--weights", default=None, help="weight file to check instead of the pinned one")
    p_check.add_argument("--threads", type=int, default=1)
    p_check.add_argument("--write-reference", action="store_true",
                         help="(maintainers) embed the inputs now and overwrite the pinned reference")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in list_backbones():
            spec = get_spec(name)
            ref = "reference pinned" if reference_path(name).is_file() else "no reference"
            print(f"{name:<26} {spec.input_size[0]}x{spec.input_size[1]} {spec.colour_order} "
                  f"{spec.embedding_size:>5}-D  {ref}")
        return 0
    torch.set_num_threads(args.threads)
    ok = True
    for name in args.names:
        try:
            if args.write_reference:
                print(f"wrote {write_reference(name, args.data_root, args.weights)}")
            else:
                ok &= _run_check(name, args)
        except FaceprobeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
