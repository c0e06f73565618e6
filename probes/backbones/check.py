"""Preprocessing self-check: pinned inputs through the public API must give pinned embeddings.

Each backbone with a pinned reference (``probes/backbones/reference/NAME.json``)
embeds three deterministic synthetic images (layouts ``chip`` and ``lfw``)
and, when the shared data are found (``data_root`` or ``$FACEPROBE_DATA``),
two LFW frames (layout ``lfw``) and two UTKFace crops (layout ``utkface``),
all through :meth:`FaceBackbone.embed`. Every embedding must match the
reference to cosine >= 0.9999 with a norm within 0.1%; otherwise the
preprocessing (crop, size, colour order, mean/std) or the weights differ from
what the reference was made with, and the check fails, saying which input.
References store the first 64 dimensions and the full norm of each embedding.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..datasets import DATA_ENV
from ..errors import FaceprobeError
from ..images import load_image
from ..outputs import atomic_write_bytes
from .registry import FaceBackbone, create_backbone

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
class ReferenceInput:
    """One reference input: an id, its layout and the uint8 image (None when unavailable, ``missing`` says why)."""

    key: str
    layout: str
    image: np.ndarray | None
    missing: str = ""


def reference_inputs(data_root: str | Path | None) -> list[ReferenceInput]:
    """The synthetic inputs, then the shared-data ones (without an image where the file is not found)."""
    synth = synthetic_images()
    inputs = [ReferenceInput("synthetic-0", "chip", synth[0]), ReferenceInput("synthetic-1", "lfw", synth[1]),
              ReferenceInput("synthetic-2", "lfw", synth[2])]
    root = Path(data_root) if data_root else (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    for folder, files, layout in (("lfw_home/lfw", LFW_FILES, "lfw"), ("utkface", UTKFACE_FILES, "utkface")):
        for name in files:
            path = root / folder / name if root else None
            key = f"{layout}:{Path(name).name}"
            if path is None or not path.is_file():
                inputs.append(ReferenceInput(key, layout, None, "shared data not found (pass --data-root)"
                                             if root is None else f"{path} not found"))
            else:
                inputs.append(ReferenceInput(key, layout, load_image(path)))
    return inputs


def reference_path(name: str) -> Path:
    return REFERENCE_DIR / f"{name}.json"


def embed_inputs(backbone: FaceBackbone, inputs: list[ReferenceInput]) -> dict[str, np.ndarray]:
    """``{key: float64 embedding}`` of the inputs that have an image."""
    return {p.key: backbone.embed(p.image[None], layout=p.layout)[0].astype(np.float64)
            for p in inputs if p.image is not None}


def write_reference(name: str, data_root=None, weights=None) -> Path:
    """Embed the inputs with the current code and weights and pin the result (maintainers)."""
    torch.manual_seed(0)
    backbone = create_backbone(name, weights=weights)
    inputs = reference_inputs(data_root)
    missing = [p.key for p in inputs if p.image is None]
    if missing:
        raise FaceprobeError(f"writing a reference needs every input; missing {missing}: pass --data-root")
    entries = [{"input": p.key, "layout": p.layout, "norm": float(np.linalg.norm(e)),
                "head": [float(f"{v:.7g}") for v in e[:STORED_DIMS]]}
               for p, e in zip(inputs, embed_inputs(backbone, inputs).values())]
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    path = reference_path(name)
    text = json.dumps({"backbone": name, "weights_id": backbone.weights_id,
                       "embedding_size": backbone.spec.embedding_size, "stored_dims": STORED_DIMS,
                       "torch": torch.__version__, "python": platform.python_version(),
                       "entries": entries}, indent=1) + "\n"
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))
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


def compare_with_reference(entry: dict, embedding: np.ndarray) -> CheckRow:
    """One reference entry against this embedding: cosine over the stored head, ratio of full norms."""
    head = np.asarray(entry["head"], np.float64)
    part = embedding[:len(head)]
    cosine = float(part @ head / (np.linalg.norm(part) * np.linalg.norm(head) + 1e-30))
    ratio = float(np.linalg.norm(embedding) / entry["norm"])
    ok = cosine >= MIN_COSINE and abs(ratio - 1) <= MAX_NORM_ERROR
    return CheckRow(entry["input"], entry["layout"], cosine, ratio, ok)


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
    found = {p.key: p for p in reference_inputs(data_root)}
    embeddings = embed_inputs(backbone, [found[e["input"]] for e in reference["entries"] if e["input"] in found])
    rows = []
    for entry in reference["entries"]:
        key = entry["input"]
        if key in embeddings:
            rows.append(compare_with_reference(entry, embeddings[key]))
        else:
            rows.append(CheckRow(key, entry["layout"], None, None, None,
                                 found[key].missing if key in found else "unknown input"))
    return rows


@dataclass
class BackboneCheck:
    """A backbone's check against its pinned reference: the rows, and whose weights were used."""

    name: str
    rows: list[CheckRow]
    weights_id: str
    reference_weights_id: str | None

    @property
    def failed(self) -> list[CheckRow]:
        return [r for r in self.rows if r.ok is False]

    @property
    def checked(self) -> list[CheckRow]:
        return [r for r in self.rows if r.ok is not None]

    @property
    def passed(self) -> bool:
        """No input embeds differently, and at least one was embedded."""
        return not self.failed and bool(self.checked)

    def report(self) -> str:
        """The check as text: the criterion, one line per input, then PASS or FAIL with the reason."""
        lines = [f"{self.name}: reference {reference_path(self.name).name}; need cosine >= {MIN_COSINE} and norm "
                 f"within {100 * MAX_NORM_ERROR:g}%"]
        if self.reference_weights_id != self.weights_id:
            lines.append(f"  note: weights {self.weights_id[:16]}... differ from the reference's "
                         f"{str(self.reference_weights_id)[:16]}...")
        for r in self.rows:
            if r.ok is None:
                lines.append(f"  {r.input:<48} {r.layout:<8} skipped: {r.note}")
            else:
                lines.append(f"  {r.input:<48} {r.layout:<8} cosine {r.cosine:.6f}  norm ratio {r.norm_ratio:.5f}  "
                             f"{'ok' if r.ok else 'FAIL'}")
        failed, checked = self.failed, self.checked
        if failed:
            lines.append(f"FAIL {self.name}: {len(failed)} of {len(checked)} reference input(s) embed differently "
                         f"({', '.join(r.input for r in failed)}): the preprocessing (crop per layout, input size, "
                         "colour order, mean/std) or the weights are not the ones the reference was made with")
        elif not checked:
            lines.append(f"FAIL {self.name}: no reference input could be embedded")
        else:
            lines.append(f"PASS {self.name}: {len(checked)} reference input(s) match"
                         + (f" ({len(self.rows) - len(checked)} skipped)" if len(checked) < len(self.rows) else ""))
        return "\n".join(lines)


def run_check(name: str, data_root=None, weights=None) -> BackboneCheck:
    """Build backbone ``name`` (with ``weights``, default its pinned files) and check it against its reference."""
    pinned = load_reference(name).get("weights_id")
    backbone = create_backbone(name, weights=weights)
    return BackboneCheck(name, check_backbone(name, data_root, backbone=backbone), backbone.weights_id, pinned)
