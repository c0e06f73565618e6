"""Age-cGAN's networks: the conditional generator ``G(z, y)``, the projection discriminator ``D(x, y)``
and the encoder ``E(x)``. They take and give images in [-1, 1]."""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..blocks import ConditionalNorm, images_to_unit, sn_conv2d, sn_linear, unit_to_signed
from .config import GROUPS, AgeCGANConfig


class ConditionalBatchNorm(ConditionalNorm):
    """Batch norm whose scale and shift are picked by the age group (as in projection cGANs)."""

    def __init__(self, channels: int, n_groups: int, conditional: bool = True):
        super().__init__(nn.BatchNorm2d(channels, affine=False), channels, n_groups, conditional)


class AgeCGANGenerator(nn.Module):
    """``G(z, y)``: N x latent + N group indices -> N x 3 x S x S in [-1, 1].

    DCGAN transposed convolutions from 1 x 1 up to ``image_size``; the one-hot
    group joins ``z`` at the input (the paper) and, with ``conditional_norm``,
    also sets every batch norm's scale and shift (a short run then learns the
    age groups apart much sooner).
    """

    def __init__(self, config: AgeCGANConfig, n_groups: int = len(GROUPS)):
        super().__init__()
        self.latent_size, self.n_groups = config.latent_size, n_groups
        n = config.n_levels
        chans = [config.width * 2 ** (n - 1 - i) for i in range(n)]
        convs = [nn.ConvTranspose2d(self.latent_size + n_groups, chans[0], 4, 1, 0, bias=False)]
        convs += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in pairwise(chans)]
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList([ConditionalBatchNorm(c, n_groups, config.conditional_norm) for c in chans])
        self.out = nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.long()
        h = torch.cat([z, F.one_hot(y, self.n_groups).to(z.dtype)], 1)[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h), y))
        return torch.tanh(self.out(h))


def _down(a: int, b: int, sn: bool, norm: bool) -> list[nn.Module]:
    conv = sn_conv2d(a, b, 4, 2, 1, bias=not norm, spectral=sn)
    return [conv] + ([nn.BatchNorm2d(b)] if norm else []) + [nn.LeakyReLU(0.2, True)]


class AgeCGANDiscriminator(nn.Module):
    """``D(x, y)``: spectrally normalised strided convs, summed features, projection on the group embedding."""

    def __init__(self, config: AgeCGANConfig, n_groups: int = len(GROUPS)):
        super().__init__()
        n, w = config.n_levels, config.d_width
        chans = [3] + [w * 2 ** i for i in range(n)]
        self.features = nn.Sequential(*[m for a, b in pairwise(chans) for m in _down(a, b, True, False)])
        self.linear = sn_linear(chans[-1], 1)
        self.embed = spectral_norm(nn.Embedding(n_groups, chans[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y.long()) * h).sum(1)


class AgeCGANEncoder(nn.Module):
    """``E(x)``: N x 3 x S x S in [-1, 1] -> N x latent (strided convs with batch norm, then linear)."""

    def __init__(self, config: AgeCGANConfig):
        super().__init__()
        n, w = config.n_levels, config.e_width
        chans = [3] + [w * 2 ** i for i in range(n)]
        layers = []
        for i, (a, b) in enumerate(pairwise(chans)):
            layers += _down(a, b, False, i > 0)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * 16, config.latent_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build_networks(config: AgeCGANConfig, n_groups: int = len(GROUPS)) -> dict[str, nn.Module]:
    """Fresh ``generator``, ``discriminator`` and ``encoder`` for ``config`` (from the current torch RNG)."""
    return {"generator": AgeCGANGenerator(config, n_groups), "discriminator": AgeCGANDiscriminator(config, n_groups),
            "encoder": AgeCGANEncoder(config)}


def images_to_signed(images: torch.Tensor, device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float in [-1, 1]."""
    return unit_to_signed(images_to_unit(images, device))


def latent_table(n: int, latent_size: int, n_groups: int = len(GROUPS), seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` seeded ``(z, group)`` pairs, groups uniform: ``{"z": n x latent, "group": n}``."""
    gen = torch.Generator().manual_seed(int(seed))
    return {"z": torch.randn(n, latent_size, generator=gen),
            "group": torch.randint(0, n_groups, (n,), generator=gen)}
