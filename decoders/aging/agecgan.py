"""Age-cGAN: face aging with a conditional GAN (Antipov, Baccouche & Dugelay, ICIP 2017).

Trained by the shared :class:`probes.training.Trainer` as one task
(:class:`AgeCGANTask`, checkpoint kind ``"agecgan"``) in two phases:

1. **Conditional GAN** (steps ``0 .. gan_steps - 1``): a DCGAN-like generator
   ``G(z, y)`` (``z``: ``latent_size``-D standard normal, ``y``: one-hot age
   group of :data:`~decoders.aging.groups.AGECGAN_GROUPS`, concatenated to
   ``z`` at the input as in the paper) against a conditional discriminator
   ``D(x, y)``. Deviations from the paper, for short CPU runs: ``D`` is
   spectrally normalised and conditioned by projection (Miyato & Koyama 2018)
   instead of label maps at its second layer; the group also sets G's batch
   norm scales and shifts (``conditional_norm``); the loss is least squares
   (LSGAN) instead of the cross entropy; faces are flipped at random; the
   generator kept is an exponential moving average (EMA) of the trained one.
2. **Encoder** (steps ``gan_steps ..``): ``E(x)`` learns the latent of
   generated faces, ``||E(G_ema(z, y)) - z||^2`` on fresh ``(z, y)`` drawn
   each step (``encoder_batch_size`` of them), with ``G_ema`` frozen. The
   discriminator and generator no longer change.

``log.csv`` has the same columns in both phases: ``phase`` (0 = GAN, 1 =
encoder); in the GAN phase ``latent_mse`` is the (untrained) encoder's error on
the batch's fakes, in the encoder phase the GAN columns are the frozen
networks' losses on the batch (no update). ``val.csv``: ``val_latent_mse`` and
``val_pixel_mse`` on 256 fixed latents, ``val_real_pixel_mse`` of ``G(E(x), y)``
on held-out real faces (its rows during the GAN phase show the untrained
encoder). Sample grids: in the GAN phase one row per fixed latent and one
column per age group; in the encoder phase, per face, the input, its
reconstruction ``G(E(x), y)`` and ``G(E(x), g)`` for every group ``g``.

3. **Latent optimisation** (at aging time, :func:`optimise_latents`): from
   ``z0 = E(x)`` Adam minimises, per face,
   ``pixel_weight * mean((G(z, y_src) - x)^2) + identity_weight *
   d(F(x), F(G(z, y_src))) + prior_weight * mean(z^2)``, ``F`` the frozen
   face-recognition network (:class:`~decoders.aging.nets.IdentityFeatures`,
   default ``dlib-resnet29``; ``d`` Euclidean as in the paper's
   "identity-preserving" optimisation, which used L-BFGS-B and the identity
   term alone), keeping the best ``z*`` seen; the aged face is
   ``G(z*, y_target)``. Settings and defaults: :class:`InversionConfig`. The
   source group ``y_src`` is an argument of :meth:`AgeCGAN.age`; without it,
   the group whose ``G(E(x), g)`` reconstructs ``x`` best is used.

Command (CPU; ``--steps`` counts both phases and must exceed ``gan_steps``)::

    python -m decoders.aging.train agecgan --out runs/agecgan --batch-size 32 --steps 3000 \\
        --set gan_steps=2000 --threads 1

:func:`load_agecgan` (or :func:`decoders.aging.models.load_aging_model`)
returns an :class:`AgeCGAN`, which meets :class:`~decoders.aging.groups.AgingModel`.
The networks take images in [-1, 1]; everything public takes uint8 or [0, 1].
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm.auto import tqdm

from probes.config import DictConfig
from probes.errors import FaceprobeError, TrainingError
from probes.training.checkpoints import CheckpointError, load_checkpoint
from probes.training.trainer import TrainTask

from .data import AgingFaces
from .groups import AGECGAN_GROUPS, AgeGroups, AgingError, check_faces
from .nets import (
    ConditionalNorm,
    IdentityFeatures,
    ema_copy,
    ema_decay_at,
    frozen,
    images_to_unit,
    lsgan_d_loss,
    lsgan_g_loss,
    optimise,
    sn_conv2d,
    sn_linear,
    unit_to_uint8,
    update_ema,
)

KIND = "agecgan"
GROUPS = AGECGAN_GROUPS


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AgeCGANConfig(DictConfig):
    """Architecture and training of an Age-cGAN run (saved in its checkpoints).

    ``width``/``d_width``/``e_width``: channels of the generator's last hidden
    layer and of the discriminator's/encoder's first; they double at every
    halving of the resolution (a 64 px generator runs 8w, 4w, 2w, w).
    ``gan_steps``: length of the GAN phase; every later step trains the encoder.
    Defaults are sized for CPU: one GAN step at batch 32 takes ~0.3 s on one
    core, one encoder step at batch 64 ~0.2 s.
    """

    config_name = "Age-cGAN"
    config_error = AgingError

    image_size: int = 64
    latent_size: int = 100
    width: int = 32
    d_width: int = 32
    e_width: int = 32
    gan_steps: int = 2000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.998
    flip: bool = True
    conditional_norm: bool = True
    encoder_lr: float = 2e-4
    encoder_batch_size: int = 64
    identity_backbone: str = "dlib-resnet29"  # used by the latent optimisation, not in training

    def __post_init__(self):
        size = self.image_size
        if not isinstance(size, int) or size < 16 or size > 256 or size & (size - 1):
            raise AgingError(f"Age-cGAN image_size must be a power of two in 16..256, got {size!r}")
        for name in ("latent_size", "width", "d_width", "e_width", "gan_steps", "encoder_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AgingError(f"Age-cGAN {name} must be a positive integer, got {value!r}")
        for name in ("lr_g", "lr_d", "encoder_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise AgingError(f"Age-cGAN {name} must be positive, got {value!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.ema_decay < 1):
            raise AgingError("Age-cGAN beta1, beta2 and ema_decay must lie in [0, 1)")
        if not isinstance(self.identity_backbone, str) or not self.identity_backbone:
            raise AgingError(f"Age-cGAN identity_backbone must be a backbone name, got {self.identity_backbone!r}")

    @property
    def n_levels(self) -> int:
        """Stride-2 layers between 4 x 4 and ``image_size``."""
        return int(math.log2(self.image_size // 4))

    # What decoders.aging.train asks of every GAN config: the identity network is
    # only used after training (latent optimisation), no age classifier at all.
    uses_identity = False
    uses_age_classifier = False



Config = AgeCGANConfig  # what decoders.aging.train looks up in each GAN module


@dataclass(frozen=True)
class InversionConfig:
    """Stage 3 settings (per face; Adam on ``z`` from ``E(x)``, the best ``z`` seen is kept).

    Defaults: 40 steps at lr 0.05; pixel term = mean squared error in [0, 1]
    units (about 0.01-0.03 for a fair reconstruction); identity term = the
    Euclidean distance between embeddings (dlib-resnet29: same person under
    0.6), weight 0.05 so that both terms are of similar size; no latent prior.
    ``identity_distance="cosine"`` (1 - cosine) suits cosine-metric backbones.
    ``identity_weight=0`` skips the face network (pixel-wise optimisation, the
    paper's baseline); ``steps=0`` keeps the encoder's ``E(x)``. Cost: each
    step runs G, and with the identity term the face network, forward and
    backward on every face (dlib-resnet29 at 200 px: ~0.1 s per face-step on
    one CPU core).
    """

    steps: int = 40
    lr: float = 0.05
    pixel_weight: float = 1.0
    identity_weight: float = 0.05
    identity_distance: str = "euclidean"
    prior_weight: float = 0.0
    batch_size: int = 16

    def __post_init__(self):
        if self.identity_distance not in ("euclidean", "cosine"):
            raise AgingError(f"inversion identity_distance must be 'euclidean' or 'cosine', "
                             f"got {self.identity_distance!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise AgingError(f"inversion steps must be an integer >= 0, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise AgingError(f"inversion batch_size must be a positive integer, got {self.batch_size!r}")
        for name in ("lr", "pixel_weight", "identity_weight", "prior_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise AgingError(f"inversion {name} must be a finite number >= 0, got {value!r}")
        if self.steps and self.pixel_weight + self.identity_weight + self.prior_weight == 0:
            raise AgingError("inversion: every objective weight is zero")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- networks


def _to_signed(x01: torch.Tensor) -> torch.Tensor:
    return x01 * 2 - 1


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


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


def _images_to_signed(images: torch.Tensor, device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float in [-1, 1]."""
    return _to_signed(images_to_unit(images, device))


def latent_table(n: int, latent_size: int, n_groups: int = len(GROUPS), seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` seeded ``(z, group)`` pairs, groups uniform: ``{"z": n x latent, "group": n}``."""
    gen = torch.Generator().manual_seed(int(seed))
    return {"z": torch.randn(n, latent_size, generator=gen),
            "group": torch.randint(0, n_groups, (n,), generator=gen)}


# --------------------------------------------------------------------------- the training task


class AgeCGANTask(TrainTask):
    """Both training phases of Age-cGAN on one :class:`~probes.training.Trainer` (see the module doc).

    Batches: ``images`` (N x S x S x 3 uint8) and ``group`` (N ints); the
    encoder phase draws its own latents from the torch RNG (checkpointed, so
    resumed runs match uninterrupted ones). Fake faces of the GAN phase use the
    batch's groups, so G sees the data's age mix.
    """

    kind = KIND

    def __init__(self, config: AgeCGANConfig, device: str = "cpu", val: AgingFaces | None = None,
                 info: dict | None = None, sample_rows: int = 8, val_latents: int = 256, val_images: int = 64):
        super().__init__()
        self.cfg, self.groups, self.device = config, GROUPS, torch.device(device)
        nets = build_networks(config)
        g = nets["generator"].to(self.device)
        self.models = {"generator": g, "discriminator": nets["discriminator"].to(self.device),
                       "generator_ema": ema_copy(g), "encoder": nets["encoder"].to(self.device)}
        betas = (config.beta1, config.beta2)
        self.optimizers = {
            "generator": torch.optim.Adam(g.parameters(), lr=config.lr_g, betas=betas),
            "discriminator": torch.optim.Adam(self.models["discriminator"].parameters(), lr=config.lr_d, betas=betas),
            "encoder": torch.optim.Adam(self.models["encoder"].parameters(), lr=config.encoder_lr,
                                        betas=(0.9, 0.999))}
        # Fixed draws for samples and validation (their own generator: training randomness is untouched).
        n_groups = len(self.groups)
        self.sample_z = latent_table(sample_rows, config.latent_size, n_groups, seed=1234)["z"]
        self.val_latents = latent_table(val_latents, config.latent_size, n_groups, seed=4321)
        self.val = val.subset(np.arange(min(val_images, len(val)))) if val is not None and len(val) else None
        self.info = dict(info or {})
        self.sample_columns = n_groups

    # -- description
    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "groups": self.groups.to_dict(),
                "identity_backbone": self.cfg.identity_backbone,
                "phases": {"gan": [0, self.cfg.gan_steps], "encoder": [self.cfg.gan_steps, None]}, **self.info}

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        theirs = checkpoint.get("config", {}).get("model")
        if theirs != self.cfg.to_dict():
            raise CheckpointError(f"{checkpoint['path']}: its Age-cGAN config {theirs} differs from this run's "
                                  f"{self.cfg.to_dict()}")

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        self.models["generator_ema"].eval()

    # -- the step
    def step(self, batch, step: int) -> dict[str, float]:
        if step < self.cfg.gan_steps:
            return self._gan_step(batch, step)
        return self._encoder_step(batch)

    def _gan_step(self, batch, step: int) -> dict[str, float]:
        G, D = self.net("generator"), self.net("discriminator")
        x = _images_to_signed(batch["images"], self.device)
        y = batch["group"].to(self.device).long()
        if self.cfg.flip:
            flip = (torch.rand(len(x)) < 0.5).to(self.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        z = torch.randn(len(x), self.cfg.latent_size).to(self.device)
        fake = G(z, y)

        opt_d = self.optimizers["discriminator"]
        d_real, d_fake = D(x, y), D(fake.detach(), y)
        loss_d = lsgan_d_loss(d_real, d_fake)
        optimise(opt_d, loss_d)

        with frozen(self.models["discriminator"]) as d_plain:
            loss_g = lsgan_g_loss(d_plain(fake, y))
        optimise(self.optimizers["generator"], loss_g)
        update_ema(self.models["generator_ema"], self.models["generator"], ema_decay_at(step, self.cfg.ema_decay))
        with torch.no_grad():  # the untrained encoder's error, so both phases log the same columns
            latent_mse = F.mse_loss(self.models["encoder"](fake.detach()), z)
        return {"phase": 0.0, "d_loss": loss_d.item(), "g_loss": loss_g.item(), "d_real": d_real.mean().item(),
                "d_fake": d_fake.mean().item(), "latent_mse": latent_mse.item()}

    def _encoder_step(self, batch) -> dict[str, float]:
        n, n_groups = self.cfg.encoder_batch_size, len(self.groups)
        z = torch.randn(n, self.cfg.latent_size).to(self.device)
        y = torch.randint(0, n_groups, (n,)).to(self.device)
        with torch.no_grad():
            x = self.models["generator_ema"](z, y)
        loss = F.mse_loss(self.net("encoder")(x), z)
        optimise(self.optimizers["encoder"], loss)
        # The frozen discriminator's view of real faces and of the EMA generator's (eval mode:
        # spectral norm's power iteration does not move).
        D = self.models["discriminator"]
        was = D.training
        D.eval()
        with torch.no_grad():
            real = _images_to_signed(batch["images"], self.device)
            d_real, d_fake = D(real, batch["group"].to(self.device)), D(x, y)
        D.train(was)
        return {"phase": 1.0, "d_loss": lsgan_d_loss(d_real, d_fake).item(), "g_loss": lsgan_g_loss(d_fake).item(),
                "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(), "latent_mse": loss.item()}

    # -- looking at it
    @torch.no_grad()
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        encoder = self.models["encoder"]
        was = encoder.training
        encoder.eval()
        try:
            return torch.cat([encoder(x[i:i + 64]) for i in range(0, len(x), 64)])
        finally:
            encoder.train(was)

    @torch.no_grad()
    def latent_error(self, latents: dict | None = None) -> dict[str, float]:
        """``latent_mse`` = mean (E(G(z, y)) - z)^2 and ``pixel_mse`` of G(E(G(z, y)), y) vs G(z, y) in
        [0, 1] units, with the EMA generator, on ``latents`` (default: the task's 256 fixed ones)."""
        latents = latents if latents is not None else self.val_latents
        G = self.models["generator_ema"]
        z, y = latents["z"].to(self.device), latents["group"].to(self.device)
        x = torch.cat([G(z[i:i + 64], y[i:i + 64]) for i in range(0, len(z), 64)])
        z_hat = self._encode(x)
        recon = torch.cat([G(z_hat[i:i + 64], y[i:i + 64]) for i in range(0, len(z), 64)])
        return {"latent_mse": float(F.mse_loss(z_hat, z)), "pixel_mse": float(F.mse_loss(_to_unit(recon), _to_unit(x)))}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float] | None:
        out = {"val_" + k: v for k, v in self.latent_error().items()}
        if self.val is not None:
            x = _images_to_signed(torch.from_numpy(np.ascontiguousarray(self.val.images)), self.device)
            y = torch.as_tensor(self.val.group, device=self.device).long()
            recon = self.models["generator_ema"](self._encode(x), y)
            out["val_real_pixel_mse"] = float(F.mse_loss(_to_unit(recon), _to_unit(x)))
        return out

    @torch.no_grad()
    def sample(self, step: int) -> torch.Tensor | None:
        G, k = self.models["generator_ema"], len(self.groups)
        if step <= self.cfg.gan_steps:
            self.sample_columns = k
            z = self.sample_z.repeat_interleave(k, 0).to(self.device)
            y = torch.arange(k).repeat(len(self.sample_z)).to(self.device)
            return _to_unit(G(z, y)).cpu()
        n = min(4, len(self.sample_z))
        y_gen = torch.arange(n) % k
        inputs, groups = [G(self.sample_z[:n].to(self.device), y_gen.to(self.device))], [y_gen.to(self.device)]
        if self.val is not None:
            m = min(4, len(self.val))
            inputs.append(_images_to_signed(torch.from_numpy(np.ascontiguousarray(self.val.images[:m])), self.device))
            groups.append(torch.as_tensor(self.val.group[:m], device=self.device).long())
        x, y = torch.cat(inputs), torch.cat(groups)
        z = self._encode(x)
        rows = [x, G(z, y)] + [G(z, torch.full_like(y, g)) for g in range(k)]
        self.sample_columns = 2 + k
        return _to_unit(torch.stack(rows, 1).flatten(0, 1)).cpu()


def build_task(config: AgeCGANConfig, *, train: AgingFaces, val: AgingFaces | None = None,
               identity: IdentityFeatures | None = None, age_classifier=None, device: str = "cpu",
               info: dict | None = None) -> AgeCGANTask:
    """The :class:`AgeCGANTask` for ``train`` (models initialised from the current torch RNG).

    ``identity`` and ``age_classifier`` are not used in training (the common
    signature of :mod:`decoders.aging.train`). When ``info["cli"]["steps"]``
    is known it must exceed ``config.gan_steps``, or the encoder would never train.
    """
    if train.groups != GROUPS:
        raise AgingError(f"Age-cGAN trains on {GROUPS.name!r} groups, the faces are grouped as {train.groups.name!r}")
    if train.image_size != config.image_size:
        raise AgingError(f"faces are {train.image_size}x{train.image_size}, the config says {config.image_size}")
    steps = ((info or {}).get("cli") or {}).get("steps")
    if steps is not None and steps <= config.gan_steps:
        raise TrainingError(f"Age-cGAN trains its GAN for gan_steps={config.gan_steps} steps, then its encoder; "
                            f"--steps {steps} leaves the encoder untrained: use --steps > {config.gan_steps} "
                            f"or --set gan_steps=N with N < {steps}")
    return AgeCGANTask(config, device, val, info)


# --------------------------------------------------------------------------- stage 3: latent optimisation


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
    use_id = config.identity_weight > 0
    if use_id and identity is None:
        raise AgingError("inversion identity_weight > 0 needs an identity network")
    with torch.no_grad():
        target_emb = identity(target01) if use_id else None

    def objective(z: torch.Tensor) -> torch.Tensor:
        x = _to_unit(generator(z, groups))
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

    z = z0.detach().clone().requires_grad_(True)
    with torch.no_grad():
        start = objective(z)
    best, best_z = start.clone(), z.detach().clone()
    if config.steps == 0:
        return best_z, start, best
    opt = torch.optim.Adam([z], lr=config.lr)
    for _ in range(config.steps):
        value = objective(z)
        with torch.no_grad():
            better = value < best
            best = torch.where(better, value, best)
            best_z[better] = z.detach()[better]
        opt.zero_grad(set_to_none=True)
        value.sum().backward()
        opt.step()
    with torch.no_grad():
        value = objective(z)
        better = value < best
        best = torch.where(better, value, best)
        best_z[better] = z.detach()[better]
    return best_z, start, best


# --------------------------------------------------------------------------- the aging model


class AgeCGAN:
    """A trained Age-cGAN as an :class:`~decoders.aging.groups.AgingModel`.

    ``age(images, target, source_groups=None, source_ages=None)``: the encoder
    gives ``z0 = E(x)``, :func:`optimise_latents` refines it at the source
    group, and ``G(z*, target)`` is returned. Age-cGAN needs each face's
    source group; when neither ``source_groups`` nor ``source_ages`` is given
    it takes, per face, the group whose reconstruction ``G(E(x), g)`` is
    closest to the input in pixel MSE (:meth:`estimate_source_groups`; a
    reconstruction criterion, not an age estimate). ``last_source_groups``
    holds the groups used by the last call.

    ``identity``: a module mapping N x 3 x S x S [0, 1] faces to embeddings;
    default: :class:`~decoders.aging.nets.IdentityFeatures` of
    ``identity_backbone``, built on first use. ``inversion``
    (:class:`InversionConfig`) can be replaced at any time. ``progress``: a
    tqdm bar over batches of the latent optimisation.
    """

    kind = KIND

    def __init__(self, generator: AgeCGANGenerator, encoder: AgeCGANEncoder, config: AgeCGANConfig, *,
                 groups: AgeGroups = GROUPS, inversion: InversionConfig | None = None,
                 identity: nn.Module | None = None, device: str | torch.device = "cpu",
                 checkpoint: str | None = None, step: int | None = None, progress: bool = True):
        self.config, self.groups = config, groups
        self.progress = progress
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.inversion = inversion or InversionConfig()
        self._identity = identity
        self.checkpoint, self.step = checkpoint, step
        self.last_source_groups: np.ndarray | None = None
        self._latents: tuple | None = None  # (key of the last faces aged, their z*)

    image_size = property(lambda self: self.config.image_size)
    latent_size = property(lambda self: self.config.latent_size)
    identity_backbone = property(lambda self: self.config.identity_backbone)

    def __repr__(self) -> str:
        return (f"AgeCGAN(image_size={self.image_size}, latent={self.latent_size}, groups={self.groups.labels}, "
                f"identity_backbone={self.identity_backbone!r}, checkpoint={self.checkpoint!r})")

    @property
    def identity(self) -> nn.Module:
        """The frozen face network of the identity term (built on first use)."""
        if self._identity is None:
            self._identity = IdentityFeatures(self.identity_backbone, device=self.device)
        return self._identity

    # -- pieces
    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        return images_to_unit(torch.from_numpy(np.ascontiguousarray(images)), self.device)

    def _per_face(self, values, n: int, argument: str) -> np.ndarray:
        values = self.groups.check(values, argument)
        if values.size == 1:
            return np.repeat(values, n)
        if values.size != n:
            raise AgingError(f"{argument} must be one group index or one per image ({n}), got {values.size}")
        return values

    @torch.no_grad()
    def encode(self, images) -> np.ndarray:
        """The encoder's latents ``E(x)`` of uint8 faces (N x latent float32)."""
        images = check_faces(images, self.image_size)
        out = [self.encoder(_to_signed(self._tensor(images[i:i + 64]))).cpu() for i in range(0, len(images), 64)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.latent_size), np.float32)

    @torch.no_grad()
    def generate(self, z, groups) -> np.ndarray:
        """``G(z, groups)`` as N x S x S x 3 uint8."""
        z = torch.as_tensor(np.asarray(z, np.float32), device=self.device)
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise AgingError(f"z must be N x {self.latent_size}, got shape {tuple(z.shape)}")
        y = torch.as_tensor(self._per_face(groups, len(z), "groups"), device=self.device)
        out = [_to_unit(self.generator(z[i:i + 64], y[i:i + 64])) for i in range(0, len(z), 64)]
        return unit_to_uint8(torch.cat(out)) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    @torch.no_grad()
    def estimate_source_groups(self, images) -> np.ndarray:
        """Per face, the group ``g`` minimising the pixel MSE of ``G(E(x), g)`` to ``x``."""
        images = check_faces(images, self.image_size)
        out = []
        for i in range(0, len(images), 64):
            x01 = self._tensor(images[i:i + 64])
            z = self.encoder(_to_signed(x01))
            errors = torch.stack([(_to_unit(self.generator(z, torch.full((len(z),), g, device=self.device)))
                                   - x01).pow(2).flatten(1).mean(1) for g in range(len(self.groups))], 1)
            out.append(errors.argmin(1).cpu())
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)

    def _source_groups(self, images: np.ndarray, source_groups, source_ages) -> np.ndarray:
        if source_groups is not None and source_ages is not None:
            raise AgingError("give source_groups or source_ages, not both")
        n = len(images)
        if source_ages is not None:
            ages = np.atleast_1d(np.asarray(source_ages, dtype=np.float64))
            if ages.size not in (1, n):
                raise AgingError(f"source_ages must be one age or one per image ({n}), got {ages.size}")
            groups = self.groups.of(ages)
            if np.any(groups < 0):
                bad = ages[groups < 0][0]
                raise AgingError(f"source_ages {bad} is outside the age groups of {self.groups.name} "
                                 f"({', '.join(self.groups.labels)})")
            return np.broadcast_to(groups, (n,)).copy()
        if source_groups is not None:
            return self._per_face(source_groups, n, "source_groups")
        return self.estimate_source_groups(images)

    def invert(self, images, source_groups=None, source_ages=None, return_objectives: bool = False):
        """Stage 3 latents ``z*`` (N x latent float32) of uint8 faces at their source groups.

        With ``return_objectives``: ``(z*, objective at E(x), objective at z*)``.
        """
        images = check_faces(images, self.image_size)
        source = self._source_groups(images, source_groups, source_ages)
        self.last_source_groups = source
        cfg = self.inversion
        optimise = cfg.steps > 0 or return_objectives
        identity = self.identity if optimise and cfg.identity_weight > 0 else None
        zs, starts, ends = [], [], []
        starts_at = range(0, len(images), cfg.batch_size)
        # Optimising many faces takes a while (the face network runs forward and backward every step).
        for i in tqdm(starts_at, desc="Age-cGAN latent optimisation", unit="batch", leave=False,
                      disable=not (optimise and self.progress and len(starts_at) > 1)):
            x01 = self._tensor(images[i:i + cfg.batch_size])
            y = torch.as_tensor(source[i:i + cfg.batch_size], device=self.device)
            with torch.no_grad():
                z0 = self.encoder(_to_signed(x01))
            if not optimise:  # the encoder's latents as they are
                zs.append(z0.cpu())
                continue
            z, start, end = optimise_latents(self.generator, x01, y, z0, cfg, identity)
            zs.append(z.cpu())
            starts.append(start.cpu())
            ends.append(end.cpu())
        if not zs:
            empty = np.zeros(0, np.float32)
            z = np.zeros((0, self.latent_size), np.float32)
            return (z, empty, empty) if return_objectives else z
        z = torch.cat(zs).numpy()
        if return_objectives:
            return z, torch.cat(starts).numpy(), torch.cat(ends).numpy()
        return z

    def age(self, images, target, source_groups=None, source_ages=None) -> np.ndarray:
        """``images`` (N x S x S x 3 uint8) re-drawn at age group(s) ``target``; uint8, same size.

        The latents of the last call's faces are kept: aging the same faces
        (same sources, same inversion settings and face network) to another
        target skips the latent optimisation.
        """
        images = check_faces(images, self.image_size)
        target = self._per_face(target, len(images), "target")
        source = self._source_groups(images, source_groups, source_ages)
        key = (hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest(), source.tobytes(), self.inversion,
               id(self._identity))
        if self._latents is not None and self._latents[0] == key:
            z = self._latents[1]
            self.last_source_groups = source
        else:
            z = self.invert(images, source_groups=source)
            self._latents = (key, z)
        return self.generate(z, target)


# --------------------------------------------------------------------------- checkpoints


def _config_of(state: dict) -> tuple[AgeCGANConfig, AgeGroups]:
    path = state.get("path", "<checkpoint>")
    if state.get("kind") != KIND:
        raise CheckpointError(f"{path} holds a {state.get('kind')!r} run, not an Age-cGAN ({KIND!r}) one")
    try:
        return AgeCGANConfig.from_dict(state["config"]["model"]), AgeGroups.from_dict(state["config"]["groups"])
    except (KeyError, TypeError, ValueError, FaceprobeError) as exc:
        raise CheckpointError(f"{path}: no valid Age-cGAN config: {type(exc).__name__}: {exc}") from exc


def _load_into(net: nn.Module, state: dict, name: str) -> None:
    try:
        net.load_state_dict(state["models"][name])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{state.get('path', '<checkpoint>')}: the {name} weights do not fit its Age-cGAN "
                              f"config: {type(exc).__name__}: {exc}") from exc


def generator_from_checkpoint(state: dict,
                              device: str | torch.device = "cpu") -> tuple[AgeCGANGenerator, AgeCGANConfig]:
    """The EMA generator of a loaded checkpoint dict, at any step (eval mode, frozen)."""
    config, groups = _config_of(state)
    generator = AgeCGANGenerator(config, len(groups))
    _load_into(generator, state, "generator_ema")
    return generator.to(device).eval().requires_grad_(False), config


def from_checkpoint(state: dict, device: str | torch.device = "cpu", inversion: InversionConfig | None = None,
                    identity: nn.Module | None = None) -> AgeCGAN:
    """The :class:`AgeCGAN` of a loaded checkpoint dict (see :func:`probes.training.checkpoints.load_checkpoint`).

    CheckpointError (naming the file) for another kind, weights that do not
    fit the saved config, or a checkpoint still in the GAN phase (untrained encoder).
    """
    config, groups = _config_of(state)
    path = state.get("path", "<checkpoint>")
    step = int(state.get("step", 0))
    if step <= config.gan_steps:
        raise CheckpointError(f"{path} is at step {step}, still in Age-cGAN's GAN phase (gan_steps="
                              f"{config.gan_steps}): its encoder is untrained; continue the run "
                              f"(python -m decoders.aging.train agecgan --resume --steps N, N > {config.gan_steps})")
    generator, encoder = AgeCGANGenerator(config, len(groups)), AgeCGANEncoder(config)
    _load_into(generator, state, "generator_ema")
    _load_into(encoder, state, "encoder")
    return AgeCGAN(generator, encoder, config, groups=groups, inversion=inversion, identity=identity, device=device,
                   checkpoint=path, step=step)


def load_agecgan(checkpoint: str | Path, device: str | torch.device = "cpu", inversion: InversionConfig | None = None,
                 identity: nn.Module | None = None) -> AgeCGAN:
    """A trained Age-cGAN from a ``.pt`` file or a run folder (its ``checkpoints/latest.pt``).

    ``inversion``: latent-optimisation settings (default :class:`InversionConfig`);
    ``identity``: a module replacing the checkpoint's named face network.
    """
    return from_checkpoint(load_checkpoint(checkpoint), device, inversion, identity)
