"""The Deep Face Decoder: a face-recognition template -> the RGB face chip it came from.

A linear layer lifts the (L2-normalised, rescaled) template to a small
``start x start x C`` map; upsampling blocks (nearest x2, two 3x3 convs, norm,
LeakyReLU) double it until it reaches ``image_size``; a 3x3 conv and a sigmoid
give RGB in [0, 1]. Channels halve per block from ``256 * width`` down to a
floor of ``32 * width``, so ``width`` scales the net for a GPU while the
default (``width=1``, 112 x 112, 128-D input) has about 2.4 M parameters.

>>> decoder = FaceDecoder(DecoderConfig(embedding_size=128))
>>> faces = decoder(templates)          # N x 128 -> N x 3 x 112 x 112 in [0, 1]

Template normalisation: templates are L2-normalised (dlib's descriptors have
norm ~1.46, others are unit-norm or in the tens; the direction is what
verification compares), then rescaled to norm ``template_scale`` (default
sqrt(d): entries of about unit variance). Optionally (``standardise=True``)
each dimension is instead standardised with the mean and std of the
*training* templates (:meth:`FaceDecoder.fit_normalisation`, buffers saved
with the weights), since face templates share a large common direction (any
two dlib templates have cosine ~0.9). Measured on an H100 (2,719 LFW training
images, batch 64, 3000 steps): standardising fit the training faces better
but held-out identities worse (best validation cosine 0.975 vs 0.983), so it
is off by default.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from probes.config import DictConfig
from probes.errors import FaceprobeError

DECODER_KIND = "face-decoder"  # the ``kind`` of a decoder's checkpoints and shipped files
NORMS = ("batch", "group", "none")
UPSAMPLES = ("nearest", "bilinear")


class DecoderConfigError(FaceprobeError, ValueError):
    """A decoder configuration that cannot be built (size, width, norm...)."""


class TemplateError(FaceprobeError, ValueError):
    """Templates of the wrong shape or with NaN/infinite values."""


def start_size(image_size: int) -> tuple[int, int]:
    """(start side, number of x2 blocks) with ``start * 2**blocks == image_size`` and 3 <= start <= 7."""
    if not isinstance(image_size, int) or image_size < 12:
        raise DecoderConfigError(f"image_size must be an integer >= 12, got {image_size!r}")
    side, blocks = image_size, 0
    while side > 7 and side % 2 == 0:
        side, blocks = side // 2, blocks + 1
    if not 3 <= side <= 7 or blocks == 0:
        raise DecoderConfigError(
            f"image_size {image_size} is not (3..7) x 2^k; use e.g. 32, 64, 112, 128 or 224")
    return side, blocks


@dataclass(frozen=True)
class DecoderConfig(DictConfig):
    """Everything that defines a decoder's architecture (saved in every checkpoint)."""

    config_name = "decoder"
    config_error = DecoderConfigError

    embedding_size: int
    image_size: int = 112
    width: float = 1.0  # channel multiplier: 1 for CPU, 2-4 on a GPU
    max_channels: int = 256  # channels of the first map at width 1
    min_channels: int = 32  # channel floor at width 1
    norm: str = "batch"
    upsample: str = "nearest"
    template_scale: float | None = None  # norm the template is rescaled to; None = sqrt(embedding_size)
    # Standardise L2-normalised templates with the training set's per-dimension mean and std
    # (fit_normalisation). Off by default: on 2.7k LFW images it overfit sooner (see module doc).
    standardise: bool = False

    def __post_init__(self):
        if not isinstance(self.embedding_size, int) or self.embedding_size <= 0:
            raise DecoderConfigError(f"embedding_size must be a positive integer, got {self.embedding_size!r}")
        start_size(self.image_size)
        if not self.width > 0:
            raise DecoderConfigError(f"width must be positive, got {self.width}")
        if self.norm not in NORMS:
            raise DecoderConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.upsample not in UPSAMPLES:
            raise DecoderConfigError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.template_scale is not None and not self.template_scale > 0:
            raise DecoderConfigError(f"template_scale must be positive, got {self.template_scale}")


    def channels(self) -> list[int]:
        """Channels of the start map and after each upsampling block."""
        _, blocks = start_size(self.image_size)
        top = max(8, round(self.max_channels * self.width))
        floor = max(8, round(self.min_channels * self.width))
        return [max(floor, top >> i) for i in range(blocks + 1)]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class UpBlock(nn.Module):
    """x2 upsampling, then conv-norm-act twice."""

    def __init__(self, cin: int, cout: int, norm: str, upsample: str):
        super().__init__()
        self.upsample = upsample
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), _norm(norm, cout), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias), _norm(norm, cout), nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.body(x)


class FaceDecoder(nn.Module):
    """Template (N x d) -> face chip (N x 3 x S x S, RGB in [0, 1])."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        side, _ = start_size(config.image_size)
        chans = config.channels()
        self.start = side
        self.scale = float(config.template_scale or math.sqrt(config.embedding_size))
        self.project = nn.Linear(config.embedding_size, chans[0] * side * side)
        self.stem = nn.Sequential(_norm(config.norm, chans[0]), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList(UpBlock(a, b, config.norm, config.upsample)
                                    for a, b in itertools.pairwise(chans))
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)
        # Per-dimension centre and spread of L2-normalised training templates (saved with the weights).
        self.register_buffer("center", torch.zeros(config.embedding_size))
        self.register_buffer("spread", torch.ones(config.embedding_size))

    @torch.no_grad()
    def fit_normalisation(self, templates) -> FaceDecoder:
        """Set ``center``/``spread`` from training templates (N x d); no-op unless ``config.standardise``."""
        if not self.config.standardise:
            return self
        t = torch.as_tensor(templates, dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != self.config.embedding_size or len(t) < 2:
            raise TemplateError(f"fit_normalisation needs N >= 2 templates of dimension "
                                f"{self.config.embedding_size}, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise TemplateError("templates contain NaN or infinite values")
        unit = F.normalize(t, dim=1, eps=1e-8)
        self.center.copy_(unit.mean(0))
        self.spread.copy_(unit.std(0).clamp_min(1e-6))
        return self

    def normalise(self, templates: torch.Tensor) -> torch.Tensor:
        """Check shape and values, L2-normalise, then standardise (``config.standardise``) or
        rescale to norm ``self.scale``."""
        d = self.config.embedding_size
        if templates.ndim != 2 or templates.shape[1] != d:
            raise TemplateError(f"templates must be N x {d} (this decoder's embedding size), "
                                f"got shape {tuple(templates.shape)}")
        if not torch.isfinite(templates).all():
            raise TemplateError("templates contain NaN or infinite values")
        unit = F.normalize(templates.float(), dim=1, eps=1e-8)
        if self.config.standardise:
            return (unit - self.center) / self.spread
        return unit * self.scale

    def forward(self, templates: torch.Tensor) -> torch.Tensor:
        x = self.project(self.normalise(templates))
        x = self.stem(x.view(len(x), -1, self.start, self.start))
        for block in self.blocks:
            x = block(x)
        return torch.sigmoid(self.to_rgb(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
