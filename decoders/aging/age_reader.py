"""A frozen, pretrained age estimator as the aging GANs' age loss: :class:`AgeReader`.

IPCGAN's paper trains its generator against a *pretrained* age classifier.
:class:`AgeReader` wraps any differentiable age labeller of
:mod:`probes.labellers` (by default face-api's AgeGenderNet, a regressor in
years with a sex head) and reads GAN-sized UTKFace-layout faces the way the
audit reads a GAN's output (bicubic up to the 200 x 200 UTKFace frame).

A generator trained against one network learns to fool that network as much
as to age the face. Two defences live here: ``augment`` shows the reader a
randomly shifted, scaled and mirrored view of each face every step (pixel-exact
adversarial patterns do not survive it), and the audit judges age with a
*different* estimator (``hse-agegender``), reporting the reader's figure
beside it so the gap is visible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probes.labellers import create_labeller

from .blocks import FrozenFaceReader
from .data import UTKFACE_FRAME

# Random view per face: scale, shift (fraction of the side) and rotation (degrees)
# within these bounds, mirrored with probability 1/2.
AUGMENT_SCALE = (0.9, 1.1)
AUGMENT_SHIFT = 0.05
AUGMENT_DEGREES = 8.0
# Each batch is also seen at a random resolution down to this fraction of its side (then brought back
# up): stripes and other pixel-level patterns that fool the reader are blurred away; the shape of a face,
# its skin and hair colour are not.
AUGMENT_MIN_RESOLUTION = 0.5


def random_views(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random similarity transform (and mirror) of each face in N x 3 x S x S ``x``, seen at a random
    resolution; differentiable in ``x``.

    Border pixels are repeated (no black corners for the reader to key on).
    """
    n = len(x)
    rand = torch.rand(n, 4, generator=generator).to(x.device)
    scale = AUGMENT_SCALE[0] + (AUGMENT_SCALE[1] - AUGMENT_SCALE[0]) * rand[:, 0]
    angle = math.radians(AUGMENT_DEGREES) * (2 * rand[:, 1] - 1)
    flip = torch.where(torch.rand(n, generator=generator).to(x.device) < 0.5, -1.0, 1.0)
    shift = AUGMENT_SHIFT * 2 * (2 * rand[:, 2:4] - 1)  # grid units span 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    views = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    fraction = AUGMENT_MIN_RESOLUTION + (1 - AUGMENT_MIN_RESOLUTION) * float(torch.rand(1, generator=generator))
    side = max(8, round(x.shape[-1] * fraction))
    if side < x.shape[-1]:
        small = F.interpolate(views, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        views = F.interpolate(small, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return views


class AgeReader(FrozenFaceReader):
    """Age (years) and P(male) of N x 3 x S x S faces in [0, 1], differentiable in the faces.

    ``labeller``: a registered labeller name whose ``forward(x, layout)`` returns
    ``(age in years, sex logits [male, female])`` (``"faceapi-agegender"``), or
    such a module (tests use tiny stand-ins). Frozen; stays in eval mode.
    ``forward(x, augment=True)`` reads a random view of each face
    (:func:`random_views`); the GAN's step asks for that, validation does not.
    """

    def __init__(self, labeller: str | nn.Module = "faceapi-agegender", *,
                 device: str | torch.device = "cpu", layout: str = "utkface", frame: int = UTKFACE_FRAME):
        if isinstance(labeller, str):
            labeller = create_labeller(labeller, device=device)
        super().__init__(labeller, device, layout, frame)

    def forward(self, x: torch.Tensor, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(age in years (N,), P(male) (N,))``."""
        if augment:
            x = random_views(x)
        age, logits = self.network(self.in_frame(x), self.layout)
        return age.float(), torch.softmax(logits.float(), dim=1)[:, 0]


def recorded_age_reader(config: dict) -> str | None:
    """The labeller name of the age network a checkpoint's config (``describe()`` under ``age_reader``) says
    the GAN was trained against; None when it records none."""
    record = config.get("age_reader") if isinstance(config, dict) else None
    return str(record["name"]) if isinstance(record, dict) and record.get("name") else None


def age_reading_loss(age: torch.Tensor, target_years: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in years between the reader's ages and the targets."""
    return (age - target_years.to(age)).abs().mean()


def sex_keeping_loss(p_male_fake: torch.Tensor, p_male_source: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the aged face's P(male) against the source's (a soft target, no gradient):
    0 when both sure of the same sex, large when the sex flips."""
    eps = 1e-6
    p = p_male_fake.clamp(eps, 1 - eps)
    q = p_male_source.detach().to(p)
    return -(q * torch.log(p) + (1 - q) * torch.log(1 - p)).mean()
