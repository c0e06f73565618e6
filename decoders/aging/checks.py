"""Checks shared by the aging GANs and the age classifier: one wording for one rule.

Config fields (:func:`require_positive_ints`, :func:`require_non_negative_ints`,
:func:`require_finite_non_negative`, :func:`require_adam_ranges`), the faces a GAN
trains on (:func:`check_training_faces`) and checkpoints (:func:`check_kind`,
:func:`check_same_config`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from probes.training.checkpoints import CheckpointError

from .data import AgingFaces
from .groups import AgeGroups, AgingError


def require_positive_ints(owner: str, config, names: Iterable[str]) -> None:
    """AgingError ``"{owner} {name} must be a positive integer"`` for the first field of ``names`` that is not."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise AgingError(f"{owner} {name} must be a positive integer, got {value!r}")


def require_non_negative_ints(owner: str, config, names: Iterable[str]) -> None:
    """AgingError ``"{owner} {name} must be an integer >= 0"`` for the first field of ``names`` that is not."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 0:
            raise AgingError(f"{owner} {name} must be an integer >= 0, got {value!r}")


def require_finite_non_negative(owner: str, config, names: Iterable[str]) -> None:
    """AgingError ``"{owner} {name} must be a finite number >= 0"`` for the first field of ``names`` that is not."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise AgingError(f"{owner} {name} must be a finite number >= 0, got {value!r}")


def require_adam_ranges(owner: str, config) -> None:
    """``beta1``, ``beta2`` and ``ema_decay`` of ``config`` in [0, 1)."""
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1 and 0 <= config.ema_decay < 1):
        raise AgingError(f"{owner} beta1, beta2 and ema_decay must lie in [0, 1)")


def check_training_faces(faces: AgingFaces, groups: AgeGroups, config) -> None:
    """The faces a GAN of ``config`` (named by its ``config_name``) trains on: its age groups and image size."""
    if faces.groups != groups:
        raise AgingError(f"{config.config_name} trains on {groups.name!r} groups, the faces are grouped as "
                         f"{faces.groups.name!r}")
    if faces.image_size != config.image_size:
        raise AgingError(f"faces are {faces.image_size}x{faces.image_size}, the config says {config.image_size}")


def check_kind(state: dict, kind: str, expected: str) -> None:
    """CheckpointError ``"{path} holds a {kind!r} run, not {expected}"`` unless the checkpoint is of ``kind``."""
    if state.get("kind") != kind:
        raise CheckpointError(f"{state.get('path', '<checkpoint>')} holds a {state.get('kind')!r} run, "
                              f"not {expected}")


def check_same_config(checkpoint: dict, config) -> None:
    """A resumed run keeps its model config: CheckpointError when the checkpoint's differs from ``config``."""
    theirs = checkpoint.get("config", {}).get("model")
    if theirs != config.to_dict():
        raise CheckpointError(f"{checkpoint['path']}: its {config.config_name} config {theirs} differs from "
                              f"this run's {config.to_dict()}")
