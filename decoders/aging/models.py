"""Load any trained aging GAN: :func:`load_aging_model` dispatches on the checkpoint's ``kind``.

:data:`MODELS` maps a GAN's name (= its checkpoints' ``kind``) to the module
that trains and loads it. Such a module provides:

- ``KIND`` (str) and ``GROUPS`` (:class:`~decoders.aging.groups.AgeGroups`);
- ``Config``: a frozen dataclass with ``to_dict`` / ``from_dict``, fields
  ``image_size`` and ``identity_backbone``, and properties ``uses_identity`` /
  ``uses_age_classifier`` (plus ``classifier_steps`` / ``classifier_width``
  when it uses the classifier);
- ``build_task(config, *, train, val, identity, age_classifier, device, info)``
  -> a :class:`~probes.training.TrainTask` (used by ``python -m decoders.aging.train``);
- ``from_checkpoint(state, device)`` -> an object meeting
  :class:`~decoders.aging.groups.AgingModel` with an ``identity_backbone`` name.

Adding a GAN = one entry here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from probes.errors import UnknownNameError
from probes.training.checkpoints import CheckpointError, load_checkpoint

from .groups import AgingModel
from .shipped import GENERATORS, generator_state

MODELS: dict[str, str] = {
    "ipcgan": "decoders.aging.ipcgan",
    "agecgan": "decoders.aging.agecgan",
}


def gan_module(name: str) -> ModuleType:
    """The module of aging GAN ``name`` (a key of :data:`MODELS`)."""

    if name not in MODELS:
        raise UnknownNameError(f"unknown aging GAN {name!r}; known: {', '.join(sorted(MODELS))}")
    return importlib.import_module(MODELS[name])


def aging_state(checkpoint: str | Path) -> dict:
    """The checkpoint dict of a shipped generator's name, a shipped ``.safetensors`` file, a ``.pt`` file
    or a run folder (a name's file is checked against its pinned sha256 first)."""
    if isinstance(checkpoint, str) and checkpoint in GENERATORS:
        state = generator_state(GENERATORS.path(checkpoint))
        state["shipped_name"] = checkpoint
        return state
    if Path(checkpoint).suffix == ".safetensors":
        return generator_state(checkpoint)
    return load_checkpoint(checkpoint, map_location="cpu")


def load_aging_model(checkpoint: str | Path, device: str = "cpu") -> AgingModel:
    """A trained aging GAN, ready for ``.age(images, target)``: a shipped name (``ipcgan-utkface``;
    :data:`~decoders.aging.shipped.GENERATORS`), a shipped ``.safetensors`` file, a ``.pt`` checkpoint or a
    run folder.

    Raises :class:`~probes.training.checkpoints.CheckpointError` (naming the file) for
    a missing/corrupt file, a checkpoint of another kind, or weights that do
    not fit their architecture.
    """
    state = aging_state(checkpoint)
    kind = state.get("kind")
    if kind not in MODELS:
        raise CheckpointError(f"{state['path']} holds a {kind!r} run, not an aging GAN "
                              f"(known kinds: {', '.join(sorted(MODELS))})")
    return gan_module(kind).from_checkpoint(state, device)
