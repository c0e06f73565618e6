"""Age-cGAN's two training phases on the shared :class:`~probes.training.Trainer`:
:class:`AgeCGANTask` and :func:`build_task`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probes.errors import TrainingError
from probes.training.trainer import TrainTask

from ..blocks import (
    array_to_unit,
    ema_copy,
    ema_decay_at,
    frozen,
    gan_optimizers,
    lsgan_d_loss,
    lsgan_g_loss,
    optimise,
    signed_to_unit,
    unit_to_signed,
    update_ema,
)
from ..checks import check_same_config, check_training_faces
from ..data import AgingFaces, first_faces
from ..identity import IdentityFeatures
from .config import GROUPS, KIND, AgeCGANConfig
from .networks import build_networks, images_to_signed, latent_table


class AgeCGANTask(TrainTask):
    """Both training phases of Age-cGAN on one :class:`~probes.training.Trainer` (see :mod:`decoders.aging.agecgan`).

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
        self.optimizers = {
            **gan_optimizers(g, self.models["discriminator"], config),
            "encoder": torch.optim.Adam(self.models["encoder"].parameters(), lr=config.encoder_lr,
                                        betas=(0.9, 0.999))}
        # Fixed draws for samples and validation (their own generator: training randomness is untouched).
        n_groups = len(self.groups)
        self.sample_z = latent_table(sample_rows, config.latent_size, n_groups, seed=1234)["z"]
        self.val_latents = latent_table(val_latents, config.latent_size, n_groups, seed=4321)
        self.val = first_faces(val, val_images)
        self.info = dict(info or {})
        self.sample_columns = n_groups

    # -- description
    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "groups": self.groups.to_dict(),
                "identity_backbone": self.cfg.identity_backbone,
                "phases": {"gan": [0, self.cfg.gan_steps], "encoder": [self.cfg.gan_steps, None]}, **self.info}

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        check_same_config(checkpoint, self.cfg)

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
        x = images_to_signed(batch["images"], self.device)
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
            real = images_to_signed(batch["images"], self.device)
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

    def _val_faces(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default all) validation faces in [-1, 1] and their groups, on the device."""
        x = unit_to_signed(array_to_unit(self.val.images[:n], self.device))
        return x, torch.as_tensor(self.val.group[:n], device=self.device).long()

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
        return {"latent_mse": float(F.mse_loss(z_hat, z)),
                "pixel_mse": float(F.mse_loss(signed_to_unit(recon), signed_to_unit(x)))}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float] | None:
        out = {"val_" + k: v for k, v in self.latent_error().items()}
        if self.val is not None:
            x, y = self._val_faces()
            recon = self.models["generator_ema"](self._encode(x), y)
            out["val_real_pixel_mse"] = float(F.mse_loss(signed_to_unit(recon), signed_to_unit(x)))
        return out

    @torch.no_grad()
    def sample(self, step: int) -> torch.Tensor | None:
        G, k = self.models["generator_ema"], len(self.groups)
        if step <= self.cfg.gan_steps:
            self.sample_columns = k
            z = self.sample_z.repeat_interleave(k, 0).to(self.device)
            y = torch.arange(k).repeat(len(self.sample_z)).to(self.device)
            return signed_to_unit(G(z, y)).cpu()
        n = min(4, len(self.sample_z))
        y_gen = torch.arange(n) % k
        inputs, groups = [G(self.sample_z[:n].to(self.device), y_gen.to(self.device))], [y_gen.to(self.device)]
        if self.val is not None:
            x_val, y_val = self._val_faces(4)
            inputs.append(x_val)
            groups.append(y_val)
        x, y = torch.cat(inputs), torch.cat(groups)
        z = self._encode(x)
        rows = [x, G(z, y)] + [G(z, torch.full_like(y, g)) for g in range(k)]
        self.sample_columns = 2 + k
        return signed_to_unit(torch.stack(rows, 1).flatten(0, 1)).cpu()


def build_task(config: AgeCGANConfig, *, train: AgingFaces, val: AgingFaces | None = None,
               identity: IdentityFeatures | None = None, age_classifier=None, device: str = "cpu",
               info: dict | None = None) -> AgeCGANTask:
    """The :class:`AgeCGANTask` for ``train`` (models initialised from the current torch RNG).

    ``identity`` and ``age_classifier`` are not used in training (the common
    signature of :mod:`decoders.aging.train`). When ``info["cli"]["steps"]``
    is known it must exceed ``config.gan_steps``, or the encoder would never train.
    """
    check_training_faces(train, GROUPS, config)
    steps = ((info or {}).get("cli") or {}).get("steps")
    if steps is not None and steps <= config.gan_steps:
        raise TrainingError(f"Age-cGAN trains its GAN for gan_steps={config.gan_steps} steps, then its encoder; "
                            f"--steps {steps} leaves the encoder untrained: use --steps > {config.gan_steps} "
                            f"or --set gan_steps=N with N < {steps}")
    return AgeCGANTask(config, device, val, info)
