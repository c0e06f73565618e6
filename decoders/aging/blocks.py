"""Building blocks shared by the aging GANs (IPCGAN, Age-cGAN) and the age classifier.

- image conversions: uint8 faces <-> [0, 1] tensors <-> [-1, 1] tensors, batching;
- condition maps: a target age group as G constant one-hot planes;
- spectrally normalised convolutions / linear layers (:func:`sn_conv2d`, :func:`sn_linear`) and
  :class:`ConditionalNorm` (a normalisation whose scale and shift the age group picks);
- least-squares GAN losses (:func:`lsgan_loss`, :func:`lsgan_d_loss`, :func:`lsgan_g_loss`);
- a generator EMA (:func:`ema_copy`, :func:`update_ema`): a frozen copy whose weights
  follow the trained generator; keep it in ``task.models`` so the trainer checkpoints it;
- optimisation: :func:`optimise` (one update), :func:`gan_optimizers` (Adam for G and D),
  :func:`frozen` (a module without gradients inside a block);
- :class:`FrozenFaceReader`: a pretrained network that reads GAN-sized faces in the UTKFace frame,
  never trained (base of the identity features and the age reader of the losses).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# --------------------------------------------------------------------------- frozen readers


class FrozenFaceReader(nn.Module):
    """A frozen, pretrained ``network`` read as ``network(x, layout)`` on faces brought up to ``frame``.

    Its parameters take no gradient and it stays in eval mode (batch-norm statistics never change);
    gradients still flow to the faces. ``name`` and ``weights_id`` come from the network (or its spec).
    """

    def __init__(self, network: nn.Module, device, layout: str, frame: int):
        super().__init__()
        self.network = network.to(device).requires_grad_(False).eval()
        spec = getattr(network, "spec", None)
        self.name = spec.name if spec is not None else getattr(network, "name", type(network).__name__)
        self.weights_id = str(getattr(network, "weights_id", "unknown"))
        self.layout, self.frame = layout, int(frame)

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.eval()
        return self

    def in_frame(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x S x S in [0, 1] -> bicubic to ``frame`` x ``frame``, clamped to [0, 1]."""
        if x.shape[-2:] == (self.frame, self.frame):
            return x
        return F.interpolate(x, size=(self.frame, self.frame), mode="bicubic", align_corners=False,
                             antialias=x.shape[-1] > self.frame).clamp(0, 1)

    def describe(self) -> dict:
        """What a checkpoint records about the network a GAN was trained against."""
        return {"name": self.name, "weights_id": self.weights_id, "layout": self.layout, "frame": self.frame}


# --------------------------------------------------------------------------- images and conditions


def images_to_unit(images: torch.Tensor, device=None) -> torch.Tensor:
    """N x S x S x 3 uint8 tensor -> N x 3 x S x S float in [0, 1] (on ``device``)."""
    return images.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def array_to_unit(images: np.ndarray, device=None) -> torch.Tensor:
    """N x S x S x 3 uint8 array -> N x 3 x S x S float in [0, 1] (on ``device``)."""
    return images_to_unit(torch.from_numpy(np.ascontiguousarray(images)), device)


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x 3 x S x S in [0, 1] -> N x S x S x 3 uint8 (rounded, clamped)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (what the networks take)."""
    return x * 2 - 1


def signed_to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def unit_batches(images, batch_size: int, device) -> Iterator[torch.Tensor]:
    """Batches in [0, 1] on ``device`` of N x S x S x 3 uint8 faces (array or tensor) or of an
    N x 3 x S x S [0, 1] tensor."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        yield images_to_unit(chunk, device) if chunk.dtype == torch.uint8 else chunk.to(device)


def condition_maps(target: torch.Tensor, n_groups: int, size: int | tuple[int, int]) -> torch.Tensor:
    """N group indices -> N x n_groups x H x W one-hot planes (plane ``target[i]`` all ones)."""
    h, w = (size, size) if isinstance(size, int) else size
    onehot = F.one_hot(target.long(), n_groups).to(torch.float32)
    return onehot[:, :, None, None].expand(-1, -1, h, w)


# --------------------------------------------------------------------------- layers


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
              bias: bool = True, spectral: bool = True) -> nn.Module:
    """A Conv2d, spectrally normalised (Miyato et al. 2018) unless ``spectral=False``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
    return spectral_norm(conv) if spectral else conv


def sn_linear(in_features: int, out_features: int, bias: bool = True, spectral: bool = True) -> nn.Module:
    """A Linear layer, spectrally normalised unless ``spectral=False``."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    return spectral_norm(layer) if spectral else layer


class ConditionalNorm(nn.Module):
    """A normalisation without affine whose scale and shift are picked by the age group.

    ``norm`` is e.g. ``nn.InstanceNorm2d(c)`` or ``nn.BatchNorm2d(c, affine=False)``;
    ``conditional=False`` keeps one (unconditional) scale and shift.
    """

    def __init__(self, norm: nn.Module, channels: int, n_groups: int, conditional: bool = True):
        super().__init__()
        self.norm = norm
        rows = n_groups if conditional else 1
        self.scale = nn.Parameter(torch.ones(rows, channels))
        self.shift = nn.Parameter(torch.zeros(rows, channels))
        self.conditional = conditional

    def forward(self, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        index = group.long() if self.conditional else torch.zeros_like(group, dtype=torch.long)
        return self.norm(x) * self.scale[index][:, :, None, None] + self.shift[index][:, :, None, None]


# --------------------------------------------------------------------------- losses


def lsgan_loss(prediction: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): mean of (prediction - target)^2."""
    return (prediction.float() - target).pow(2).mean()


def lsgan_d_loss(real: torch.Tensor, *fakes: torch.Tensor) -> torch.Tensor:
    """Discriminator: 1/2 [(D(real) - 1)^2 + mean over ``fakes`` of D(fake)^2].

    Several fake terms (e.g. generated faces and real faces shown with the
    wrong age condition) share the fake half equally.
    """
    if not fakes:
        raise ValueError("lsgan_d_loss needs at least one fake prediction")
    return 0.5 * (lsgan_loss(real, 1.0) + sum(lsgan_loss(f, 0.0) for f in fakes) / len(fakes))


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator: 1/2 (D(G(x)) - 1)^2."""
    return 0.5 * lsgan_loss(fake, 1.0)


# --------------------------------------------------------------------------- EMA


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of ``model`` (eval mode, no gradients) to average its weights into."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema.eval()


def ema_decay_at(step: int, decay: float) -> float:
    """The decay used after ``step`` updates: ramps up as (1 + step) / (10 + step) so that
    short runs are not dominated by the initial weights, capped at ``decay``."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers are copied.

    ``model`` may be wrapped in DistributedDataParallel (its ``.module`` is used).
    """
    model = getattr(model, "module", model)
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# --------------------------------------------------------------------------- optimisation


@contextmanager
def frozen(module: nn.Module):
    """``module`` with ``requires_grad`` off inside the block (restored after, even on error).

    The generator's adversarial loss goes through the plain discriminator, not its
    DDP wrapper: its weights get no gradient, so no synchronisation is expected.
    """
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update: clear gradients, back-propagate ``loss``, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def gan_optimizers(generator: nn.Module, discriminator: nn.Module, config) -> dict[str, torch.optim.Optimizer]:
    """Adam for ``generator`` and ``discriminator`` with ``config``'s ``lr_g``, ``lr_d``, ``beta1``, ``beta2``."""
    betas = (config.beta1, config.beta2)
    return {"generator": torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)}
