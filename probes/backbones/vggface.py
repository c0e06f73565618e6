"""VGG group face networks whose weights the user brings.

``vgg16-vggface``
    VGG-Face (Parkhi, Vedaldi & Zisserman, BMVC 2015): VGG16 convolutions,
    fc6 and fc7 (4096 each) and an fc8 over 2622 identities. The descriptor is
    fc7 after its ReLU (4096-D). Input 224 x 224 RGB in 0..255 minus the mean
    [129.1863, 104.7624, 93.5940], std 1. Loaded from ``vgg_face_dag.pth``,
    Samuel Albanie's PyTorch conversion (pytorch-mcn) of the MatConvNet model,
    whose keys are ``conv1_1.weight`` ... ``conv5_3.bias``, ``fc6.weight``
    [4096, 25088], ``fc7.weight`` [4096, 4096], ``fc8.weight`` [2622, 4096].

``resnet50-vggface2``
    Cao et al., "VGGFace2" (FG 2018), ``resnet50_ft`` (MS1M pre-training then
    VGGFace2 fine-tuning): a Caffe ResNet-50, global average pool, 2048-D.
    Input 224 x 224 **BGR** minus [91.4953, 103.8827, 131.0912] (BGR order),
    std 1. Loaded from ``resnet50_ft_weight.pkl`` (cydonia999/VGGFace2-pytorch:
    a Python 2 pickle of {torchvision-style name: numpy array}, fc over 8631
    identities included) or from a PyTorch state dict with the same names.

The pickle is read by :mod:`probes.safe_pickle`, which only lets numpy
arrays be rebuilt: a pickle naming any other global is refused before that
global is imported, so a hostile file cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from .. import weights as weight_store
from ..safe_pickle import read_numpy_pickle
from ..weight_files import (
    existing_file,
    load_named_tensors,
    read_torch_state,
    user_weights_required,
    with_default_counters,
)
from .registry import BackboneSpec, register_backbone

# ---------------------------------------------------------------------------
# VGG-Face


# (block, number of 3x3 convs, channels): VGG16's configuration.
_VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


class VGGFace(nn.Module):
    """VGG-Face with the module names of ``vgg_face_dag`` (conv1_1 ... fc7).

    Written out rather than taken from timm's ``vgg16`` because timm's head is
    a 7x7 conv + 1x1 conv (``pre_logits.fc1/fc2``) with in-place ReLUs and an
    adaptive pool that silently accepts other sizes: here the names are the
    public file's, so it loads without renaming, fc6 is the original Linear
    on the flattened (C, H, W) pool5, and every tap is a separate, non in-place
    module whose output a hook sees unmodified. fc8 (2622 training
    identities) is dropped: the descriptor is fc7 after ReLU. The dropout
    layers of training are left out (inference only).
    """

    def __init__(self):
        super().__init__()
        cin = 3
        for block, convs, cout in _VGG_BLOCKS:
            for i in range(1, convs + 1):
                self.add_module(f"conv{block}_{i}", nn.Conv2d(cin, cout, 3, 1, 1))
                self.add_module(f"relu{block}_{i}", nn.ReLU())
                cin = cout
            self.add_module(f"pool{block}", nn.MaxPool2d(2, 2))
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.relu6 = nn.ReLU()
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, convs, _ in _VGG_BLOCKS:
            for i in range(1, convs + 1):
                x = getattr(self, f"relu{block}_{i}")(getattr(self, f"conv{block}_{i}")(x))
            x = getattr(self, f"pool{block}")(x)
        x = self.relu6(self.fc6(torch.flatten(x, 1)))
        return self.relu7(self.fc7(x))


VGGFACE_RELEASE = ("vgg_face_dag.pth, Samuel Albanie's PyTorch conversion of VGG-Face (Parkhi et al. 2015), "
                   "from https://www.robots.ox.ac.uk/~albanie/pytorch-models.html (pytorch-mcn)")
VGGFACE_FORMATS = ("a PyTorch state dict (.pth/.pt) with vgg_face_dag's keys conv1_1.weight ... conv5_3.bias, "
                   "fc6.*, fc7.* (fc8.* optional, unused)")


def load_vggface(net: nn.Module, weights: Path | None) -> str:
    if weights is None:
        raise user_weights_required("vgg16-vggface", VGGFACE_RELEASE, VGGFACE_FORMATS)
    path = existing_file(weights, "vgg16-vggface")
    load_named_tensors(net, read_torch_state(path), str(path), ignore=("fc8.weight", "fc8.bias"))
    return weight_store.sha256_of(path)


# Crops. LFW's 250x250 frames come from Viola-Jones boxes enlarged 2.2x, so
# the face box is the central ~0.45 of the frame (a mean of LFW frames puts
# the eyes at 45% height, 18% of the width apart). VGG-Face was trained on
# loose detector crops, so take 1.3x that box; VGGFace2 enlarges the box by
# 1.3 and centre-crops 224 of 256 (x0.875), about 0.5 of the LFW frame.
# UTKFace's 200x200 chips already hold the face with a small margin (eyes 42%
# of the width apart): the full frame is the closest crop without padding.
# These are geometric estimates; tune them on LFW DevTrain once real weights
# are at hand, never on the test folds.
SPEC_VGGFACE = register_backbone(BackboneSpec(
    name="vgg16-vggface",
    builder=VGGFace,
    loader=load_vggface,
    input_size=(224, 224),
    mean=(129.1863, 104.7624, 93.5940),
    std=(1.0, 1.0, 1.0),
    colour_order="RGB",
    embedding_size=4096,
    embedding_layer="relu7",
    tap_layers=("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "relu6", "fc7", "relu7"),
    weight_files=("vgg_face_dag.pth",),
    source="VGG-Face (Parkhi, Vedaldi & Zisserman 2015), PyTorch conversion vgg_face_dag.pth by S. Albanie "
           "(pytorch-mcn); user-supplied",
    licence="VGG-Face model: non-commercial research use (see the VGG-Face page); not redistributed here",
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.2, 0.2, 0.6, 0.6), "utkface": (0.0, 0.0, 1.0, 1.0)},
    l2_normalise=True,
    notes="user-supplied weights; descriptor is fc7 after ReLU (4096-D), compared after L2 normalisation; "
          "fc8 (2622 identities) is not loaded",
))


# ---------------------------------------------------------------------------
# VGGFace2 ResNet-50


class VGGFace2ResNet50(nn.Module):
    """The Caffe ResNet-50 of VGGFace2, built from timm's ``resnet50`` blocks.

    Two Caffe details differ from torchvision/timm and change every output:

    - the stem max-pool is 3x3 stride 2 with *no* padding and ceil rounding
      (56x56 from 112x112 like timm's padded pool, but over shifted windows);
    - in the first bottleneck of layers 2-4 the stride 2 sits on the 1x1
      ``conv1`` (the original MSRA ResNet), not on the 3x3 ``conv2`` as in
      timm (the "ResNet v1.5" variant). Moving the stride keeps every weight
      shape and name, so we build timm's blocks and swap the two strides.

    Submodules keep timm's (= the file's) names, so the state dict matches
    ``resnet50_ft_weight.pkl`` key for key; ``stem`` and ``embedding`` are
    parameter-free tap points. The 8631-way ``fc`` is not built.
    """

    def __init__(self):
        super().__init__()
        base = timm.create_model("resnet50", pretrained=False, num_classes=0)
        self.conv1, self.bn1, self.act1 = base.conv1, base.bn1, base.act1
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.stem = nn.Identity()
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        for layer in (self.layer2, self.layer3, self.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
        # The original uses AvgPool2d(7) on the 7x7 map of a 224 input: the same as a global mean.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.embedding = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.maxpool(self.act1(self.bn1(self.conv1(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.embedding(self.pool(x))


RESNET_RELEASE = ("resnet50_ft_weight.pkl, the VGGFace2 authors' Caffe resnet50_ft converted by "
                  "cydonia999/VGGFace2-pytorch (linked from its README; Caffe originals on the VGGFace2 page)")
RESNET_FORMATS = ("a pickle of {name: numpy array} with torchvision ResNet-50 names (conv1.weight, "
                  "bn1.running_mean, layer1.0.conv1.weight, ..., fc.*; .pkl/.pickle, read without running "
                  "pickled code), or a PyTorch state dict with the same names (.pth/.pt)")
_BLOCK_TAPS = tuple(f"layer{i}.{b}" for i, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n))


def load_vggface2_resnet(net: nn.Module, weights: Path | None) -> str:
    if weights is None:
        raise user_weights_required("resnet50-vggface2", RESNET_RELEASE, RESNET_FORMATS)
    path = existing_file(weights, "resnet50-vggface2")
    tensors = (read_numpy_pickle(path) if path.suffix.lower() in (".pkl", ".pickle")
               else read_torch_state(path))
    load_named_tensors(net, with_default_counters(net, tensors), str(path), ignore=("fc.weight", "fc.bias"))
    return weight_store.sha256_of(path)


SPEC_RESNET50_VGGFACE2 = register_backbone(BackboneSpec(
    name="resnet50-vggface2",
    builder=VGGFace2ResNet50,
    loader=load_vggface2_resnet,
    input_size=(224, 224),
    mean=(91.4953, 103.8827, 131.0912),
    std=(1.0, 1.0, 1.0),
    colour_order="BGR",
    embedding_size=2048,
    embedding_layer="embedding",
    tap_layers=("stem", "layer1", "layer2", "layer3", "layer4") + _BLOCK_TAPS + ("pool", "embedding"),
    weight_files=("resnet50_ft_weight.pkl",),
    source="VGGFace2 resnet50_ft (Cao, Shen, Xie, Parkhi & Zisserman 2018), Caffe model converted by "
           "cydonia999/VGGFace2-pytorch; user-supplied",
    licence="VGGFace2 models: research use per the VGGFace2 page; not redistributed here",
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.25, 0.25, 0.5, 0.5), "utkface": (0.0, 0.0, 1.0, 1.0)},
    l2_normalise=True,
    notes="user-supplied weights; mean is in BGR order (the network eats BGR); 2048-D pooled feature "
          "compared by cosine; the 8631-identity fc is not loaded; 'pool' and 'embedding' are the same vector",
))
