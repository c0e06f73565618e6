"""An aging generator's architecture trained for another task: denoising, on faces or on no faces at all.

The common-filters study (:mod:`decoders.aging.common_filters`) needs generators of the
IPCGAN architecture that never saw an age: :class:`DenoiseTask` trains one to remove
Gaussian noise (L1) with random target groups, on :func:`skimage_crops` (general-purpose
images without people) or :func:`lfw_faces` (faces of another data set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probes.datasets import load_lfw_people
from probes.training.checkpoints import seed_everything
from probes.training.data import ArrayData
from probes.training.trainer import Trainer, TrainerSettings, TrainTask

from . import ipcgan
from .blocks import images_to_unit
from .data import resize_faces
from .ipcgan import IPCGANConfig, build_generator

# scikit-image sample images without people (astronaut, camera and lfw_subset show faces)
SKIMAGE_IMAGES = ("coffee", "chelsea", "coins", "hubble_deep_field", "immunohistochemistry", "moon", "page",
                  "rocket", "text", "retina", "grass", "gravel", "brick", "clock", "colorwheel")


def skimage_crops(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` random square crops (side 1/8 to 1/2 of the shorter image side) resized to ``size``."""
    import skimage.data  # lazy: only this pretraining needs scikit-image
    from skimage.color import gray2rgb

    images = []
    for name in SKIMAGE_IMAGES:
        image = getattr(skimage.data, name)()
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        images.append(np.ascontiguousarray(image.astype(np.uint8)))
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        image = images[rng.integers(len(images))]
        short = min(image.shape[:2])
        side = int(rng.integers(max(size, short // 8), max(size, short // 2) + 1))
        y, x = rng.integers(0, image.shape[0] - side + 1), rng.integers(0, image.shape[1] - side + 1)
        crop = image[y:y + side, x:x + side]
        crops.append(resize_faces(crop[None], size)[0] if side != size else crop)
    out = np.stack(crops)
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def lfw_faces(n: int, size: int, seed: int, root) -> np.ndarray:
    """``n`` LFW images, the central 150 x 150 of each 250 x 250 frame (the face), resized to ``size``."""
    people = load_lfw_people(root, max_images=n, seed=seed, min_images_per_person=1)
    images = people.load_images()
    return resize_faces(np.ascontiguousarray(images[:, 50:200, 50:200]), size)


class DenoiseTask(TrainTask):
    """The aging generator's architecture trained to remove Gaussian noise (L1), with random target groups."""

    kind = "ipcgan-denoise"

    def __init__(self, config: IPCGANConfig, noise: float = 0.1, sample_images: np.ndarray | None = None):
        super().__init__()
        self.cfg, self.noise, self.n_groups = config, noise, len(ipcgan.GROUPS)
        self.models["generator"] = build_generator(config)
        self.optimizers["generator"] = torch.optim.Adam(self.models["generator"].parameters(), lr=config.lr_g,
                                                        betas=(config.beta1, config.beta2))
        self.sample_images = sample_images
        self.sample_columns = 3

    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "noise": self.noise, "task": "denoise"}

    def step(self, batch, step: int) -> dict[str, float]:
        x = images_to_unit(batch["images"])
        noisy = (x + self.noise * torch.randn_like(x)).clamp(0, 1)
        target = torch.randint(0, self.n_groups, (len(x),))
        loss = F.l1_loss(self.net("generator")(noisy, target), x)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": loss.item(), "noisy_l1": F.l1_loss(noisy, x).item()}

    @torch.no_grad()
    def sample(self, step: int) -> torch.Tensor | None:
        if self.sample_images is None:
            return None
        x = images_to_unit(torch.from_numpy(self.sample_images))
        noisy = (x + self.noise * torch.randn_like(x)).clamp(0, 1)
        out = self.models["generator"].eval()(noisy, torch.zeros(len(x), dtype=torch.long))
        self.models["generator"].train()
        return torch.stack([x, noisy, out], 1).flatten(0, 1)


def train_denoiser(out: Path, images: np.ndarray, config: IPCGANConfig, settings: TrainerSettings) -> nn.Module:
    """Train (or resume) a :class:`DenoiseTask` on ``images`` into run folder ``out``; returns the generator."""
    seed_everything(settings.seed)
    task = DenoiseTask(config, sample_images=images[:6])
    Trainer(task, ArrayData(images=images), out, settings, resume=True).fit()
    return task.models["generator"].eval()
