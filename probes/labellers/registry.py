"""Labeller registry: attribute labellers (age, sex, head pose, ...) by name.

A labeller is any object with ``.name``, ``.attributes`` (the keys its
``predict`` returns) and ``.predict(images, layout) -> dict[str, np.ndarray]``
(one value per image). Built-in ones register on first use; others may be
added with :func:`register_labeller`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import UnknownNameError


@runtime_checkable
class Labeller(Protocol):
    name: str
    attributes: tuple[str, ...]

    def predict(self, images, layout: str = "chip") -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class LabellerSpec:
    name: str
    factory: Callable[..., Labeller]  # keyword arguments: weights, device, crops, ...
    attributes: tuple[str, ...]
    description: str
    source: str
    licence: str


_REGISTRY: dict[str, LabellerSpec] = {}


def register_labeller(spec: LabellerSpec) -> LabellerSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"labeller {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtin() -> None:
    if "faceapi-agegender" in _REGISTRY:
        return
    from .age_gender import AgeGenderLabeller
    from .pose import HeadPoseEstimator

    register_labeller(LabellerSpec(
        "faceapi-agegender", AgeGenderLabeller, AgeGenderLabeller.attributes,
        "age (years, regression) and sex (P(male); sex 0 = male, 1 = female) from face-api.js's AgeGenderNet",
        "AgeGenderNet (TinyXception) via @vladmandic/face-api@1.7.15", "MIT"))
    register_labeller(LabellerSpec(
        "faceapi-headpose", HeadPoseEstimator, HeadPoseEstimator.attributes,
        "estimated yaw/pitch/roll (degrees) from FaceLandmark68Net's 68 points and a weak-perspective PnP "
        "against insightface's 3D mean face; positive yaw = face turned to its own left",
        "FaceLandmark68Net via @vladmandic/face-api@1.7.15; meanshape_68.pkl from insightface", "MIT"))
    from . import hse  # noqa: F401  (registers "hse-agegender" on import)


def list_labellers() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_labeller_spec(name: str) -> LabellerSpec:
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown labeller {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def create_labeller(name: str, **kwargs: Any) -> Labeller:
    """Build labeller ``name`` from local weight files (``weights=``, ``device=``, ``crops=`` ...)."""
    return get_labeller_spec(name).factory(**kwargs)
