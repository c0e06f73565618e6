"""Age-cGAN's stage 3: identity-preserving optimisation of a face's latent (:func:`optimise_latents`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import signed_to_unit
from ..groups import AgingError
from .config import InversionConfig


def latent_objective(generator: nn.Module, target01: torch.Tensor, groups: torch.Tensor, config: InversionConfig,
                     identity: nn.Module | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-face objective of :func:`optimise_latents` as a function of the latents ``z``."""
    use_id = config.identity_weight > 0
    if use_id and identity is None:
        raise AgingError("inversion identity_weight > 0 needs an identity network")
    with torch.no_grad():
        target_emb = identity(target01) if use_id else None

    def objective(z: torch.Tensor) -> torch.Tensor:
        x = signed_to_unit(generator(z, groups))
        value = config.pixel_weight * (x - target01).pow(2).flatten(1).mean(1)
        if use_id:
            emb = identity(x)
            if config.identity_distance == "euclidean":
                distance = (emb - target_emb).norm(dim=1)
            else:
                distance = 1 - F.cosine_similarity(emb, target_emb, dim=1, eps=1e-8)
            value = value + config.identity_weight * distance
        if config.prior_weight:
            value = value + config.prior_weight * z.pow(2).mean(1)
        return value

    return objective


@torch.no_grad()
def _keep_best(value: torch.Tensor, z: torch.Tensor, best: torch.Tensor, best_z: torch.Tensor) -> torch.Tensor:
    """Per face, ``z`` into ``best_z`` where ``value`` beats ``best``; returns the new best values."""
    better = value < best
    best_z[better] = z.detach()[better]
    return torch.where(better, value, best)


def optimise_latents(generator: nn.Module, target01: torch.Tensor, groups: torch.Tensor, z0: torch.Tensor,
                     config: InversionConfig, identity: nn.Module | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity-preserving latent optimisation of Age-cGAN (one batch).

    ``target01``: N x 3 x S x S faces in [0, 1]; ``groups``: their source age
    groups; ``z0``: the starting latents (the encoder's). Returns ``(z*,
    objective at z0, objective at z*)``, objectives per face (see
    :class:`InversionConfig`). The generator and ``identity`` must be frozen
    (eval mode); each face's objective depends on its own latent only, so the
    faces of a batch do not interact.
    """
    objective = latent_objective(generator, target01, groups, config, identity)
    z = z0.detach().clone().requires_grad_(True)
    with torch.no_grad():
        start = objective(z)
    best, best_z = start.clone(), z.detach().clone()
    if config.steps == 0:
        return best_z, start, best
    opt = torch.optim.Adam([z], lr=config.lr)
    for _ in range(config.steps):
        value = objective(z)
        best = _keep_best(value, z, best, best_z)
        opt.zero_grad(set_to_none=True)
        value.sum().backward()
        opt.step()
    with torch.no_grad():
        best = _keep_best(objective(z), z, best, best_z)
    return best_z, start, best
