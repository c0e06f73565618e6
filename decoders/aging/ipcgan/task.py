"""IPCGAN's training step on the shared :class:`~probes.training.Trainer`: :class:`IPCGANTask`, :func:`build_task`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from probes.training.checkpoints import CheckpointError
from probes.training.trainer import TrainTask

from ..age_reader import AgeReader, age_reading_loss, sex_keeping_loss
from ..blocks import (
    array_to_unit,
    ema_copy,
    ema_decay_at,
    frozen,
    gan_optimizers,
    images_to_unit,
    lsgan_d_loss,
    lsgan_g_loss,
    optimise,
    update_ema,
)
from ..checks import check_same_config, check_training_faces
from ..classifier import AgeGroupClassifier
from ..data import AgingFaces, first_faces
from ..groups import AgingError
from ..identity import EmbeddingCache, IdentityFeatures
from .config import GROUPS, KIND, IPCGANConfig
from .networks import build_discriminator, build_generator


class IPCGANTask(TrainTask):
    """One IPCGAN step: a discriminator update, then a generator update, then the EMA.

    Models: ``generator``, ``discriminator`` (trained), ``g_ema`` (the averaged
    generator that is sampled and exported) and ``age_classifier`` (frozen;
    kept in the checkpoint so a run is self-contained). The identity backbone is
    not stored (it is a pinned, named weight file); the config records its name
    and weights id. So is the optional pretrained :class:`~decoders.aging.age_reader.AgeReader`.
    Validation looks at the first :attr:`val_images` faces of ``val``.
    """

    kind = KIND
    val_images = 16

    def __init__(self, config: IPCGANConfig, n_train: int, identity: IdentityFeatures | None,
                 age_classifier: AgeGroupClassifier | None, device: str = "cpu",
                 sample_faces: np.ndarray | None = None, val: AgingFaces | None = None, info: dict | None = None,
                 age_reader: AgeReader | None = None):
        super().__init__()
        if config.uses_identity and identity is None:
            raise AgingError("the identity loss weight is > 0 but no IdentityFeatures were given")
        if config.uses_age_classifier and age_classifier is None:
            raise AgingError("the age loss weight is > 0 but no age classifier was given")
        if config.uses_age_reader and age_reader is None:
            raise AgingError(f"age_regression / sex_keep > 0 but no age reader ({config.age_reader!r}) was given")
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
        self.optimizers.update(gan_optimizers(generator, self.models["discriminator"], config))
        self.identity = identity.to(self.device) if identity is not None else None
        self.age_reader = age_reader.to(self.device) if age_reader is not None and config.uses_age_reader else None
        self._target_years = torch.tensor(GROUPS.midpoints(), dtype=torch.float32, device=self.device)
        self.cache = EmbeddingCache(n_train)
        self.sex_cache = EmbeddingCache(n_train)  # the reader's P(male) of each (un-augmented) training face
        self.sample_faces = sample_faces
        self.sample_columns = 1 + len(GROUPS)
        self.val = first_faces(val, self.val_images)
        self._val_embeddings = None
        self.info = dict(info or {})

    # -- description
    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "groups": self.groups.to_dict(),
                "identity": self.identity.describe() if self.identity is not None else None,
                "identity_backbone": self.cfg.identity_backbone,
                "age_reader": self.age_reader.describe() if self.age_reader is not None else None,
                "age_reader_targets_years": self._target_years.tolist(), **self.info}

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        check_same_config(checkpoint, self.cfg)
        theirs = checkpoint.get("config", {})
        mine = self.identity.describe() if self.identity is not None else None
        if (theirs.get("identity") or {}).get("weights_id") != (mine or {}).get("weights_id"):
            raise CheckpointError(f"{checkpoint['path']} was trained against identity model "
                                  f"{theirs.get('identity')}, not {mine}")
        mine = self.age_reader.describe() if self.age_reader is not None else None
        if (theirs.get("age_reader") or {}).get("weights_id") != (mine or {}).get("weights_id"):
            raise CheckpointError(f"{checkpoint['path']} was trained against age reader "
                                  f"{theirs.get('age_reader')}, not {mine}")

    def extra_state(self) -> dict:
        return {"identity_cache": self.cache.state_dict(), "sex_cache": self.sex_cache.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "identity_cache" in state:
            self.cache.load_state_dict(state["identity_cache"])
        if "sex_cache" in state:
            self.sex_cache.load_state_dict(state["sex_cache"])

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
        out = {"d": loss_d.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(),
               "g_gan": loss_gan.item()}
        total = self._add_generator_terms(cfg.gan * loss_gan, batch["index"], x, fake, target, out)
        optimise(self.optimizers["generator"], total)
        update_ema(self.models["g_ema"], self.models["generator"], ema_decay_at(step, cfg.ema_decay))
        out["g_total"] = total.item()
        return out

    def _add_generator_terms(self, total: torch.Tensor, index: torch.Tensor, x: torch.Tensor, fake: torch.Tensor,
                             target: torch.Tensor, out: dict) -> torch.Tensor:
        """``total`` plus the weighted age and identity losses of ``fake`` (those with a weight > 0);
        their values go into ``out``."""
        cfg = self.cfg
        if cfg.uses_age_classifier:
            logits = self.models["age_classifier"](fake)
            loss_age = F.cross_entropy(logits, target)
            total = total + cfg.age * loss_age
            out.update(age=loss_age.item(), age_acc=(logits.argmax(1) == target).float().mean().item())
        if self.age_reader is not None:
            total = total + self._age_reader_terms(index, x, fake, target, out)
        if cfg.uses_identity:
            k = len(x) if cfg.identity_batch == 0 else min(len(x), cfg.identity_batch)
            reference = self.cache.lookup(index[:k], x[:k], self.identity)
            loss_id = IdentityFeatures.distance(self.identity(fake[:k]), reference).mean()
            total = total + cfg.identity * loss_id
            out["identity"] = loss_id.item()
        return total

    def _age_reader_terms(self, index: torch.Tensor, x: torch.Tensor, fake: torch.Tensor, target: torch.Tensor,
                          out: dict) -> torch.Tensor:
        """The weighted age-reading and sex-keeping losses of ``fake`` (their values go into ``out``)."""
        cfg = self.cfg
        age, p_male = self.age_reader(fake, augment=cfg.age_augment)
        loss_years = age_reading_loss(age, self._target_years[target])
        out["age_years_l1"] = loss_years.item()
        terms = cfg.age_regression * loss_years
        if cfg.sex_keep > 0:
            p_source = self.sex_cache.lookup(index, x, lambda faces: self.age_reader(faces)[1][:, None])[:, 0]
            loss_sex = sex_keeping_loss(p_male, p_source)
            out["sex_keep"] = loss_sex.item()
            terms = terms + cfg.sex_keep * loss_sex
        return terms

    # -- looking at it
    @torch.no_grad()
    def age_all(self, images: np.ndarray) -> torch.Tensor:
        """Every face at every group with the EMA generator: N x G x 3 x S x S in [0, 1]."""
        g = self.models["g_ema"]
        x = array_to_unit(images, self.device)
        n_groups = len(self.groups)
        outs = [g(x, torch.full((len(x),), t, dtype=torch.long, device=self.device)) for t in range(n_groups)]
        return torch.stack(outs, 1)

    def sample(self, step: int) -> torch.Tensor | None:
        """One row per fixed input face: the input, then the face at each of the 5 groups."""
        if self.sample_faces is None or len(self.sample_faces) == 0:
            return None
        x = array_to_unit(self.sample_faces, "cpu")
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
        x = array_to_unit(self.val.images, self.device)
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
        if self.age_reader is not None:
            # The training reader's mean age per target group (the audit's judge is another network).
            ages = torch.cat([self.age_reader(flat[i:i + 64])[0] for i in range(0, len(flat), 64)])
            for t in range(n_groups):
                out[f"val_reader_age_g{t}"] = float(ages[target == t].mean())
        return out


def build_task(config: IPCGANConfig, *, train: AgingFaces, val: AgingFaces | None,
               identity: IdentityFeatures | None, age_classifier: AgeGroupClassifier | None,
               device: str = "cpu", info: dict | None = None, n_samples: int = 6,
               age_reader: AgeReader | None = None) -> IPCGANTask:
    """The :class:`IPCGANTask` for ``train`` (its models are initialised from the current torch RNG).

    ``age_reader``: the pretrained age network of the age-reading loss (default: the config's
    ``age_reader`` labeller, loaded here when that loss is on).
    Sample faces: ``n_samples`` held-out faces (or training faces when there is
    no validation split), spread over the age groups.
    """
    check_training_faces(train, GROUPS, config)
    pool = val if val is not None and len(val) else train
    order = np.argsort(pool.group, kind="stable")
    pick = order[np.linspace(0, len(order) - 1, min(n_samples, len(order))).round().astype(int)]
    if age_reader is None and config.uses_age_reader:
        age_reader = AgeReader(config.age_reader, device=device)
    return IPCGANTask(config, len(train), identity, age_classifier, device, np.asarray(pool.images[np.sort(pick)]),
                      val, info, age_reader)
