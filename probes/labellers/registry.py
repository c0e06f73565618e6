"""Labeller registry: attribute labellers (age, sex, head pose, ...) by name.

A labeller is any object with ``.name``, ``.attributes`` (the keys its
``predict`` returns) and ``.predict(images, layout) -> dict[str, np.ndarray]``
(one value per image). Built-in ones register themselves when
:mod:`probes.labellers` imports them; others may be added with :func:`register_labeller`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import lookup, register


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
    return register(_REGISTRY, spec.name, spec, "labeller")


def list_labellers() -> list[str]:
    return sorted(_REGISTRY)


def get_labeller_spec(name: str) -> LabellerSpec:
    return lookup(_REGISTRY, name, "labeller")


def create_labeller(name: str, **kwargs: Any) -> Labeller:
    """Build labeller ``name`` from local weight files (``weights=``, ``device=``, ``crops=`` ...)."""
    return get_labeller_spec(name).factory(**kwargs)
