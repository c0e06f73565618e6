"""A trained IPCGAN as an aging model: :class:`IPCGANModel`, loaded by :func:`load_ipcgan`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from probes.training.checkpoints import CheckpointError, load_checkpoint

from ..age_reader import recorded_age_reader
from ..blocks import array_to_unit, unit_to_uint8
from ..checks import check_kind
from ..classifier import AgeGroupClassifier, age_classifier_from_state
from ..groups import AgeGroups, AgingError, check_faces
from .config import GROUPS, KIND, IPCGANConfig
from .networks import IPCGANGenerator, build_generator


class IPCGANModel:
    """A trained IPCGAN (its EMA generator) as an :class:`~decoders.aging.groups.AgingModel`.

    ``age(images, target)``: N x S x S x 3 uint8 UTKFace-layout faces and one
    target group index (or N) of :data:`~decoders.aging.groups.IPCGAN_GROUPS`
    -> N x S x S x 3 uint8. ``identity_backbone`` names the face model the
    identity loss used (the audit should also measure with another one);
    ``training_age_reader`` the pretrained age network of the age-reading loss
    (a labeller name, from the checkpoint's config; None when that loss was off),
    which the audit reads the outputs with beside its own judge.
    """

    kind = KIND

    def __init__(self, generator: IPCGANGenerator, config: IPCGANConfig, *, groups: AgeGroups = GROUPS,
                 identity: dict | None = None, age_classifier: AgeGroupClassifier | None = None,
                 checkpoint: str | None = None, step: int | None = None, device: str = "cpu",
                 training_age_reader: str | None = None):
        self.generator = generator.to(device).requires_grad_(False).eval()
        self.config, self.groups, self.image_size = config, groups, config.image_size
        self.identity = identity or {}
        self.identity_backbone = config.identity_backbone
        self.age_classifier = age_classifier
        self.training_age_reader = training_age_reader or None
        self.checkpoint, self.step, self.device = checkpoint, step, torch.device(device)

    def __repr__(self) -> str:
        return (f"IPCGANModel({self.image_size}px, groups {', '.join(self.groups.labels)}, "
                f"identity {self.identity_backbone!r}, step {self.step}, {self.checkpoint})")

    def age_tensor(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Differentiable: N x 3 x S x S in [0, 1] and N group indices -> N x 3 x S x S in [0, 1]."""
        return self.generator(x, target)

    @torch.no_grad()
    def age(self, images, target, batch_size: int = 64) -> np.ndarray:
        images = check_faces(images, self.image_size)
        targets = self.groups.per_face(target, len(images))
        out = np.empty_like(images)
        for i in range(0, len(images), batch_size):
            x = array_to_unit(images[i:i + batch_size], self.device)
            t = torch.as_tensor(targets[i:i + batch_size], device=self.device)
            out[i:i + batch_size] = unit_to_uint8(self.generator(x, t))
        return out


def from_checkpoint(state: dict, device: str = "cpu") -> IPCGANModel:
    """The :class:`IPCGANModel` of a loaded checkpoint dict (see
    :func:`probes.training.checkpoints.load_checkpoint`)."""
    path = state.get("path", "<checkpoint>")
    check_kind(state, KIND, f"an {KIND!r} one")
    try:
        config = state["config"]
        cfg = IPCGANConfig.from_dict(config["model"])
        groups = AgeGroups.from_dict(config["groups"])
        generator = build_generator(cfg, len(groups))
        generator.load_state_dict(state["models"]["g_ema"])
    except (KeyError, TypeError, RuntimeError, AgingError) as exc:
        raise CheckpointError(f"{path}: not a loadable IPCGAN checkpoint (weights or config do not fit): "
                              f"{type(exc).__name__}: {exc}") from exc
    classifier = None
    if "age_classifier" in state["models"] and (config.get("age_classifier") or {}).get("config"):
        classifier = age_classifier_from_state(config["age_classifier"]["config"], state["models"]["age_classifier"],
                                               path, device)
    return IPCGANModel(generator, cfg, groups=groups, identity=config.get("identity"), age_classifier=classifier,
                       checkpoint=path, step=int(state.get("step", 0)), device=device,
                       training_age_reader=recorded_age_reader(config))



def load_ipcgan(checkpoint: str | Path, device: str = "cpu") -> IPCGANModel:
    """Load a trained IPCGAN from a ``.pt`` file or a run folder (its ``checkpoints/latest.pt``)."""
    return from_checkpoint(load_checkpoint(checkpoint), device)
