"""``faceapi-expression``: face-api.js's FaceExpressionNet, decoded from its manifest.

Architecture (face-api.js ``FaceFeatureExtractor`` + ``FaceExpressionNet``): the body of
FaceLandmark68Net (:class:`~.landmarks.FaceFeatureNet`: 4 dense blocks, 7x7 stride-2 average pool
-> 256) with its own weights, then ``fc`` 256 -> 7 and a softmax over face-api's expressions, in its
order: neutral, happy, sad, angry, fearful, disgusted, surprised. Input as for the landmark net:
zero-pad to a centred square, bilinear resize to 112 x 112, subtract RGB mean [122.782, 117.001,
104.298], divide by 255. face-api feeds it the face detector's box; the per-layout crops are those
of :mod:`.age_gender` (the whole crop for UTKFace and aligned chips, the face square for LFW frames).

Checked against @vladmandic/face-api 1.7.15 on TensorFlow.js 4.22 (Node.js, CPU backend) by
``benchmarks/faceapi_reference.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..geometry import Crop
from ..nn import evaluating
from .age_gender import DEFAULT_CROPS
from .faceapi import FaceApiPort, predict_batched, prepare_input
from .landmarks import FaceFeatureNet
from .registry import LabellerSpec, register_labeller

MANIFEST = "face_expression_model-weights_manifest.json"
SHARD = "face_expression_model.bin"
INPUT_SIZE = 112
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # face-api's order


class ExpressionLabeller(FaceApiPort):
    """Facial expression of face crops: ``expression`` (0..6, an index into :data:`EXPRESSIONS`) and the
    seven probabilities ``p_neutral`` ... ``p_surprised``.

    ``forward(x01, layout)`` is differentiable: N x 3 x H x W RGB in [0, 1] -> N x 7 logits.
    ``predict`` is the batched, no-grad path for uint8 images (one H x W x 3 array, a list, an
    N x H x W x 3 array) or a [0, 1] tensor. ``crops`` overrides the per-layout crops.
    """

    name = "faceapi-expression"
    attributes = ("expression", *(f"p_{e}" for e in EXPRESSIONS))

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True,
                 crops: Mapping[str, Crop] | None = None, device: str | torch.device = "cpu"):
        super().__init__(FaceFeatureNet(len(EXPRESSIONS)), MANIFEST, SHARD, weights, pretrained, crops,
                         DEFAULT_CROPS, device)

    def preprocess(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        x, _ = prepare_input(images.to(self._mean.device), self.crop_for(layout), INPUT_SIZE)
        return (x - self._mean) / 255.0

    def forward(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        return self.net(self.preprocess(images, layout))

    @torch.no_grad()
    def predict(self, images, layout: str = "chip", batch_size: int = 64) -> dict[str, np.ndarray]:
        """``{"expression": int64 class (argmax), "p_neutral": float32, ..., "p_surprised": float32}``."""
        self.crop_for(layout)  # an unknown layout is refused before any work

        def run(x: torch.Tensor) -> dict[str, np.ndarray]:
            return {"p": torch.softmax(self(x.float(), layout), dim=1).cpu().numpy().astype(np.float32)}

        with evaluating(self):
            p = predict_batched(run, images, batch_size)["p"]
        out = {"expression": p.argmax(1).astype(np.int64)}
        out.update({f"p_{e}": p[:, i] for i, e in enumerate(EXPRESSIONS)})
        return out


SPEC = register_labeller(LabellerSpec(
    "faceapi-expression", ExpressionLabeller, ExpressionLabeller.attributes,
    "facial expression (expression: 0..6 = " + ", ".join(EXPRESSIONS) + "; and the 7 probabilities p_*) "
    "from face-api.js's FaceExpressionNet",
    "FaceExpressionNet via @vladmandic/face-api@1.7.15", "MIT"))
