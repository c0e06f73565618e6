"""Face embeddings for the aging GANs' identity terms.

:class:`IdentityFeatures` is a frozen face-recognition backbone fed GAN-sized
UTKFace-layout faces the way the audit measures them (bicubic up to the
200 x 200 UTKFace frame, then ``backbone(x, "utkface")``), differentiable in its
input; :class:`EmbeddingCache` keeps the embeddings of fixed training inputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from probes.backbones import create_backbone
from probes.training.checkpoints import CheckpointError

from .blocks import FrozenFaceReader, unit_batches
from .data import UTKFACE_FRAME


class IdentityFeatures(FrozenFaceReader):
    """Face embeddings of GAN-sized UTKFace-layout faces, differentiable in the faces.

    ``forward(x)``: N x 3 x S x S in [0, 1] -> bicubic to ``frame`` x ``frame``
    (UTKFace's 200 x 200), clamped to [0, 1], -> ``backbone(x, layout)``:
    exactly how the audit measures a GAN's output (it resizes uint8 faces the
    same way with :func:`decoders.aging.data.resize_faces`). The backbone is
    frozen and stays in eval mode.

    ``backbone``: a registry name (``"dlib-resnet29"``, ``"mobileface"`` ...),
    a :class:`probes.backbones.FaceBackbone`, or any module called as
    ``module(x, layout)`` (tests use tiny stand-ins).
    """

    def __init__(self, backbone: str | nn.Module = "dlib-resnet29", *, pretrained: bool = True,
                 weights: str | Path | None = None, device: str | torch.device = "cpu",
                 layout: str = "utkface", frame: int = UTKFACE_FRAME):
        if isinstance(backbone, str):
            backbone = create_backbone(backbone, weights, device=device, pretrained=pretrained)
        super().__init__(backbone, device, layout, frame)

    @property
    def backbone(self) -> nn.Module:
        return self.network

    def describe(self) -> dict:
        """What a checkpoint records about the face model the GAN was trained against."""
        return {**super().describe(), "distance": "1 - cosine"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.in_frame(x), self.layout)

    @torch.no_grad()
    def embed(self, images, batch_size: int = 64) -> torch.Tensor:
        """Embeddings of N x S x S x 3 uint8 faces (or an N x 3 x S x S [0, 1] tensor), float32 on CPU."""
        device = next(self.backbone.parameters()).device
        out = [self(chunk).float().cpu() for chunk in unit_batches(images, batch_size, device)]
        return torch.cat(out) if out else torch.zeros(0, 0)

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-face 1 - cosine similarity (0 = same direction, 2 = opposite)."""
        return 1 - F.cosine_similarity(a.float(), b.float().to(a.device), dim=1, eps=1e-8)


class EmbeddingCache:
    """Embeddings of the fixed training inputs, filled lazily the first time each face is seen.

    Its state (values and which are known) goes into the checkpoint through the
    task's ``extra_state``, so a resumed run computes exactly what an
    uninterrupted one would.
    """

    def __init__(self, n: int, dim: int | None = None):
        self.n = int(n)
        self.values = torch.zeros(self.n, dim or 0)
        self.known = torch.zeros(self.n, dtype=torch.bool)

    def lookup(self, index: torch.Tensor, inputs: torch.Tensor, features: IdentityFeatures) -> torch.Tensor:
        """Embeddings of training faces ``index`` whose [0, 1] images are ``inputs`` (N x 3 x S x S)."""
        index = index.long().cpu()
        missing = ~self.known[index]
        if missing.any():
            with torch.no_grad():
                emb = features(inputs[missing.to(inputs.device)]).float().cpu()
            if self.values.shape[1] != emb.shape[1]:
                self.values = torch.zeros(self.n, emb.shape[1])
            self.values[index[missing]] = emb
            self.known[index[missing]] = True
        return self.values[index].to(inputs.device)

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "known": self.known.clone()}

    def load_state_dict(self, state: dict) -> None:
        values, known = state["values"], state["known"].to(torch.bool)
        if len(known) != self.n:
            raise CheckpointError(f"identity cache holds {len(known)} faces, the training data has {self.n}")
        self.values, self.known = values.float().clone(), known.clone()
