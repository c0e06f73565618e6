"""``faceapi-agegender``: face-api.js's AgeGenderNet (TinyXception), decoded from its manifest.

Architecture (face-api.js ``TinyXception`` with 2 main blocks + ``AgeGenderNet`` head):

- input: zero-pad to a centred square, bilinear resize to 112 x 112, subtract
  RGB mean [122.782, 117.001, 104.298], divide by 256;
- entry flow: ``conv_in`` 3x3 stride 2 SAME + bias, ReLU; ``reduction_block_0``
  (its input is not re-activated) and ``reduction_block_1``;
- reduction block: [ReLU] -> separable conv -> ReLU -> separable conv ->
  3x3 stride-2 SAME max-pool, plus a 1x1 stride-2 "expansion" conv of the
  block's (non-activated) input; sum;
- middle flow: 2 main blocks, each 3 x (ReLU, separable conv) plus identity;
- exit flow: reduction block 128 -> 256, separable conv 256 -> 512, ReLU;
- head: 7x7 stride-2 VALID average pool (7x7 -> 1x1), then ``fc/age``
  (regression, years) and ``fc/gender`` (softmax over [male, female]).

TF 'SAME' padding with stride 2 pads 0 before and 1 after; see :mod:`._faceapi`.

Checked against TensorFlow.js 4.22 (CPU backend, Node.js): layer by layer
this port matches face-api.js's TinyXception code run on the same params to
<= 1.3e-4; the runtime of ``@vladmandic/face-api`` 1.7.15, whose weights these
are, divides the input by 255 instead of 256, and with ``input_divisor=255``
the port matches it to 5e-5 years and 1e-6 in P(male). The two divisors give
the same UTKFace accuracy; 256 is the original face-api.js's choice.
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
from .faceapi import (
    FaceApiPort,
    SameConv2d,
    SeparableConv,
    max_pool_same,
    predict_batched,
    prepare_input,
)
from .registry import LabellerSpec, register_labeller

MANIFEST = "age_gender_model-weights_manifest.json"
SHARD = "age_gender_model.bin"
INPUT_SIZE = 112

# Crops (top, left, height, width) per dataset layout. face-api feeds this net
# the box of its face detector; UTKFace's 200x200 crops are close to that, so
# the whole crop is used (age MAE 4.20 y, sex 91.1% on all 8,804 labelled
# UTKFace crops here; experiments/utkface_age_sex.py). LFW's 250x250
# frames show more background: the LFW crop puts eyes and mouth where UTKFace
# has them (inter-ocular distance 0.38 vs 0.39 of the side, eyes at 0.28 vs
# 0.29, mouth at 0.71 vs 0.70 of the height; medians over 150-200 faces,
# measured with FaceLandmark68Net). LFW has no age/sex labels to tune on.
DEFAULT_CROPS: dict[str, Crop] = {
    "chip": (0.0, 0.0, 1.0, 1.0),
    "utkface": (0.0, 0.0, 1.0, 1.0),
    "lfw": (0.32, 0.27, 0.46, 0.46),
}


class ReductionBlock(nn.Module):
    def __init__(self, cin: int, cout: int, activate_input: bool = True):
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = SeparableConv(cin, cout)
        self.separable_conv1 = SeparableConv(cout, cout)
        self.expansion_conv = SameConv2d(cin, cout, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(x) if self.activate_input else x
        out = self.separable_conv1(F.relu(self.separable_conv0(out)))
        return max_pool_same(out, 3, 2) + self.expansion_conv(x)


class MainBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.separable_conv0 = SeparableConv(channels, channels)
        self.separable_conv1 = SeparableConv(channels, channels)
        self.separable_conv2 = SeparableConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.separable_conv0(F.relu(x))
        out = self.separable_conv1(F.relu(out))
        out = self.separable_conv2(F.relu(out))
        return out + x


class AgeGenderNet(nn.Module):
    """TinyXception trunk + age/gender heads; submodule names follow face-api's tensor names.

    ``forward`` takes the normalised 112 x 112 input and returns
    ``(age in years (N,), gender logits (N, 2) [male, female])``.
    """

    def __init__(self, num_main_blocks: int = 2):
        super().__init__()
        self.entry_flow = nn.ModuleDict({
            "conv_in": SameConv2d(3, 32, 3, stride=2),
            "reduction_block_0": ReductionBlock(32, 64, activate_input=False),
            "reduction_block_1": ReductionBlock(64, 128),
        })
        self.middle_flow = nn.ModuleDict({f"main_block_{i}": MainBlock(128) for i in range(num_main_blocks)})
        self.exit_flow = nn.ModuleDict({
            "reduction_block": ReductionBlock(128, 256),
            "separable_conv": SeparableConv(256, 512),
        })
        self.fc = nn.ModuleDict({"age": nn.Linear(512, 1), "gender": nn.Linear(512, 2)})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 512-D bottleneck."""
        out = F.relu(self.entry_flow["conv_in"](x))
        out = self.entry_flow["reduction_block_0"](out)
        out = self.entry_flow["reduction_block_1"](out)
        for block in self.middle_flow.values():
            out = block(out)
        out = self.exit_flow["reduction_block"](out)
        out = F.relu(self.exit_flow["separable_conv"](out))
        return F.avg_pool2d(out, 7, 2).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(x)
        return self.fc["age"](pooled).squeeze(1), self.fc["gender"](pooled)


class AgeGenderLabeller(FaceApiPort):
    """Age (years) and sex (P(male)) of face crops, with face-api's preprocessing.

    ``forward(x01, layout)`` is differentiable: N x 3 x H x W RGB in [0, 1] ->
    (age, gender logits). ``predict`` is the batched, no-grad path for uint8
    images (one H x W x 3 array, a list, an N x H x W x 3 array) or a [0, 1]
    tensor. ``crops`` overrides the per-layout crops; ``input_divisor`` is 256
    as in face-api.js (255 reproduces @vladmandic/face-api's runtime).
    """

    name = "faceapi-agegender"
    attributes = ("age", "sex", "p_male")

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True,
                 crops: Mapping[str, Crop] | None = None, device: str | torch.device = "cpu",
                 input_divisor: float = 256.0):
        super().__init__(AgeGenderNet(), MANIFEST, SHARD, weights, pretrained, crops, DEFAULT_CROPS, device)
        self.input_divisor = float(input_divisor)

    def preprocess(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        crop = self.crop_for(layout)
        x, _ = prepare_input(images.to(self._mean.device), crop, INPUT_SIZE)
        return (x - self._mean) / self.input_divisor

    def forward(self, images: torch.Tensor, layout: str = "chip") -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(self.preprocess(images, layout))

    @torch.no_grad()
    def predict(self, images, layout: str = "chip", batch_size: int = 64) -> dict[str, np.ndarray]:
        """``{"age": years, "p_male": P(male), "sex": 0 male / 1 female (UTKFace's coding)}``, float32/int64."""
        self.crop_for(layout)  # an unknown layout is refused before any work

        def run(x: torch.Tensor) -> dict[str, np.ndarray]:
            age, logits = self(x.float(), layout)
            p_male = torch.softmax(logits, dim=1)[:, 0]
            return {"age": age.cpu().numpy().astype(np.float32), "p_male": p_male.cpu().numpy().astype(np.float32)}

        with evaluating(self):
            out = predict_batched(run, images, batch_size)
        out["sex"] = (out["p_male"] < 0.5).astype(np.int64)
        return out


SPEC = register_labeller(LabellerSpec(
    "faceapi-agegender", AgeGenderLabeller, AgeGenderLabeller.attributes,
    "age (years, regression) and sex (P(male); sex 0 = male, 1 = female) from face-api.js's AgeGenderNet",
    "AgeGenderNet (TinyXception) via @vladmandic/face-api@1.7.15", "MIT"))
