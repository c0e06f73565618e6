"""White-box attacks on a backbone's templates: FGSM and PGD within an L-inf ball."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.registry import FaceBackbone
from ..errors import ImageError
from ..geometry import images_to_tensor
from ..nn import evaluating
from .families import PGD_STARTS, PerturbationError


@dataclass(frozen=True)
class AttackSetup:
    """How an attack runs: the images' ``layout``, the drift ``metric`` (None: the backbone's verification
    metric), the clean templates ``reference`` (None: computed from the images) and the ``batch_size``."""

    layout: str = "chip"
    metric: str | None = None
    reference: torch.Tensor | None = None
    batch_size: int = 32

def metric_of(backbone: FaceBackbone, metric: str | None) -> str:
    """``metric`` (default: the backbone's verification metric), checked."""
    metric = metric or backbone.spec.verification_metric
    if metric not in ("cosine", "euclidean"):
        raise PerturbationError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    return metric


def _drift(emb: torch.Tensor, ref: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-image template drift to maximise: squared L2 distance, or 1 - cosine."""
    if metric == "euclidean":
        return (emb - ref).pow(2).sum(1)
    return 1 - F.cosine_similarity(emb, ref, dim=1, eps=1e-12)


@torch.no_grad()
def batched_templates(backbone: FaceBackbone, x: torch.Tensor, layout: str, batch_size: int = 32) -> torch.Tensor:
    """Templates (float32, on the CPU) of [0, 1] images ``x``, ``batch_size`` at a time, without gradients."""
    device = backbone._mean.device
    with evaluating(backbone):
        return torch.cat([backbone(x[i:i + batch_size].to(device), layout).float().cpu()
                          for i in range(0, len(x), batch_size)])


def _input_gradient(backbone: FaceBackbone, x: torch.Tensor, ref: torch.Tensor, layout: str,
                    objective) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of ``objective(emb, ref)`` summed over images w.r.t. ``x``, per-image objective)."""
    device = backbone._mean.device
    x = x.detach().to(device).requires_grad_(True)
    with torch.enable_grad(), evaluating(backbone):
        value = objective(backbone(x, layout).float(), ref.to(device))
        (grad,) = torch.autograd.grad(value.sum(), x)
    return grad.cpu(), value.detach().cpu()


def _check_attack_args(images, eps: float) -> torch.Tensor:
    x = images_to_tensor(images)
    if x.dtype not in (torch.float16, torch.float32, torch.float64) or not torch.isfinite(x).all():
        raise ImageError("attack images must be a finite float tensor in [0, 1]")
    if not (isinstance(eps, (int, float, np.number)) and math.isfinite(eps) and 0 <= eps <= 1):
        raise PerturbationError(f"eps must be a number in [0, 1] ([0, 1] pixel units, L-inf), got {eps!r}")
    return x.detach().float().cpu()


def fgsm(backbone: FaceBackbone, images, eps: float, layout: str = "chip", reference: torch.Tensor | None = None,
         batch_size: int = 32) -> torch.Tensor:
    """Untargeted FGSM in L-inf: ``x + eps * sign(grad)``, clipped to [0, 1].

    The drift from the clean template (L2 or cosine) has zero gradient at the
    clean image itself (the template is its own best match), so the step
    ascends its first-order surrogate: minus the projection of the template
    onto the clean one, ``-<f(x'), f(x)> / |f(x)|^2``. ``reference``: the clean
    templates (computed from ``images`` when None).
    """
    x = _check_attack_args(images, eps)
    if eps == 0:
        return x.clone()
    ref = batched_templates(backbone, x, layout, batch_size) if reference is None else reference.float().cpu()

    def surrogate(emb, r):
        return -(emb * r).sum(1) / r.pow(2).sum(1).clamp_min(1e-12)

    out = []
    for i in range(0, len(x), batch_size):
        grad, _ = _input_gradient(backbone, x[i:i + batch_size], ref[i:i + batch_size], layout, surrogate)
        out.append((x[i:i + batch_size] + eps * grad.sign()).clamp_(0, 1))
    return torch.cat(out)


def pgd(backbone: FaceBackbone, images, eps: float, steps: int = 10, step_size: float | None = None, *,
        start: str = "random", generator: torch.Generator | None = None,
        setup: AttackSetup | None = None) -> torch.Tensor:
    """Untargeted L-inf PGD maximising the template drift from the clean template.

    Drift: squared L2 distance for ``euclidean`` backbones, 1 - cosine otherwise
    (``setup.metric`` overrides). The drift has zero gradient at the clean image, so
    the ascent starts at a uniform random point of the eps ball (``"random"``,
    drawn from ``generator``) or at the :func:`fgsm` point (``"fgsm"``). It
    takes ``steps`` signed-gradient steps of ``step_size`` (default
    ``2.5 eps / steps``), projecting onto the ball and [0, 1] after each, and
    returns each image's point of largest drift among its iterates and the
    FGSM point (so PGD never does worse than FGSM). Results lie within ``eps``
    of ``images``. ``setup``: layout, metric, clean templates and batch size (:class:`AttackSetup`).
    """
    setup = setup or AttackSetup()
    x = _check_attack_args(images, eps)
    if start not in PGD_STARTS:
        raise PerturbationError(f"PGD start must be one of {', '.join(PGD_STARTS)}, got {start!r}")
    uniform = torch.rand(x.shape, generator=generator) if start == "random" else None
    return pgd_ascent(backbone, x, eps, steps, step_size, uniform,
                      replace(setup, metric=metric_of(backbone, setup.metric)))


def pgd_ascent(backbone: FaceBackbone, x: torch.Tensor, eps: float, steps: int, step_size: float | None,
               uniform: torch.Tensor | None, setup: AttackSetup) -> torch.Tensor:
    """:func:`pgd` with its random start given as ``uniform`` ([0, 1) noise like ``x``; None = start at FGSM)
    and ``setup.metric`` set."""
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise PerturbationError(f"PGD steps must be a positive integer, got {steps!r}")
    if eps == 0:
        return x.clone()
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    if not (math.isfinite(alpha) and alpha > 0):
        raise PerturbationError(f"PGD step size must be positive, got {step_size!r}")
    layout, metric, batch_size = setup.layout, setup.metric, setup.batch_size
    ref = batched_templates(backbone, x, layout, batch_size) if setup.reference is None \
        else setup.reference.float().cpu()

    def objective(emb, r):
        return _drift(emb, r, metric)

    out = []
    for i in range(0, len(x), batch_size):
        clean, r = x[i:i + batch_size], ref[i:i + batch_size]
        best = fgsm(backbone, clean, eps, layout, r, batch_size)
        best_drift = _drift(batched_templates(backbone, best, layout, batch_size), r, metric)
        adv = best.clone() if uniform is None else (clean + eps * (uniform[i:i + batch_size] * 2 - 1)).clamp_(0, 1)
        for step in range(steps + 1):
            if step < steps:
                grad, value = _input_gradient(backbone, adv, r, layout, objective)
            else:
                value = _drift(batched_templates(backbone, adv, layout, batch_size), r, metric)
            better = value > best_drift  # drift of the current iterate, before it steps
            best[better], best_drift[better] = adv[better], value[better]
            if step < steps:
                adv = torch.min(torch.max(adv + alpha * grad.sign(), clean - eps), clean + eps).clamp_(0, 1)
        out.append(best)
    return torch.cat(out)
