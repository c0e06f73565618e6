"""FaceLandmark68Net from face-api.js: 68 facial landmarks, decoded from its manifest.

Architecture (face-api.js ``FaceFeatureExtractor`` + ``FaceLandmark68Net``):

- input: zero-pad to a centred square, bilinear resize to 112 x 112, subtract
  RGB mean [122.782, 117.001, 104.298], divide by **255** (not 256 as in
  AgeGenderNet: face-api's feature extractor differs here);
- 4 dense blocks (32, 64, 128, 256 channels), each halving the size:
  ``out1 = relu(conv0(x))`` (a plain 3x3 conv in ``dense0``, a separable conv
  elsewhere, stride 2 SAME); then three separable convs ``conv1..3``, each fed
  the ReLU of the sum of all earlier outputs; the block returns
  ``relu(out1 + out2 + out3 + out4)``;
- 7x7 stride-2 VALID average pool (7x7 -> 1x1), ``fc`` 256 -> 136 giving
  interleaved (x, y) in [0, 1] of the square-padded input.

Checked against @vladmandic/face-api 1.7.15 on TensorFlow.js 4.22 (CPU
backend): identical points (<= 1e-4 px) on square inputs. On non-square ones
face-api subtracts |w - h| / 2 as the centring pad, half a pixel off the pad it
actually adds when the difference is odd; this port subtracts the real pad.

face-api then removes the centring pad and rescales to the input image; here
points come back in the caller's image pixels (crop offset included), in a
continuous frame where the image spans [0, W] x [0, H]: mirroring an image
maps x to W - x.

Point order is the iBUG 300-W 68-point scheme: 0-16 jaw (from the subject's
right, i.e. the image's left), 17-26 brows, 27-35 nose, 36-47 eyes (36-41
the subject's right eye), 48-67 mouth.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Crop
from ..nn import evaluating
from .age_gender import DEFAULT_CROPS
from .faceapi import (
    FaceApiPort,
    SameConv2d,
    SeparableConv,
    predict_batched,
    prepare_input,
)

MANIFEST = "face_landmark_68_model-weights_manifest.json"
SHARD = "face_landmark_68_model.bin"
INPUT_SIZE = 112
NUM_POINTS = 68


class DenseBlock(nn.Module):
    """face-api's ``denseBlock4``: a strided first conv, then 3 densely connected separable convs."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.conv0 = SameConv2d(cin, cout, 3, stride=2) if first else SeparableConv(cin, cout, stride=2)
        self.conv1 = SeparableConv(cout, cout)
        self.conv2 = SeparableConv(cout, cout)
        self.conv3 = SeparableConv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class FaceFeatureNet(nn.Module):
    """face-api's ``FaceFeatureExtractor`` (4 dense blocks, then a 7x7 stride-2 VALID average pool -> 256)
    and a fully connected head ``fc`` of ``outputs``: normalised 112 x 112 input -> N x ``outputs``.

    FaceLandmark68Net (136 outputs) and FaceExpressionNet (7) share this body and its tensor names."""

    def __init__(self, outputs: int):
        super().__init__()
        self.dense0 = DenseBlock(3, 32, first=True)
        self.dense1 = DenseBlock(32, 64)
        self.dense2 = DenseBlock(64, 128)
        self.dense3 = DenseBlock(128, 256)
        self.fc = nn.Linear(256, outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 256-D bottleneck."""
        for block in (self.dense0, self.dense1, self.dense2, self.dense3):
            x = block(x)
        return F.avg_pool2d(x, 7, 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class FaceLandmark68Net(FaceFeatureNet):
    """Normalised 112 x 112 input -> N x 68 x 2 points in [0, 1] of that input (x, y)."""

    def __init__(self):
        super().__init__(2 * NUM_POINTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(-1, NUM_POINTS, 2)


class LandmarkDetector(FaceApiPort):
    """68 landmarks of face crops, in the caller's image pixel coordinates.

    The crops of :mod:`.age_gender` are used per layout (``crops`` overrides).
    """

    name = "faceapi-landmarks68"
    owner = "landmark detector"

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True,
                 crops: Mapping[str, Crop] | None = None, device: str | torch.device = "cpu"):
        super().__init__(FaceLandmark68Net(), MANIFEST, SHARD, weights, pretrained, crops, DEFAULT_CROPS, device)

    def forward(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        """[0, 1] images -> N x 68 x 2 points in image pixels (differentiable)."""
        crop = self.crop_for(layout)
        x, geometry = prepare_input(images.to(self._mean.device), crop, INPUT_SIZE)
        points01 = self.net((x - self._mean) / 255.0)
        origin = points01.new_tensor(geometry.origin) - points01.new_tensor(geometry.pad)
        return points01 * geometry.side + origin

    @torch.no_grad()
    def predict(self, images, layout: str = "chip", batch_size: int = 64) -> np.ndarray:
        """N x 68 x 2 float32 (x, y) in pixels of each input image."""
        self.crop_for(layout)  # an unknown layout is refused before any work
        with evaluating(self):
            out = predict_batched(lambda x: {"points": self(x.float(), layout).cpu().numpy().astype(np.float32)},
                                  images, batch_size)
        return out["points"]
