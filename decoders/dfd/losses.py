"""Reconstruction losses of the Deep Face Decoder, global and on the central face region.

Terms (each with its own weight; a zero weight skips its computation):

- ``pixel``: L1 or L2 between reconstruction and target chip;
- ``gradient``: L1 between Sobel gradient maps (edges, not flat colour);
- ``perceptual``: LPIPS v0.1 (:mod:`probes.perceptual`, trunk from local weights);
- ``identity``: 1 - cosine between the target template and the template the
  frozen target backbone gives the reconstruction (fed with layout ``"chip"``:
  the decoder draws the chip the backbone sees). Gradients flow through the
  backbone into the decoder; the backbone's own weights never change.

Every term also exists as ``local_<term>`` on :data:`LOCAL_REGION` of both
images, the DFD paper's global + local formulation.

What the decoder reproduces (the *target chip*): the backbone's crop of the
dataset image for its layout (and its square padding), i.e. exactly the pixels
the backbone embeds, resized to the decoder's resolution. See
:func:`decoders.dfd.templates.backbone_chips`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from probes.config import DictConfig
from probes.errors import FaceprobeError
from probes.perceptual import create_lpips

# (top, left, height, width) as fractions of the chip: eyes, nose and mouth on
# dlib-style chips (the 5-point template of dlib-resnet29 spans x 0.33-0.67,
# y 0.30-0.68 of its chip).
LOCAL_REGION = (0.2, 0.2, 0.6, 0.6)
TERMS = ("pixel", "gradient", "perceptual", "identity")


class LossConfigError(FaceprobeError, ValueError):
    """Bad loss weights or loss options."""


@dataclass(frozen=True)
class LossConfig(DictConfig):
    """Weights of every loss term plus their options (saved in every checkpoint)."""

    config_name = "loss"
    config_error = LossConfigError

    pixel: float = 1.0
    gradient: float = 0.5
    perceptual: float = 0.5
    identity: float = 1.0
    local_pixel: float = 1.0
    local_gradient: float = 0.5
    local_perceptual: float = 0.0
    local_identity: float = 0.0
    pixel_kind: str = "l1"  # "l1" or "l2"
    lpips_net: str = "alex"
    local_region: tuple[float, float, float, float] = LOCAL_REGION

    def __post_init__(self):
        for name in self.weight_names():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise LossConfigError(f"loss weight {name} must be a finite number >= 0, got {value!r}")
        if self.pixel_kind not in ("l1", "l2"):
            raise LossConfigError(f"pixel_kind must be 'l1' or 'l2', got {self.pixel_kind!r}")
        top, left, height, width = (float(v) for v in self.local_region)
        if not (top >= 0 and left >= 0 and height > 0 and width > 0 and top + height <= 1 and left + width <= 1):
            raise LossConfigError(f"local_region (top, left, height, width) must lie inside (0, 0, 1, 1), "
                                  f"got {self.local_region}")
        object.__setattr__(self, "local_region", (top, left, height, width))
        if sum(getattr(self, n) for n in self.weight_names()) == 0:
            raise LossConfigError("every loss weight is zero: nothing to train")

    @staticmethod
    def weight_names() -> tuple[str, ...]:
        return TERMS + tuple(f"local_{t}" for t in TERMS)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["local_region"] = list(self.local_region)
        return values

    @classmethod
    def _decode(cls, values: dict) -> dict:
        if "local_region" in values:
            values["local_region"] = tuple(values["local_region"])
        return values

    @property
    def needs_backbone(self) -> bool:
        return self.identity > 0 or self.local_identity > 0


def crop_region(images: torch.Tensor, region=LOCAL_REGION) -> torch.Tensor:
    """The ``(top, left, height, width)`` fractional region of N x C x H x W images."""
    top, left, height, width = region
    h, w = images.shape[-2:]
    y0, x0 = round(top * h), round(left * w)
    y1, x1 = max(y0 + 1, round((top + height) * h)), max(x0 + 1, round((left + width) * w))
    return images[..., y0:y1, x0:x1]


def sobel(images: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradients, N x 2C x (H-2) x (W-2) (valid convolution: a flat image gives 0)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device,
                      dtype=images.dtype) / 8.0
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # 2 x 1 x 3 x 3
    c = images.shape[1]
    return F.conv2d(images, kernels.repeat(c, 1, 1, 1), groups=c)


def identity_loss(reconstruction: torch.Tensor, templates: torch.Tensor, backbone: nn.Module,
                  layout: str = "chip") -> torch.Tensor:
    """Mean of 1 - cos(template, backbone(reconstruction)); differentiable in the reconstruction."""
    return (1 - F.cosine_similarity(backbone(reconstruction, layout), templates.to(reconstruction.dtype),
                                    dim=1, eps=1e-8)).mean()


class ReconstructionLoss(nn.Module):
    """Weighted sum of the DFD loss terms; ``forward`` returns (total, {term: value}).

    ``backbone`` (a :class:`probes.backbones.FaceBackbone`) is needed when an
    identity weight is non-zero; it is frozen here (``requires_grad_(False)``,
    eval mode). LPIPS is built from local weights when a perceptual weight is
    non-zero.
    """

    def __init__(self, config: LossConfig, backbone: nn.Module | None = None, lpips: nn.Module | None = None):
        super().__init__()
        self.config = config
        if config.needs_backbone and backbone is None:
            raise LossConfigError("identity loss weights are non-zero but no backbone was given")
        self.backbone = backbone
        if backbone is not None:
            backbone.requires_grad_(False)
            backbone.eval()
        if (config.perceptual > 0 or config.local_perceptual > 0) and lpips is None:

            device = next(backbone.parameters()).device if backbone is not None else "cpu"
            lpips = create_lpips(config.lpips_net, device=device)
        self.lpips = lpips
        if lpips is not None:
            lpips.requires_grad_(False)
            lpips.eval()

    def train(self, mode: bool = True):
        # The frozen nets stay in eval mode whatever the caller does.
        super().train(mode)
        for net in (self.backbone, self.lpips):
            if net is not None:
                net.eval()
        return self

    def _pixel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(a, b) if self.config.pixel_kind == "l1" else F.mse_loss(a, b)

    def _terms(self, recon, target, templates, prefix: str, weights: dict) -> dict[str, torch.Tensor]:
        out = {}
        if weights["pixel"] > 0:
            out[prefix + "pixel"] = self._pixel(recon, target)
        if weights["gradient"] > 0:
            out[prefix + "gradient"] = F.l1_loss(sobel(recon), sobel(target))
        if weights["perceptual"] > 0:
            out[prefix + "perceptual"] = self.lpips(recon * 2 - 1, target * 2 - 1).mean()
        if weights["identity"] > 0:
            out[prefix + "identity"] = identity_loss(recon, templates, self.backbone)
        return out

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor, templates: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``reconstruction``, ``target``: N x 3 x S x S in [0, 1]; ``templates``: N x d."""
        if reconstruction.shape != target.shape:
            raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        cfg = self.config
        terms = self._terms(reconstruction, target, templates, "",
                            {t: getattr(cfg, t) for t in TERMS})
        local_weights = {t: getattr(cfg, "local_" + t) for t in TERMS}
        if any(local_weights.values()):
            local_recon = crop_region(reconstruction, cfg.local_region)
            local_target = crop_region(target, cfg.local_region)
            local_templates = None
            if local_weights["identity"] > 0:
                # The local identity target: the backbone's template of the target's own region.
                with torch.no_grad():
                    local_templates = self.backbone(local_target, "chip")
            terms.update(self._terms(local_recon, local_target, local_templates, "local_", local_weights))
        total = sum(getattr(cfg, name) * value for name, value in terms.items())
        return total, terms
