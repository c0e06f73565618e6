"""A trained Age-cGAN as an aging model (:class:`AgeCGAN`) and its loading from checkpoints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from probes.errors import FaceprobeError
from probes.training.checkpoints import CheckpointError, load_checkpoint

from ..age_reader import recorded_age_reader
from ..blocks import array_to_unit, signed_to_unit, unit_to_signed, unit_to_uint8
from ..checks import check_kind
from ..groups import AgeGroups, AgingError, check_faces
from ..identity import IdentityFeatures
from .config import GROUPS, KIND, AgeCGANConfig, InversionConfig
from .inversion import optimise_latents
from .networks import AgeCGANEncoder, AgeCGANGenerator


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

    ``training_age_reader``: the labeller name of a pretrained age network the
    GAN was trained against, as its checkpoint's config records it (Age-cGAN
    trains none: None unless a checkpoint says otherwise).

    ``identity``: a module mapping N x 3 x S x S [0, 1] faces to embeddings;
    default: :class:`~decoders.aging.identity.IdentityFeatures` of
    ``identity_backbone``, built on first use. ``inversion``
    (:class:`InversionConfig`) can be replaced at any time. ``progress``
    (an attribute, default True): a tqdm bar over batches of the latent optimisation.
    """

    kind = KIND
    progress = True

    def __init__(self, generator: AgeCGANGenerator, encoder: AgeCGANEncoder, config: AgeCGANConfig, *,
                 groups: AgeGroups = GROUPS, inversion: InversionConfig | None = None,
                 identity: nn.Module | None = None, device: str | torch.device = "cpu",
                 checkpoint: str | None = None, step: int | None = None, training_age_reader: str | None = None):
        self.config, self.groups = config, groups
        self.training_age_reader = training_age_reader or None
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
    @torch.no_grad()
    def encode(self, images) -> np.ndarray:
        """The encoder's latents ``E(x)`` of uint8 faces (N x latent float32)."""
        images = check_faces(images, self.image_size)
        out = [self.encoder(unit_to_signed(array_to_unit(images[i:i + 64], self.device))).cpu()
               for i in range(0, len(images), 64)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.latent_size), np.float32)

    @torch.no_grad()
    def generate(self, z, groups) -> np.ndarray:
        """``G(z, groups)`` as N x S x S x 3 uint8."""
        z = torch.as_tensor(np.asarray(z, np.float32), device=self.device)
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise AgingError(f"z must be N x {self.latent_size}, got shape {tuple(z.shape)}")
        y = torch.as_tensor(self.groups.per_face(groups, len(z), "groups"), device=self.device)
        out = [signed_to_unit(self.generator(z[i:i + 64], y[i:i + 64])) for i in range(0, len(z), 64)]
        return unit_to_uint8(torch.cat(out)) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    @torch.no_grad()
    def estimate_source_groups(self, images) -> np.ndarray:
        """Per face, the group ``g`` minimising the pixel MSE of ``G(E(x), g)`` to ``x``."""
        images = check_faces(images, self.image_size)
        out = []
        for i in range(0, len(images), 64):
            x01 = array_to_unit(images[i:i + 64], self.device)
            z = self.encoder(unit_to_signed(x01))
            errors = torch.stack([(signed_to_unit(self.generator(z, torch.full((len(z),), g, device=self.device)))
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
            return self.groups.per_face(source_groups, n, "source_groups")
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
            x01 = array_to_unit(images[i:i + cfg.batch_size], self.device)
            y = torch.as_tensor(source[i:i + cfg.batch_size], device=self.device)
            with torch.no_grad():
                z0 = self.encoder(unit_to_signed(x01))
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
        target = self.groups.per_face(target, len(images))
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
    check_kind(state, KIND, f"an Age-cGAN ({KIND!r}) one")
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
                   checkpoint=path, step=step, training_age_reader=recorded_age_reader(state["config"]))


def load_agecgan(checkpoint: str | Path, device: str | torch.device = "cpu", inversion: InversionConfig | None = None,
                 identity: nn.Module | None = None) -> AgeCGAN:
    """A trained Age-cGAN from a ``.pt`` file or a run folder (its ``checkpoints/latest.pt``).

    ``inversion``: latent-optimisation settings (default :class:`InversionConfig`);
    ``identity``: a module replacing the checkpoint's named face network.
    """
    return from_checkpoint(load_checkpoint(checkpoint), device, inversion, identity)
