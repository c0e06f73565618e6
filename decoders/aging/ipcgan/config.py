"""IPCGAN's name, age groups and config (architecture, loss weights, optimiser)."""

from __future__ import annotations

from dataclasses import dataclass

from probes.config import DictConfig

from ..checks import require_adam_ranges, require_finite_non_negative, require_non_negative_ints, require_positive_ints
from ..groups import IPCGAN_GROUPS, AgingError

KIND = "ipcgan"
GROUPS = IPCGAN_GROUPS


@dataclass(frozen=True)
class IPCGANConfig(DictConfig):
    """Architecture, loss weights and optimiser of an IPCGAN run (saved in its checkpoints).

    Loss weights: the paper's 75 / 0.5e-4 / 30 (GAN / identity / age) go with
    its own scales (an L2 summed over a feature map; GAN loss unhalved). Ours
    are: LSGAN generator term 1/2 (D - 1)^2 (about 0.1-0.5 in training), 1 - cosine
    of face embeddings (0 for the untouched input; the dlib model calls two
    faces the same person under about 0.2), cross entropy over 5 groups
    (1.6 at chance). ``gan`` 1 and ``age`` 0.4 keep the paper's GAN:age ratio
    (75:30); ``identity`` 5 makes a drift of 0.05 in 1 - cosine cost as much as a
    typical GAN term, so the generator ages faces without turning them into
    someone else.

    Pretrained age reader (off by default): ``age_reader`` names a
    differentiable age labeller (``"faceapi-agegender"``, a regressor in years
    with a sex head); ``age_regression`` weighs the L1 in years between its
    reading of the aged face and the target group's midpoint, ``sex_keep`` the
    cross-entropy of the aged face's P(male) against the source's, and
    ``age_augment`` shows the reader a random view of each face (so the
    generator cannot fool it with pixel-exact patterns). The audit judges age
    with a different estimator.
    """

    config_name = "IPCGAN"
    config_error = AgingError

    image_size: int = 64
    g_width: int = 16  # generator channels at full resolution (x2 per downsampling, 2 of them)
    g_blocks: int = 6  # residual blocks at the bottleneck
    d_width: int = 32  # discriminator channels of its first layer (x2 per layer, at most x8)
    residual: bool = True  # output = tanh(atanh(input) + learned change): starts as the identity map
    conditional_norm: bool = True  # the group also picks every instance norm's scale and shift
    spectral_norm: bool = True  # in the discriminator
    wrong_condition: bool = True  # real faces with a wrong group are fakes for D
    gan: float = 1.0
    identity: float = 5.0
    age: float = 0.4
    age_reader: str = ""  # a differentiable age labeller for the age loss ("" = none)
    age_regression: float = 0.0  # weight of |reader's age - target midpoint| (years)
    sex_keep: float = 0.0  # weight of the reader's P(male) cross-entropy, aged vs source face
    age_augment: bool = True  # the reader sees a random view of each face
    identity_batch: int = 0  # faces per batch that get the identity loss (0 = all); the backbone is the cost
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    identity_backbone: str = "dlib-resnet29"
    classifier_steps: int = 400  # pretraining of the age classifier (batch 64: ~5 epochs of UTKFace)
    classifier_width: int = 16

    def __post_init__(self):
        if self.image_size not in (64, 128):
            raise AgingError(f"IPCGAN image_size must be 64 or 128, got {self.image_size!r}")
        require_positive_ints("IPCGAN", self, ("g_width", "g_blocks", "d_width", "classifier_steps",
                                               "classifier_width"))
        require_non_negative_ints("IPCGAN", self, ("identity_batch",))
        require_finite_non_negative("IPCGAN loss weight", self, ("gan", "identity", "age", "age_regression",
                                                                 "sex_keep"))
        if (self.age_regression > 0 or self.sex_keep > 0) and not self.age_reader:
            raise AgingError("IPCGAN age_regression / sex_keep > 0 need an age_reader "
                             "(a labeller name such as 'faceapi-agegender')")
        if self.gan == 0:
            raise AgingError("IPCGAN loss weight gan must be > 0 (without it the generator is not a GAN)")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise AgingError(f"IPCGAN {name} must be positive, got {getattr(self, name)!r}")
        require_adam_ranges("IPCGAN", self)

    @property
    def uses_identity(self) -> bool:
        return self.identity > 0

    @property
    def uses_age_reader(self) -> bool:
        return bool(self.age_reader) and (self.age_regression > 0 or self.sex_keep > 0)

    @property
    def uses_age_classifier(self) -> bool:
        return self.age > 0


Config = IPCGANConfig  # what decoders.aging.train looks up in each GAN module
