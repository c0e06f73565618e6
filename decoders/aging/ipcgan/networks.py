"""IPCGAN's networks: a conditional encoder-decoder generator and a conditional PatchGAN discriminator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import ConditionalNorm, condition_maps, signed_to_unit, sn_conv2d, unit_to_signed
from ..groups import AgingError
from .config import GROUPS, IPCGANConfig


class ConditionalInstanceNorm(ConditionalNorm):
    """Instance norm whose scale and shift are chosen by the target group (Dumoulin et al. 2017).

    Needed because instance norm removes any per-channel constant: the constant
    condition planes concatenated to the input reach the first convolution as a
    per-group constant, and the next instance norm subtracts it again. Without
    a group-dependent affine (or a norm over the batch), the generator could not
    tell the target groups apart.
    """

    def __init__(self, channels: int, n_groups: int, conditional: bool = True):
        super().__init__(nn.InstanceNorm2d(channels, affine=False), channels, n_groups, conditional)


class _ConvNormReLU(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, n_groups: int, conditional: bool,
                 upsample: bool = False, relu: bool = True):
        super().__init__()
        pad = kernel // 2
        self.upsample, self.relu = upsample, relu
        # Reflection padding keeps borders natural; stride-2 convs pad with zeros as usual.
        self.pad = nn.ReflectionPad2d(pad) if stride == 1 else nn.ZeroPad2d(pad)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, bias=False)
        self.norm = ConditionalInstanceNorm(c_out, n_groups, conditional)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.conv(self.pad(x)), target)
        return F.relu(x) if self.relu else x


class _ResBlock(nn.Module):
    def __init__(self, channels: int, n_groups: int, conditional: bool):
        super().__init__()
        self.a = _ConvNormReLU(channels, channels, 3, 1, n_groups, conditional)
        self.b = _ConvNormReLU(channels, channels, 3, 1, n_groups, conditional, relu=False)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, target), target)


class IPCGANGenerator(nn.Module):
    """Encoder (2 stride-2 convs) - residual blocks - decoder (2 upsample+conv), conditioned on the group.

    ``forward(x, target)``: x N x 3 x S x S in [0, 1], target N group indices ->
    N x 3 x S x S in [0, 1]. The group enters as one-hot planes concatenated to
    the image (as in the paper) and, with ``conditional_norm``, as the scale and
    shift of every instance norm (see :class:`ConditionalInstanceNorm`).
    Instance norm keeps no running statistics, so the EMA copy needs none.
    """

    def __init__(self, n_groups: int, width: int = 16, blocks: int = 6, residual: bool = True,
                 conditional_norm: bool = True):
        super().__init__()
        self.n_groups, self.residual = n_groups, residual
        w, cond = width, conditional_norm
        self.encoder = nn.ModuleList([_ConvNormReLU(3 + n_groups, w, 7, 1, n_groups, cond),
                                      _ConvNormReLU(w, 2 * w, 3, 2, n_groups, cond),
                                      _ConvNormReLU(2 * w, 4 * w, 3, 2, n_groups, cond)])
        self.blocks = nn.ModuleList([_ResBlock(4 * w, n_groups, cond) for _ in range(blocks)])
        self.decoder = nn.ModuleList([_ConvNormReLU(4 * w, 2 * w, 3, 1, n_groups, cond, upsample=True),
                                      _ConvNormReLU(2 * w, w, 3, 1, n_groups, cond, upsample=True)])
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7))
        if residual:
            # Start as the identity map: the change drawn on the input is zero.
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise AgingError(f"generator input sides must be multiples of 4, got {tuple(x.shape[-2:])}")
        target = target.long().to(x.device)
        signed = unit_to_signed(x)
        h = torch.cat([signed, condition_maps(target, self.n_groups, x.shape[-2:]).to(x)], 1)
        for layer in (*self.encoder, *self.blocks, *self.decoder):
            h = layer(h, target)
        change = self.head(h)
        if self.residual:
            out = torch.tanh(torch.atanh(signed.clamp(-0.995, 0.995)) + change)
        else:
            out = torch.tanh(change)
        return signed_to_unit(out)


class IPCGANDiscriminator(nn.Module):
    """Conditional PatchGAN: image + condition planes -> a 4 x 4 map of real/fake scores."""

    def __init__(self, n_groups: int, image_size: int = 64, width: int = 32, spectral: bool = True):
        super().__init__()
        self.n_groups = n_groups
        n_down = round(math.log2(image_size)) - 2  # down to 4 x 4
        layers, c_in = [], 3 + n_groups
        for i in range(n_down):
            c = width * 2 ** min(i, 3)
            layers += [sn_conv2d(c_in, c, 4, 2, 1, spectral=spectral), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        layers.append(sn_conv2d(c_in, 1, 3, 1, 1, spectral=spectral))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = condition_maps(target, self.n_groups, x.shape[-2:]).to(x)
        return self.net(torch.cat([unit_to_signed(x), c], 1))


def build_generator(config: IPCGANConfig, n_groups: int = len(GROUPS)) -> IPCGANGenerator:
    return IPCGANGenerator(n_groups, config.g_width, config.g_blocks, config.residual, config.conditional_norm)


def build_discriminator(config: IPCGANConfig, n_groups: int = len(GROUPS)) -> IPCGANDiscriminator:
    return IPCGANDiscriminator(n_groups, config.image_size, config.d_width, config.spectral_norm)
