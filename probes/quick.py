"""One call for the common question: are these two faces the same person?

>>> import probes
>>> result = probes.verify("a.jpg", "b.jpg", backbone="dlib-resnet29", fmr=1e-3)   # doctest: +SKIP
>>> result.same_person, result.score, result.threshold, result.source.n_impostors  # doctest: +SKIP
>>> templates = probes.embed(["a.jpg", "b.jpg", "c.jpg"], backbone="mobileface")      # doctest: +SKIP

:func:`embed` takes photos as they come (paths or uint8 arrays, any size): each face is detected,
landmarked and aligned onto the backbone's template (:func:`probes.align.detect_and_align`), then
embedded. Pass ``layout=`` for images already cropped for the backbone (``"chip"``) or laid out as
a known dataset (``"lfw"``, ``"utkface"``); then nothing is detected.

:func:`verify` compares two faces at a threshold measured for the backbone at a stated false match
rate (FMR), never guessed. The thresholds are pinned per backbone in
``probes/verification_thresholds.json``, measured by ``experiments/verification_thresholds.py`` on
LFW: every pair of images of different people in a documented subset is an impostor pair, faces
detected and aligned as :func:`embed` does. Each record says on how many impostor pairs it rests
and what FMR it realises there; an FMR that the impostors cannot support (fewer than
:func:`~probes.verification.min_impostors`, 10 / FMR) or that was not measured is refused. A
threshold applies only to the weights it was measured with (their ``weights_id``); for a model you
bring, measure your own with the script and pass ``thresholds=`` its JSON.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .align import DEFAULT_DETECTOR, DetectionOptions, create_detector, detect_and_align
from .backbones import FaceBackbone, create_backbone
from .errors import FaceprobeError, ImageError
from .images import load_image
from .labellers.detector import BoxDetector
from .labellers.landmarks import LandmarkDetector
from .verification import (
    VerificationError,
    cross_identity_scores,
    min_impostors,
    pair_scores,
    realised_fmr,
    same_identity_scores,
    threshold_at_fmr,
    verification_rate,
)

THRESHOLDS_FILE = Path(__file__).with_name("verification_thresholds.json")
THRESHOLDS_SCRIPT = "experiments/verification_thresholds.py"
PINNED_FMRS = (1e-2, 1e-3, 1e-4)
THRESHOLDS_FORMAT = 1
MISSING_FACES = ("raise", "nan")


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class PinnedThreshold:
    """A verification threshold at one FMR and everything it rests on."""

    backbone: str
    fmr: float  # the FMR asked for
    threshold: float  # accept when score >= threshold (scores: cosine, or minus the Euclidean distance)
    metric: str
    n_impostors: int  # impostor pairs the threshold was set on
    impostors_accepted: int
    realised_fmr: float  # share of those impostors at or above the threshold (<= fmr)
    min_impostors: int  # the impostors an FMR of ``fmr`` needs (10 / fmr)
    genuine_accept_rate: float  # of the same-person pairs of the same images (TMR at this FMR)
    n_genuine: int
    dataset: str
    n_images: int
    n_identities: int
    alignment: str
    weights_id: str
    source: str  # the thresholds file
    command: str  # what measured it

    def describe(self) -> str:
        if self.metric == "euclidean":
            return f"L2 <= {-self.threshold:.4f}"
        return f"cos >= {self.threshold:.4f}"

    def __str__(self) -> str:
        return (f"{self.describe()} for {self.backbone} at FMR {self.fmr:g}: set on {self.n_impostors:,} impostor "
                f"pairs of {self.dataset} (realised FMR {self.realised_fmr:.3g}, TMR {self.genuine_accept_rate:.3f} "
                f"on {self.n_genuine:,} genuine pairs)")


def measure_thresholds(templates: np.ndarray, identities, metric: str, fmrs=PINNED_FMRS) -> dict:
    """Thresholds at ``fmrs`` from every cross-identity pair of ``templates`` (the impostors) as a JSON-ready
    record; genuine pairs (same identity) give the TMR at each. An FMR that the impostors cannot support
    (fewer than ``min_impostors(fmr)``, 10 / FMR) raises :class:`VerificationError`."""
    templates = np.asarray(templates)
    identities = np.asarray(identities, dtype=str)
    if templates.ndim != 2 or len(templates) != len(identities):
        raise VerificationError(f"templates must be N x D with one identity each, got {templates.shape} and "
                                f"{len(identities)} identities")
    impostors = cross_identity_scores(templates, identities, metric)
    genuine = same_identity_scores(templates, identities, metric)
    at_fmr = {}
    for fmr in fmrs:
        needed = min_impostors(fmr)
        if len(impostors) < needed:
            raise VerificationError(f"FMR {fmr:g} needs at least {needed:,} impostor pairs (10 / FMR), got "
                                    f"{len(impostors):,} from {len(templates)} images: use more images")
        t = threshold_at_fmr(impostors, fmr)
        at_fmr[f"{fmr:g}"] = {"fmr": float(fmr), "threshold": t, "realised_fmr": realised_fmr(impostors, t),
                              "impostors_accepted": int((impostors >= t).sum()),
                              "impostors_allowed": int(math.floor(fmr * len(impostors))), "min_impostors": needed,
                              "genuine_accept_rate": verification_rate(genuine, t) if len(genuine) else None}
    return {"metric": metric, "n_images": len(templates), "n_identities": len(set(identities)),
            "n_impostors": len(impostors), "n_genuine": len(genuine), "at_fmr": at_fmr}


def backbone_record(backbone: FaceBackbone) -> dict:
    """What a pinned threshold must match in a backbone: its weights and how it is fed."""
    spec = backbone.spec
    return {"weights_id": backbone.weights_id, "metric": spec.verification_metric,
            "input_size": list(spec.input_size), "colour_order": spec.colour_order, "mean": list(spec.mean),
            "std": list(spec.std),
            "align_template": [list(p) for p in spec.align_template] if spec.align_template else None}


def load_thresholds(thresholds: str | Path | dict | None = None) -> dict:
    """A thresholds table: the pinned one (None), a JSON file written by the thresholds script, or a dict."""
    if isinstance(thresholds, dict):
        table, where = thresholds, thresholds.get("source", "the thresholds given")
    else:
        path = Path(thresholds) if thresholds is not None else THRESHOLDS_FILE
        try:
            table = json.loads(path.read_text())
        except FileNotFoundError:
            raise VerificationError(f"thresholds file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise VerificationError(f"thresholds file {path} is not readable JSON: {exc}") from None
        where = str(path)
    if not isinstance(table, dict) or not isinstance(table.get("backbones"), dict):
        raise VerificationError(f"{where} is not a thresholds table (no 'backbones' mapping); write one with "
                                f"python {THRESHOLDS_SCRIPT}")
    if table.get("format", THRESHOLDS_FORMAT) != THRESHOLDS_FORMAT:
        raise VerificationError(f"{where}: thresholds format {table.get('format')!r}, this faceprobe reads format "
                                f"{THRESHOLDS_FORMAT}; re-measure with python {THRESHOLDS_SCRIPT}")
    return {**table, "source": where}


def _entry(table: dict, backbone: FaceBackbone) -> tuple[str, dict]:
    entries = table["backbones"]
    if backbone.name in entries:
        return backbone.name, entries[backbone.name]
    same_weights = [(name, e) for name, e in entries.items() if e.get("weights_id") == backbone.weights_id]
    if same_weights:  # the same network under another name (e.g. a module:function returning a registry net)
        return same_weights[0]
    raise VerificationError(
        f"no pinned verification threshold for backbone {backbone.name!r} in {table['source']} (pinned: "
        f"{', '.join(sorted(entries)) or 'none'}); measure one with python {THRESHOLDS_SCRIPT} --backbones "
        f"'{backbone.name}' --out FILE and pass thresholds=FILE")


def pinned_threshold(backbone: FaceBackbone, fmr: float, thresholds: str | Path | dict | None = None
                     ) -> PinnedThreshold:
    """The pinned threshold of ``backbone`` at ``fmr``; refused (:class:`VerificationError`, naming why)
    when there is none for these weights and preprocessing, when its impostors are fewer than 10 / ``fmr``,
    or when ``fmr`` was not measured."""
    if not isinstance(fmr, (int, float)) or not 0 < fmr < 1:
        raise VerificationError(f"fmr must lie in (0, 1), got {fmr!r}")
    table = load_thresholds(thresholds)
    name, entry = _entry(table, backbone)
    mine = backbone_record(backbone)
    differ = [k for k, v in mine.items() if k in entry and entry[k] != v]
    if differ:
        raise VerificationError(
            f"the pinned threshold of {name!r} in {table['source']} was measured with other "
            f"{', '.join(differ)} than backbone {backbone.name!r} has now (e.g. weights_id "
            f"{str(entry.get('weights_id'))[:12]}... vs {backbone.weights_id[:12]}...); measure this one with "
            f"python {THRESHOLDS_SCRIPT}")
    n = int(entry["n_impostors"])
    needed = min_impostors(fmr)
    if n < needed:
        floor = 10.0 / n if n else float("inf")
        raise VerificationError(
            f"FMR {fmr:g} needs a threshold set on at least {needed:,} impostor pairs (10 / FMR); the {name!r} "
            f"thresholds in {table['source']} rest on {n:,}: ask for FMR >= {floor:.2g}, or measure on more "
            f"images with python {THRESHOLDS_SCRIPT}")
    at = entry.get("at_fmr", {})
    match = [r for r in at.values() if math.isclose(float(r["fmr"]), fmr, rel_tol=1e-9)]
    if not match:
        raise VerificationError(
            f"no threshold of {name!r} at FMR {fmr:g} in {table['source']}; measured FMRs: "
            f"{', '.join(sorted(at, key=float, reverse=True)) or 'none'} (others: python {THRESHOLDS_SCRIPT} "
            f"--fmrs ...)")
    r = match[0]
    gar = r.get("genuine_accept_rate")
    return PinnedThreshold(
        backbone=name, fmr=float(fmr), threshold=float(r["threshold"]), metric=entry["metric"], n_impostors=n,
        impostors_accepted=int(r["impostors_accepted"]), realised_fmr=float(r["realised_fmr"]),
        min_impostors=int(r["min_impostors"]), genuine_accept_rate=float("nan") if gar is None else float(gar),
        n_genuine=int(entry.get("n_genuine", 0)), dataset=str(entry.get("dataset", "?")),
        n_images=int(entry["n_images"]), n_identities=int(entry["n_identities"]),
        alignment=str(entry.get("alignment", "?")), weights_id=str(entry.get("weights_id", "")),
        source=str(table["source"]), command=str(entry.get("command", table.get("command", "?"))))


# --------------------------------------------------------------------------- embed


@functools.lru_cache(maxsize=4)
def cached_backbone(name: str, device: str = "cpu") -> FaceBackbone:
    """``create_backbone(name)`` built once per process (repeated calls of :func:`verify` reuse it)."""
    return create_backbone(name, device=device).requires_grad_(False)


@functools.lru_cache(maxsize=2)
def face_finders(device: str = "cpu") -> tuple[BoxDetector, LandmarkDetector]:
    """The face detector and the 68-landmark net :func:`embed` aligns with, built once per process."""
    return create_detector(DEFAULT_DETECTOR, device=device), LandmarkDetector(device=device)


def as_backbone(backbone: str | FaceBackbone, device: str | torch.device = "cpu") -> FaceBackbone:
    """A FaceBackbone from a name or reference (see :func:`probes.backbones.create_backbone`), or as given."""
    if isinstance(backbone, FaceBackbone):
        return backbone
    if not isinstance(backbone, str):
        raise FaceprobeError(f"backbone must be a name, a reference or a FaceBackbone, got {type(backbone).__name__}")
    return cached_backbone(backbone.strip(), str(torch.device(device)))


def _arrays(images) -> tuple[list[np.ndarray], list | None]:
    if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        images = [images]
    images = list(images)
    if not images:
        raise ImageError("no images given")
    names = [str(im) if isinstance(im, (str, Path)) else None for im in images]
    arrays = [load_image(im) if isinstance(im, (str, Path)) else np.asarray(im) for im in images]
    for i, a in enumerate(arrays):
        if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ImageError(f"image {names[i] or i}: must be a uint8 H x W x 3 RGB array or a path, got "
                             f"{a.dtype} {a.shape}")
    return arrays, names if any(n is not None for n in names) else None


def embed(images, backbone: str | FaceBackbone = "dlib-resnet29", *, layout: str | None = None,
          device: str | torch.device = "cpu", on_missing: str = "raise",
          detection: DetectionOptions | None = None, batch_size: int = 32) -> np.ndarray:
    """Embeddings (N x D float32) of ``images``: one path or uint8 H x W x 3 array, or a list of them
    (sizes may differ), or an N x H x W x 3 array.

    ``layout=None`` (photos as they come): faces are detected, landmarked and aligned onto the backbone's
    template (:func:`probes.align.detect_and_align`; ``detection`` picks the face when there are several:
    by detector score x closeness to the image centre by default), so an image without a face raises
    :class:`~probes.errors.NoFaceError` naming it, or (``on_missing="nan"``) gets a row of NaN with a
    warning. ``layout="chip"`` (already cropped for the backbone), ``"lfw"`` or ``"utkface"``: the
    backbone's crop of that layout, no detection.
    """
    net = as_backbone(backbone, device)
    if on_missing not in MISSING_FACES:
        raise FaceprobeError(f"on_missing must be one of {', '.join(MISSING_FACES)}, got {on_missing!r}")
    arrays, names = _arrays(images)
    if layout is not None:
        net.spec.crop_for(layout)  # an unknown layout names the known ones
        sizes = {a.shape for a in arrays}
        if len(sizes) == 1:
            return net.embed(np.stack(arrays), layout, batch_size=batch_size)
        return np.concatenate([net.embed(a[None], layout) for a in arrays])
    if net.spec.align_template is None:
        raise FaceprobeError(f"backbone {net.name!r} defines no alignment template, so photos cannot be aligned "
                             "for it; pass layout= for images already cropped (e.g. layout='chip')")
    detector, landmarks = face_finders(str(net.device))
    found = detect_and_align(arrays, net, detector=detector, landmarks=landmarks, names=names,
                             on_missing="raise" if on_missing == "raise" else "skip",
                             options=detection or DetectionOptions(batch_size=batch_size))
    out = np.full((len(arrays), net.spec.embedding_size), np.nan, np.float32)
    if len(found.index):
        out[found.index] = net.embed(found.chips, "chip", batch_size=batch_size)
    return out


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Verification:
    """The answer of :func:`verify`: same person or not, the score, and the threshold with its source."""

    same_person: bool
    score: float  # cosine similarity, or minus the Euclidean distance (higher = more alike)
    threshold: float
    fmr: float
    backbone: str
    source: PinnedThreshold  # where the threshold comes from: dataset, impostor pairs, realised FMR

    @property
    def metric(self) -> str:
        return self.source.metric

    def __str__(self) -> str:
        verdict = "same person" if self.same_person else "different people"
        if self.metric == "euclidean":
            score = f"L2 {-self.score:.4f} {'<=' if self.same_person else '>'} {-self.threshold:.4f}"
        else:
            score = f"cos {self.score:.4f} {'>=' if self.same_person else '<'} {self.threshold:.4f}"
        return (f"{verdict}: {score} ({self.backbone} at FMR {self.fmr:g}; threshold from "
                f"{self.source.n_impostors:,} impostor pairs of {self.source.dataset}, realised FMR "
                f"{self.source.realised_fmr:.3g})")


def verify(image_a, image_b, backbone: str | FaceBackbone = "dlib-resnet29", fmr: float = 1e-3, *,
           layout: str | None = None, thresholds: str | Path | dict | None = None,
           device: str | torch.device = "cpu", detection: DetectionOptions | None = None) -> Verification:
    """Whether ``image_a`` and ``image_b`` (paths or uint8 H x W x 3 arrays) show the same person, at the
    backbone's pinned threshold for false match rate ``fmr``.

    The threshold comes from ``thresholds`` (default the pinned table, see the module doc); it is refused
    when it was not measured for these weights, at this FMR, or on at least 10 / ``fmr`` impostor pairs.
    Faces are detected and aligned as :func:`embed` does (``layout=`` for pre-cropped images).
    """
    net = as_backbone(backbone, device)
    pinned = pinned_threshold(net, fmr, thresholds)
    emb = embed([image_a, image_b], net, layout=layout, detection=detection)
    score = float(pair_scores(emb[:1], emb[1:], pinned.metric)[0])
    return Verification(score >= pinned.threshold, score, pinned.threshold, float(fmr), net.name, pinned)

