"""insightface ArcFace ResNet-50 (``iresnet50``), weights brought by the user.

``arcface-r50``
    insightface's "improved" ResNet-50 of arcface_torch (Deng et al., ArcFace,
    CVPR 2019): pre-activation basic blocks (BN, conv3x3, BN, PReLU, conv3x3
    with the stride, BN; no ReLU after the sum), layers [3, 4, 14, 3], every
    stage halving the map, then BN2d, flatten (512 x 7 x 7), fc to 512 and a
    BatchNorm1d (``features``). Input 112 x 112 RGB aligned chips,
    (x - 127.5) / 127.5. Loads arcface_torch's ``backbone.pth`` state dict
    (e.g. ``ms1mv3_arcface_r50_fp16/backbone.pth`` of its model zoo).

``arcface-r50-onnx``
    The same network run by onnxruntime from an ONNX file such as
    ``w600k_r50.onnx`` (recognition model of insightface's ``buffalo_l``
    pack). A graph exposes no named inner layers, so this backbone offers the
    final embedding only (tap ``embedding``) and is not differentiable.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import weights as weight_store
from ..errors import WeightFileError
from ..geometry import ARCFACE_CROPS, ARCFACE_TEMPLATE_112
from ..weight_files import (
    existing_file,
    load_named_tensors,
    read_torch_state,
    user_weights_required,
    with_default_counters,
)
from .onnx_runtime import OnnxEmbedder
from .registry import BackboneSpec, register_backbone

IRESNET50_LAYERS = (3, 4, 14, 3)
EMBEDDING_SIZE = 512


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """insightface's pre-activation block; names match ``backbone.pth``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """arcface_torch's IResNet for 112 x 112 input (``stem`` is a parameter-free tap point)."""

    def __init__(self, layers: tuple[int, ...] = IRESNET50_LAYERS, num_features: int = EMBEDDING_SIZE,
                 widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        self.stem = nn.Identity()
        cin = widths[0]
        for i, (blocks, cout) in enumerate(zip(layers, widths), start=1):
            self.add_module(f"layer{i}", nn.Sequential(
                *[IBasicBlock(cin if b == 0 else cout, cout, 2 if b == 0 else 1) for b in range(blocks)]))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        # 112 is halved by each of the four stages: a 7 x 7 map reaches fc. The
        # training-time dropout (p=0 in the released configs) is left out.
        self.fc = nn.Linear(cin * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def iresnet50() -> IResNet:
    return IResNet(IRESNET50_LAYERS)


ARCFACE_RELEASE = ("backbone.pth of an insightface arcface_torch R50 model (e.g. ms1mv3_arcface_r50_fp16 "
                   "from the arcface_torch model zoo, github.com/deepinsight/insightface, "
                   "recognition/arcface_torch)")
ARCFACE_FORMATS = ("a PyTorch state dict (.pth/.pt) with arcface_torch's iresnet50 keys (conv1.weight, "
                   "bn1.*, prelu.weight, layer1.0.bn1.* ... bn2.*, fc.weight [512, 25088], features.*); "
                   "an ONNX file goes to backbone 'arcface-r50-onnx'")


def load_arcface(net: nn.Module, weights: Path | None) -> str:
    if weights is None:
        raise user_weights_required("arcface-r50", ARCFACE_RELEASE, ARCFACE_FORMATS)
    path = existing_file(weights, "arcface-r50")
    if path.suffix.lower() == ".onnx":
        raise WeightFileError(
            f"{path} is an ONNX graph, not named tensors: load it with "
            f"create_backbone('arcface-r50-onnx', weights=...) (final embedding only, no tap layers)")
    load_named_tensors(net, with_default_counters(net, read_torch_state(path)), str(path))
    return weight_store.sha256_of(path)


ONNX_RELEASE = ("w600k_r50.onnx, the recognition model in insightface's buffalo_l model pack "
                "(github.com/deepinsight/insightface, python-package model zoo)")
ONNX_FORMATS = "an ONNX graph (.onnx) with one input [N, 3, 112, 112] (RGB, (x-127.5)/127.5) and one output [N, 512]"


def load_arcface_onnx(net: nn.Module, weights: Path | None) -> str:
    if weights is None:
        raise user_weights_required("arcface-r50-onnx", ONNX_RELEASE, ONNX_FORMATS)
    path = existing_file(weights, "arcface-r50-onnx")
    net.load(path)
    return weight_store.sha256_of(path)


_BLOCK_TAPS = tuple(f"layer{i}.{b}" for i, n in enumerate(IRESNET50_LAYERS, start=1) for b in range(n))

# Crops of LFW frames and UTKFace chips for insightface-aligned inputs: see geometry.ARCFACE_CROPS.

SPEC_ARCFACE_R50 = register_backbone(BackboneSpec(
    name="arcface-r50",
    align_template=tuple(map(tuple, ARCFACE_TEMPLATE_112.tolist())),
    builder=iresnet50,
    loader=load_arcface,
    input_size=(112, 112),
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    colour_order="RGB",
    embedding_size=EMBEDDING_SIZE,
    embedding_layer="features",
    tap_layers=("stem", "layer1", "layer2", "layer3", "layer4") + _BLOCK_TAPS + ("bn2", "fc", "features"),
    weight_files=("backbone.pth",),
    source="insightface arcface_torch iresnet50 (Deng et al., ArcFace 2019); user-supplied backbone.pth",
    licence="insightface code MIT; its pretrained models are for non-commercial research only",
    crops=ARCFACE_CROPS,
    l2_normalise=True,
    notes="user-supplied weights; expects 5-point aligned 112x112 chips; compare by cosine",
))

SPEC_ARCFACE_R50_ONNX = register_backbone(BackboneSpec(
    name="arcface-r50-onnx",
    align_template=tuple(map(tuple, ARCFACE_TEMPLATE_112.tolist())),
    builder=OnnxEmbedder,
    loader=load_arcface_onnx,
    input_size=(112, 112),
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    colour_order="RGB",
    embedding_size=EMBEDDING_SIZE,
    embedding_layer="embedding",
    tap_layers=("embedding",),
    weight_files=("w600k_r50.onnx",),
    source="insightface buffalo_l w600k_r50.onnx (iresnet50 trained on WebFace600K); user-supplied",
    licence="insightface pretrained models: non-commercial research only",
    crops=ARCFACE_CROPS,
    l2_normalise=True,
    notes="runs in onnxruntime: final embedding only (no inner tap layers), no gradients; for layers and "
          "gradients use 'arcface-r50' with a PyTorch backbone.pth",
))
