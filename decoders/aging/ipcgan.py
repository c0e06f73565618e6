"""IPCGAN: identity-preserved conditional GAN for face aging (Wang et al., CVPR 2018).

The generator takes a face and a target age group (5 groups, 11-20 ... 50+,
given as 5 constant one-hot planes concatenated to the image channels) and
returns the face at that age. Its losses:

- **GAN** (least squares): a conditional discriminator sees image + condition
  planes; real faces with their own group are real, generated faces *and
  real faces shown with a wrong group* are fake (so D learns what each age
  looks like, not just what a face looks like);
- **identity**: 1 - cosine between the embeddings, by a frozen face-recognition
  backbone (:class:`~decoders.aging.nets.IdentityFeatures`, default
  ``dlib-resnet29``), of the input and the output. The paper used an L2
  between feature maps of a pretrained net; we use the embedding the audit
  also measures, with the cosine so the term is scale-free (0 = same
  direction). Input embeddings are cached per training face;
- **age**: cross entropy of a frozen, pretrained
  :class:`~decoders.aging.nets.AgeGroupClassifier` on the output vs the
  target group.

Training goes through the shared :class:`~probes.training.Trainer`
(:class:`IPCGANTask`); ``python -m decoders.aging.train ipcgan ...`` is the
command. Differences from the paper, for CPU-sized runs (all in
:class:`IPCGANConfig`): 64 x 64 faces (128 optional); a smaller generator
whose output is the input plus a learned change (``residual``: it starts as
the identity map, so it draws faces from the first step and only has to learn
what aging changes); the group also sets the scale and shift of every
instance norm (instance norm alone erases constant condition planes); spectral
norm in D; an EMA copy of the generator is what is sampled and exported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probes.config import DictConfig
from probes.training.checkpoints import CheckpointError, load_checkpoint
from probes.training.trainer import TrainTask

from .data import AgingFaces
from .groups import IPCGAN_GROUPS, AgeGroups, AgingError, check_faces
from .nets import (
    AgeGroupClassifier,
    ConditionalNorm,
    EmbeddingCache,
    IdentityFeatures,
    age_classifier_from_state,
    condition_maps,
    ema_copy,
    ema_decay_at,
    frozen,
    images_to_unit,
    lsgan_d_loss,
    lsgan_g_loss,
    optimise,
    sn_conv2d,
    unit_to_uint8,
    update_ema,
)

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
        for name in ("g_width", "g_blocks", "d_width", "classifier_steps", "classifier_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AgingError(f"IPCGAN {name} must be a positive integer, got {value!r}")
        if not isinstance(self.identity_batch, int) or self.identity_batch < 0:
            raise AgingError(f"IPCGAN identity_batch must be an integer >= 0, got {self.identity_batch!r}")
        for name in ("gan", "identity", "age"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise AgingError(f"IPCGAN loss weight {name} must be a finite number >= 0, got {value!r}")
        if self.gan == 0:
            raise AgingError("IPCGAN loss weight gan must be > 0 (without it the generator is not a GAN)")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise AgingError(f"IPCGAN {name} must be positive, got {getattr(self, name)!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.ema_decay < 1):
            raise AgingError("IPCGAN beta1, beta2 and ema_decay must lie in [0, 1)")

    @property
    def uses_identity(self) -> bool:
        return self.identity > 0

    @property
    def uses_age_classifier(self) -> bool:
        return self.age > 0



Config = IPCGANConfig  # what decoders.aging.train looks up in each GAN module


# --------------------------------------------------------------------------- networks


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
        signed = x * 2 - 1
        h = torch.cat([signed, condition_maps(target, self.n_groups, x.shape[-2:]).to(x)], 1)
        for layer in (*self.encoder, *self.blocks, *self.decoder):
            h = layer(h, target)
        change = self.head(h)
        if self.residual:
            out = torch.tanh(torch.atanh(signed.clamp(-0.995, 0.995)) + change)
        else:
            out = torch.tanh(change)
        return (out + 1) / 2


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
        return self.net(torch.cat([x * 2 - 1, c], 1))


def build_generator(config: IPCGANConfig, n_groups: int = len(GROUPS)) -> IPCGANGenerator:
    return IPCGANGenerator(n_groups, config.g_width, config.g_blocks, config.residual, config.conditional_norm)


def build_discriminator(config: IPCGANConfig, n_groups: int = len(GROUPS)) -> IPCGANDiscriminator:
    return IPCGANDiscriminator(n_groups, config.image_size, config.d_width, config.spectral_norm)


# --------------------------------------------------------------------------- training


class IPCGANTask(TrainTask):
    """One IPCGAN step: a discriminator update, then a generator update, then the EMA.

    Models: ``generator``, ``discriminator`` (trained), ``g_ema`` (the averaged
    generator that is sampled and exported) and ``age_classifier`` (frozen;
    kept in the checkpoint so a run is self-contained). The identity backbone is
    not stored (it is a pinned, named weight file); the config records its name
    and weights id.
    """

    kind = KIND

    def __init__(self, config: IPCGANConfig, n_train: int, identity: IdentityFeatures | None,
                 age_classifier: AgeGroupClassifier | None, device: str = "cpu",
                 sample_faces: np.ndarray | None = None, val: AgingFaces | None = None,
                 info: dict | None = None, val_images: int = 16):
        super().__init__()
        if config.uses_identity and identity is None:
            raise AgingError("the identity loss weight is > 0 but no IdentityFeatures were given")
        if config.uses_age_classifier and age_classifier is None:
            raise AgingError("the age loss weight is > 0 but no age classifier was given")
        if age_classifier is not None and age_classifier.groups != GROUPS:
            raise AgingError(f"the age classifier predicts {age_classifier.groups.name!r} groups, "
                             f"IPCGAN needs {GROUPS.name!r}")
        self.cfg, self.groups = config, GROUPS
        self.device = torch.device(device)
        generator = build_generator(config).to(self.device)
        self.models["generator"] = generator
        self.models["discriminator"] = build_discriminator(config).to(self.device)
        self.models["g_ema"] = ema_copy(generator)
        if age_classifier is not None:
            self.models["age_classifier"] = age_classifier.to(self.device).requires_grad_(False).eval()
        betas = (config.beta1, config.beta2)
        self.optimizers["generator"] = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas)
        self.optimizers["discriminator"] = torch.optim.Adam(self.models["discriminator"].parameters(),
                                                            lr=config.lr_d, betas=betas)
        self.identity = identity.to(self.device) if identity is not None else None
        self.cache = EmbeddingCache(n_train)
        self.sample_faces = sample_faces
        self.sample_columns = 1 + len(GROUPS)
        self.val = val.subset(np.arange(min(val_images, len(val)))) if val is not None and len(val) else None
        self._val_embeddings = None
        self.info = dict(info or {})

    # -- description
    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "groups": self.groups.to_dict(),
                "identity": self.identity.describe() if self.identity is not None else None,
                "identity_backbone": self.cfg.identity_backbone, **self.info}

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        theirs = checkpoint.get("config", {})
        if theirs.get("model") != self.cfg.to_dict():
            raise CheckpointError(f"{checkpoint['path']}: its IPCGAN config {theirs.get('model')} differs from "
                                  f"this run's {self.cfg.to_dict()}")
        mine = self.identity.describe() if self.identity is not None else None
        if (theirs.get("identity") or {}).get("weights_id") != (mine or {}).get("weights_id"):
            raise CheckpointError(f"{checkpoint['path']} was trained against identity model "
                                  f"{theirs.get('identity')}, not {mine}")

    def extra_state(self) -> dict:
        return {"identity_cache": self.cache.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "identity_cache" in state:
            self.cache.load_state_dict(state["identity_cache"])

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        for name in ("g_ema", "age_classifier"):
            if name in self.models:
                self.models[name].eval()

    # -- the step
    def step(self, batch, step: int) -> dict[str, float]:
        cfg, n_groups = self.cfg, len(self.groups)
        x = images_to_unit(batch["images"], self.device)
        own = batch["group"].to(self.device).long()
        n = len(x)
        target = torch.randint(0, n_groups, (n,)).to(self.device)
        generator, disc = self.net("generator"), self.net("discriminator")
        fake = generator(x, target)

        # Discriminator: real faces with their own group are real; generated faces and
        # (IPCGAN) real faces under a wrong group are fake.
        opt_d = self.optimizers["discriminator"]
        d_real, d_fake = disc(x, own), disc(fake.detach(), target)
        fakes = [d_fake]
        if cfg.wrong_condition:
            wrong = (own + torch.randint(1, n_groups, (n,)).to(self.device)) % n_groups
            fakes.append(disc(x, wrong))
        loss_d = lsgan_d_loss(d_real, *fakes)
        optimise(opt_d, loss_d)

        with frozen(self.models["discriminator"]) as d_plain:
            loss_gan = lsgan_g_loss(d_plain(fake, target))
        total = cfg.gan * loss_gan
        out = {"d": loss_d.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(),
               "g_gan": loss_gan.item()}
        if cfg.uses_age_classifier:
            logits = self.models["age_classifier"](fake)
            loss_age = F.cross_entropy(logits, target)
            total = total + cfg.age * loss_age
            out.update(age=loss_age.item(), age_acc=(logits.argmax(1) == target).float().mean().item())
        if cfg.uses_identity:
            k = n if cfg.identity_batch == 0 else min(n, cfg.identity_batch)
            reference = self.cache.lookup(batch["index"][:k], x[:k], self.identity)
            loss_id = IdentityFeatures.distance(self.identity(fake[:k]), reference).mean()
            total = total + cfg.identity * loss_id
            out["identity"] = loss_id.item()
        optimise(self.optimizers["generator"], total)
        update_ema(self.models["g_ema"], self.models["generator"], ema_decay_at(step, cfg.ema_decay))
        out["g_total"] = total.item()
        return out

    # -- looking at it
    @torch.no_grad()
    def age_all(self, images: np.ndarray) -> torch.Tensor:
        """Every face at every group with the EMA generator: N x G x 3 x S x S in [0, 1]."""
        g = self.models["g_ema"]
        x = images_to_unit(torch.from_numpy(np.ascontiguousarray(images)), self.device)
        n_groups = len(self.groups)
        outs = [g(x, torch.full((len(x),), t, dtype=torch.long, device=self.device)) for t in range(n_groups)]
        return torch.stack(outs, 1)

    def sample(self, step: int) -> torch.Tensor | None:
        """One row per fixed input face: the input, then the face at each of the 5 groups."""
        if self.sample_faces is None or len(self.sample_faces) == 0:
            return None
        x = images_to_unit(torch.from_numpy(np.ascontiguousarray(self.sample_faces)), "cpu")
        aged = self.age_all(self.sample_faces).cpu()
        return torch.cat([x[:, None], aged], 1).flatten(0, 1)

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float] | None:
        """On held-out faces: age-classifier accuracy on the target group, identity cosine to the input."""
        if self.val is None:
            return None
        aged = self.age_all(self.val.images)  # N x G x 3 x S x S
        n, n_groups = aged.shape[:2]
        flat = aged.flatten(0, 1)
        target = torch.arange(n_groups, device=self.device).repeat(n)
        x = images_to_unit(torch.from_numpy(np.ascontiguousarray(self.val.images)), self.device)
        out = {"val_change_l1": float((aged - x[:, None]).abs().mean())}
        if "age_classifier" in self.models:
            pred = torch.cat([self.models["age_classifier"](flat[i:i + 128]).argmax(1)
                              for i in range(0, len(flat), 128)])
            out["val_age_acc"] = float((pred == target).float().mean())
        if self.identity is not None:
            if self._val_embeddings is None:
                self._val_embeddings = self.identity.embed(self.val.images)
            emb = self.identity.embed(flat)
            ref = self._val_embeddings.repeat_interleave(n_groups, 0)
            out["val_identity_cos"] = float(1 - IdentityFeatures.distance(emb, ref).mean())
        return out


def build_task(config: IPCGANConfig, *, train: AgingFaces, val: AgingFaces | None,
               identity: IdentityFeatures | None, age_classifier: AgeGroupClassifier | None,
               device: str = "cpu", info: dict | None = None, n_samples: int = 6) -> IPCGANTask:
    """The :class:`IPCGANTask` for ``train`` (its models are initialised from the current torch RNG).

    Sample faces: ``n_samples`` held-out faces (or training faces when there is
    no validation split), spread over the age groups.
    """
    if train.groups != GROUPS:
        raise AgingError(f"IPCGAN trains on {GROUPS.name!r} groups, the faces are grouped as {train.groups.name!r}")
    if train.image_size != config.image_size:
        raise AgingError(f"faces are {train.image_size}x{train.image_size}, the config says {config.image_size}")
    pool = val if val is not None and len(val) else train
    order = np.argsort(pool.group, kind="stable")
    pick = order[np.linspace(0, len(order) - 1, min(n_samples, len(order))).round().astype(int)]
    return IPCGANTask(config, len(train), identity, age_classifier, device, np.asarray(pool.images[np.sort(pick)]),
                      val, info)


# --------------------------------------------------------------------------- the trained model


class IPCGANModel:
    """A trained IPCGAN (its EMA generator) as an :class:`~decoders.aging.groups.AgingModel`.

    ``age(images, target)``: N x S x S x 3 uint8 UTKFace-layout faces and one
    target group index (or N) of :data:`~decoders.aging.groups.IPCGAN_GROUPS`
    -> N x S x S x 3 uint8. ``identity_backbone`` names the face model the
    identity loss used (the audit should also measure with another one).
    """

    kind = KIND

    def __init__(self, generator: IPCGANGenerator, config: IPCGANConfig, *, groups: AgeGroups = GROUPS,
                 identity: dict | None = None, age_classifier: AgeGroupClassifier | None = None,
                 checkpoint: str | None = None, step: int | None = None, device: str = "cpu"):
        self.generator = generator.to(device).requires_grad_(False).eval()
        self.config, self.groups, self.image_size = config, groups, config.image_size
        self.identity = identity or {}
        self.identity_backbone = config.identity_backbone
        self.age_classifier = age_classifier
        self.checkpoint, self.step, self.device = checkpoint, step, torch.device(device)

    def __repr__(self) -> str:
        return (f"IPCGANModel({self.image_size}px, groups {', '.join(self.groups.labels)}, "
                f"identity {self.identity_backbone!r}, step {self.step}, {self.checkpoint})")

    def age_tensor(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Differentiable: N x 3 x S x S in [0, 1] and N group indices -> N x 3 x S x S in [0, 1]."""
        return self.generator(x, target)

    @torch.no_grad()
    def age(self, images, target, batch_size: int = 64) -> np.ndarray:
        images = check_faces(images, self.image_size)
        targets = self.groups.check(target)
        n = len(images)
        if len(targets) == 1:
            targets = np.repeat(targets, n)
        elif len(targets) != n:
            raise AgingError(f"target must be one group index or one per image ({n}), got {len(targets)}")
        out = np.empty_like(images)
        for i in range(0, n, batch_size):
            x = images_to_unit(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])), self.device)
            t = torch.as_tensor(targets[i:i + batch_size], device=self.device)
            out[i:i + batch_size] = unit_to_uint8(self.generator(x, t))
        return out


def from_checkpoint(state: dict, device: str = "cpu") -> IPCGANModel:
    """The :class:`IPCGANModel` of a loaded checkpoint dict (see
    :func:`probes.training.checkpoints.load_checkpoint`)."""
    path = state.get("path", "<checkpoint>")
    if state.get("kind") != KIND:
        raise CheckpointError(f"{path} holds a {state.get('kind')!r} run, not an {KIND!r} one")
    try:
        config = state["config"]
        cfg = IPCGANConfig.from_dict(config["model"])
        groups = AgeGroups.from_dict(config["groups"])
        generator = IPCGANGenerator(len(groups), cfg.g_width, cfg.g_blocks, cfg.residual, cfg.conditional_norm)
        generator.load_state_dict(state["models"]["g_ema"])
    except (KeyError, TypeError, RuntimeError, AgingError) as exc:
        raise CheckpointError(f"{path}: not a loadable IPCGAN checkpoint (weights or config do not fit): "
                              f"{type(exc).__name__}: {exc}") from exc
    classifier = None
    if "age_classifier" in state["models"] and (config.get("age_classifier") or {}).get("config"):
        classifier = age_classifier_from_state(config["age_classifier"]["config"], state["models"]["age_classifier"],
                                               path, device)
    return IPCGANModel(generator, cfg, groups=groups, identity=config.get("identity"), age_classifier=classifier,
                       checkpoint=path, step=int(state.get("step", 0)), device=device)


def load_ipcgan(checkpoint: str | Path, device: str = "cpu") -> IPCGANModel:
    """Load a trained IPCGAN from a ``.pt`` file or a run folder (its ``checkpoints/latest.pt``)."""
    return from_checkpoint(load_checkpoint(checkpoint), device)
