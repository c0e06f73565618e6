"""Age-cGAN's name, age groups, training config and latent-optimisation settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from probes.config import DictConfig

from ..checks import require_adam_ranges, require_finite_non_negative, require_non_negative_ints, require_positive_ints
from ..groups import AGECGAN_GROUPS, AgingError

KIND = "agecgan"
GROUPS = AGECGAN_GROUPS


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
        require_positive_ints("Age-cGAN", self, ("latent_size", "width", "d_width", "e_width", "gan_steps",
                                                 "encoder_batch_size"))
        for name in ("lr_g", "lr_d", "encoder_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise AgingError(f"Age-cGAN {name} must be positive, got {value!r}")
        require_adam_ranges("Age-cGAN", self)
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
class InversionConfig(DictConfig):
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

    config_name = "inversion"
    config_error = AgingError

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
        require_non_negative_ints("inversion", self, ("steps",))
        require_positive_ints("inversion", self, ("batch_size",))
        require_finite_non_negative("inversion", self, ("lr", "pixel_weight", "identity_weight", "prior_weight"))
        if self.steps and self.pixel_weight + self.identity_weight + self.prior_weight == 0:
            raise AgingError("inversion: every objective weight is zero")
