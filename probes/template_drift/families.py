"""Perturbation families: their units and valid strengths, occlusion positions, and face points."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..backbones.registry import FaceBackbone
from ..errors import FaceprobeError, UnknownNameError


class PerturbationError(FaceprobeError, ValueError):
    """Perturbation arguments that cannot be used, or templates that are not finite."""


@dataclass(frozen=True)
class Family:
    """One kind of perturbation: its unit, valid strengths and the strength that changes nothing."""

    name: str
    unit: str
    default_strengths: tuple[float, ...]
    low: float
    high: float
    identity: float
    adversarial: bool
    description: str

    def check(self, strengths, input_side: int | None = None) -> list[float]:
        """``strengths`` (default: :attr:`default_strengths`) as floats, or a clear error."""
        if strengths is None:
            return [float(s) for s in self.default_strengths]
        if isinstance(strengths, (int, float, np.number)):
            strengths = [strengths]
        try:
            values = [float(s) for s in strengths]
        except (TypeError, ValueError):
            raise PerturbationError(f"{self.name} strengths must be numbers ({self.unit}), got {strengths!r}") from None
        if not values:
            raise PerturbationError(f"no strengths given for {self.name}; e.g. {_fmt(self.default_strengths)}")
        high = self.high if input_side is None or self.name != "translation" else min(self.high, input_side)
        bad = [v for v in values if not (math.isfinite(v) and self.low <= v <= high)]
        if self.name == "scaling":
            bad += [v for v in values if v == 0 and v not in bad]
        if bad:
            low = f"{self.low:g}" if self.name != "scaling" else f"{self.low:g} (exclusive)"
            raise PerturbationError(
                f"invalid {self.name} strength(s) {_fmt(bad)}: valid strengths lie in [{low}, {high:g}] "
                f"({self.unit}); defaults: {_fmt(self.default_strengths)}")
        return values


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


_EPS = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)
FAMILIES: Mapping[str, Family] = {f.name: f for f in (
    Family("rotation", "degrees", (0, 5, 10, 20, 30, 45), 0, 180, 0, False,
           "in-plane rotation about the centre of the view; direction drawn per image"),
    Family("translation", "pixels of the network input", (0, 5, 10, 15, 20, 30), 0, 10_000, 0, False,
           "shift of the view; direction drawn per image"),
    Family("scaling", "zoom factor", (0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5), 0, 10, 1, False,
           "zoom about the centre of the view (1 = unchanged, < 1 shrinks the face)"),
    Family("occlusion", "fraction of the input side", (0, 0.1, 0.2, 0.3, 0.4), 0, 1, 0, False,
           "square patch(es) of this side centred on a face point (see positions)"),
    Family("noise", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, False,
           "random +/-eps on every pixel (clipped to [0, 1]): the attacks' random baseline"),
    Family("fgsm", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, True,
           "one signed-gradient step pushing the template away from the clean one"),
    Family("pgd", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, True,
           "signed-gradient ascent of the drift from a random start; best of its iterates and the FGSM point"),
)}
OCCLUSION_POSITIONS = ("eyes", "left_eye", "right_eye", "nose", "mouth", "centre", "random")
DEFAULT_POSITIONS = ("eyes", "nose", "mouth", "random")
PADDINGS = ("zeros", "border", "reflection")
PGD_STARTS = ("fgsm", "random")
# Face points as fractions of the input (x, y) when a backbone defines no align_template.
_FALLBACK_POINTS = {"left_eye": (0.33, 0.33), "right_eye": (0.67, 0.33), "nose": (0.5, 0.52), "mouth": (0.5, 0.68)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown perturbation family {name!r}; valid families: "
                               f"{', '.join(FAMILIES)}") from None


def describe_families() -> str:
    """One line per family: name, unit, default strengths, what it does."""
    return "\n".join(f"{f.name:<12} {f.unit:<32} defaults {_fmt(f.default_strengths):<36} {f.description}"
                     for f in FAMILIES.values())


def check_positions(positions) -> list[str]:
    """Occlusion positions (default :data:`DEFAULT_POSITIONS`), or an error listing valid ones."""
    if positions is None:
        return list(DEFAULT_POSITIONS)
    if isinstance(positions, str):
        positions = [positions]
    positions = list(dict.fromkeys(positions))
    bad = [p for p in positions if p not in OCCLUSION_POSITIONS]
    if bad or not positions:
        raise UnknownNameError(f"unknown occlusion position(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                               f"valid positions: {', '.join(OCCLUSION_POSITIONS)}")
    return positions


def face_points(backbone: FaceBackbone) -> dict[str, tuple[float, float]]:
    """Eye, nose and mouth centres (x, y) in pixels of the network input.

    From the backbone's ``align_template`` (left eye, right eye, nose tip,
    mouth corners) where it has one, else typical positions in an aligned chip.
    """
    h, w = backbone.spec.input_size
    t = backbone.spec.align_template
    if t is not None and len(t) >= 5:
        pts = {"left_eye": t[0], "right_eye": t[1], "nose": t[2],
               "mouth": ((t[3][0] + t[4][0]) / 2, (t[3][1] + t[4][1]) / 2)}
        return {k: (float(x), float(y)) for k, (x, y) in pts.items()}
    return {k: (fx * w, fy * h) for k, (fx, fy) in _FALLBACK_POINTS.items()}

