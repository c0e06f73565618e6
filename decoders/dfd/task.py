"""The Deep Face Decoder as a :class:`~probes.training.TrainTask`: what one training step does."""

from __future__ import annotations

import numpy as np
import torch

from probes.training.checkpoints import CheckpointError
from probes.training.trainer import TrainTask, warmup_cosine
from probes.verification import pair_scores

from .checkpoint import DECODER_KIND
from .losses import ReconstructionLoss
from .model import FaceDecoder
from .templates import Targets


def check_same_backbone(checkpoint: dict, backbone: dict) -> None:
    """Refuse a checkpoint trained against another backbone (name or weights) than ``backbone``'s record."""
    theirs = checkpoint["config"].get("backbone", {})
    if (backbone["name"], backbone["weights_key"]) != (theirs.get("name"), theirs.get("weights_key")):
        raise CheckpointError(
            f"{checkpoint['path']} was trained against backbone {theirs.get('name')!r} "
            f"(weights {str(theirs.get('weights_key'))[:16]}...), not {backbone['name']!r} "
            f"(weights {backbone['weights_key'][:16]}...)")


class DecoderTask(TrainTask):
    """Template -> chip regression with the DFD losses; one Adam optimiser, warmup + cosine lr."""

    kind = DECODER_KIND

    def __init__(self, decoder: FaceDecoder, loss: ReconstructionLoss, config: dict, device: str,
                 total_steps: int, sample_targets: Targets | None = None, val_targets: Targets | None = None):
        super().__init__()
        self.device = torch.device(device)
        self.models["decoder"] = decoder.to(self.device)
        self.loss = loss.to(self.device)
        self._config = config
        optim = config["optim"]
        self.optimizers["decoder"] = torch.optim.Adam(decoder.parameters(), lr=optim["lr"], betas=(0.9, 0.99))
        self.total_steps = total_steps
        self.sample_targets, self.val_targets = sample_targets, val_targets

    def config(self) -> dict:
        return self._config

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        check_same_backbone(checkpoint, self._config["backbone"])

    def lr_at(self, step: int) -> float:
        o = self._config["optim"]
        return o["lr"] * warmup_cosine(step, self.total_steps, o["warmup_steps"], o["min_lr_ratio"])

    def _targets(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)

    def step(self, batch, step: int) -> dict[str, float]:
        opt = self.optimizers["decoder"]
        lr = self.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        templates = batch["templates"].to(self.device)
        target = self._targets(batch["images"])
        recon = self.net("decoder")(templates)
        total, terms = self.loss(recon, target, templates)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "lr": lr}

    @torch.no_grad()
    def reconstruct(self, templates: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        decoder = self.models["decoder"]
        was = decoder.training
        decoder.eval()
        try:
            out = [decoder(torch.as_tensor(np.asarray(templates[i:i + batch_size]), device=self.device))
                   for i in range(0, len(templates), batch_size)]
        finally:
            decoder.train(was)
        return torch.cat(out)

    def sample(self, step: int) -> torch.Tensor | None:
        """Rows: training targets, their reconstructions, validation targets, theirs."""
        rows = []
        for targets in (self.sample_targets, self.val_targets):
            if targets is None or len(targets) == 0:
                continue
            k = min(self.sample_columns, len(targets))
            rows += [self._targets(torch.from_numpy(np.asarray(targets.images[:k]))).cpu(),
                     self.reconstruct(targets.templates[:k]).cpu()]
        return torch.cat(rows) if rows else None

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float] | None:
        if self.val_targets is None or len(self.val_targets) == 0:
            return None
        t = self.val_targets
        recon = self.reconstruct(t.templates)
        target = self._targets(torch.from_numpy(np.asarray(t.images)))
        out = {"val_pixel_l1": float((recon - target.to(recon.device)).abs().mean())}
        backbone = self.loss.backbone
        if backbone is not None:
            emb = torch.cat([backbone(recon[i:i + 64], "chip") for i in range(0, len(recon), 64)]).cpu().numpy()
            cos = pair_scores(emb, t.templates, "cosine")
            out["val_identity_cos"] = float(cos.mean())
            if backbone.spec.verification_metric == "euclidean":
                out["val_l2"] = float(-pair_scores(emb, t.templates, "euclidean").mean())
        return out
