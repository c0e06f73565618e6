"""``dlib-resnet29``: dlib's face-recognition ResNet, decoded from face-api's manifest.

dlib's ``dlib_face_recognition_resnet_model_v1`` (Davis King, CC0) as ported
to TensorFlow.js by face-api.js (``FaceRecognitionNet``). Architecture facts:

- input 150 x 150 RGB, minus mean [122.782, 117.001, 104.298], divided by 256;
- stem: 7x7 stride-2 VALID conv + bias, dlib's per-channel affine "scale",
  ReLU, 3x3 stride-2 VALID max-pool;
- residual block: conv3x3 SAME + scale + ReLU, conv3x3 SAME + scale, add, ReLU;
- down block: the first conv is 3x3 stride 2 VALID; the shortcut is a 2x2
  average pool zero-padded in channels; when the branches differ in size by
  one, a zero row and column are appended to the conv branch (face-api does
  exactly this, so we must too);
- spatial mean, then a bias-free 256 -> 128 matrix. The descriptor is not
  L2-normalised; dlib's same-person rule is Euclidean distance < 0.6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as weight_store
from ..errors import WeightFileError
from ..tfjs import conv_filter, read_weights_manifest
from ..weight_files import load_named_tensors, read_torch_state
from .registry import BackboneSpec, register_backbone

MANIFEST = "face_recognition_model-weights_manifest.json"
SHARD = "face_recognition_model.bin"


class ConvScale(nn.Module):
    """Conv (with bias) followed by dlib's per-channel affine layer."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.scale_weight = nn.Parameter(torch.ones(cout))
        self.scale_bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale_weight.view(1, -1, 1, 1) + self.scale_bias.view(1, -1, 1, 1)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvScale(3, 32, 7, 2, 0)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvScale(channels, channels, 3, 1, 1)
        self.conv2 = ConvScale(channels, channels, 3, 1, 1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvScale(cin, cout, 3, 2, 0)
        self.conv2 = ConvScale(cout, cout, 3, 1, 1)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2)
        if out.shape[-2:] != shortcut.shape[-2:]:
            out = F.pad(out, (0, shortcut.shape[-1] - out.shape[-1], 0, shortcut.shape[-2] - out.shape[-2]))
        if shortcut.shape[1] != out.shape[1]:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))
        return F.relu(out + shortcut)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


# (name, block) in face-api's order; every name is a tap point.
_BLOCKS = [("conv32_down", lambda: Stem())]
_BLOCKS += [(f"conv32_{i}", lambda: ResidualBlock(32)) for i in (1, 2, 3)]
_BLOCKS += [("conv64_down", lambda: DownBlock(32, 64))]
_BLOCKS += [(f"conv64_{i}", lambda: ResidualBlock(64)) for i in (1, 2, 3)]
_BLOCKS += [("conv128_down", lambda: DownBlock(64, 128))]
_BLOCKS += [(f"conv128_{i}", lambda: ResidualBlock(128)) for i in (1, 2)]
_BLOCKS += [("conv256_down", lambda: DownBlock(128, 256))]
_BLOCKS += [(f"conv256_{i}", lambda: ResidualBlock(256)) for i in (1, 2)]
_BLOCKS += [("conv256_down_out", lambda: DownBlock(256, 256))]


class DlibResNet(nn.Module):
    """dlib's 29-layer face ResNet; each block is a named, hookable submodule."""

    def __init__(self):
        super().__init__()
        for name, make in _BLOCKS:
            self.add_module(name, make())
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        for name, _ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc(self.pool(x))


def _faceapi_to_state(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """face-api tensor names -> this module's state-dict keys (TF layouts converted)."""
    state = {}
    for name, value in tensors.items():
        parts = name.split("/")
        if name == "fc":
            state["fc.weight"] = value.T
            continue
        block, rest = parts[0], parts[1:]
        prefix = f"{block}.conv" if block == "conv32_down" else f"{block}.{rest.pop(0)}"
        kind, field = rest
        if kind == "conv":
            state[f"{prefix}.conv.weight" if field == "filters" else f"{prefix}.conv.bias"] = (
                conv_filter(value) if field == "filters" else value)
        elif kind == "scale":
            state[f"{prefix}.scale_weight" if field == "weights" else f"{prefix}.scale_bias"] = value
        else:
            raise WeightFileError(f"unexpected tensor {name!r} in the FaceRecognitionNet manifest")
    return state


def load_dlib_resnet(net: nn.Module, weights: Path | None) -> str:
    """Load face-api's manifest (default: the cached one) or a PyTorch state dict."""
    if weights is None:
        manifest = weight_store.weight_path(MANIFEST)
        weight_store.weight_path(SHARD)  # verifies the shard against its pinned sha256
        tensors = read_weights_manifest(manifest)
        load_named_tensors(net, _faceapi_to_state(tensors), str(manifest))
        return weight_store.WEIGHT_FILES[SHARD].sha256
    weights = Path(weights)
    if not weights.is_file():
        raise WeightFileError(f"weight file {weights} does not exist")
    if weights.suffix == ".json":
        load_named_tensors(net, _faceapi_to_state(read_weights_manifest(weights)), str(weights))
    else:
        load_named_tensors(net, read_torch_state(weights), str(weights))
    return weight_store.sha256_of(weights)


SPEC = register_backbone(BackboneSpec(
    name="dlib-resnet29",
    builder=DlibResNet,
    loader=load_dlib_resnet,
    input_size=(150, 150),
    mean=(122.782, 117.001, 104.298),
    std=(256.0, 256.0, 256.0),
    colour_order="RGB",
    embedding_size=128,
    embedding_layer="fc",
    tap_layers=tuple(name for name, _ in _BLOCKS) + ("pool", "fc"),
    weight_files=(MANIFEST, SHARD),
    source="dlib_face_recognition_resnet_model_v1 via @vladmandic/face-api@1.7.15 (FaceRecognitionNet)",
    licence="CC0 (dlib model), MIT (face-api.js port)",
    # LFW's 250x250 frames hold the face in their centre; UTKFace crops are
    # looser than dlib's chips. Both crops were chosen on LFW's DevTrain /
    # UTKFace pairs (experiments/lfw_verification.py), never on the test folds.
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.3, 0.25, 0.5, 0.5), "utkface": (0.1, 0.1, 0.8, 0.8)},
    pad_to_square=True,
    verification_metric="euclidean",
    # The median five landmark points of 300 LFW DevTrain faces seen through
    # the "lfw" crop, made left-right symmetric: aligning onto it removes each
    # face's own tilt, scale and shift (experiments/lfw_verification.py --align landmarks).
    align_template=((49.0, 44.9), (101.0, 44.9), (75.0, 77.6), (52.9, 101.9), (97.1, 101.9)),
    notes="descriptor is not L2-normalised; dlib's rule: same person if L2 distance < 0.6",
))
