"""``small-facenet``: a compact face-recognition ResNet that faceprobe trains itself.

Meant for watching what a face network learns *while* it learns (Dhar et al.,
FG 2020, report attribute information falling over training while identity
information rises): it is small enough to train on CPU in minutes, and every
checkpoint of a run loads as a backbone. The weights are the user's: pass
``weights=`` a training checkpoint of :mod:`probes.training.identity` (its
``models["backbone"]`` is read) or a plain state dict; ``pretrained=False``
gives the random initialisation (step 0 of a run, up to its seed).

Architecture (64 x 64 RGB in, [0, 255] -> (x - 127.5) / 128):

- ``stem``: 3x3 conv stride 2 (32 x 32), BatchNorm, ReLU;
- ``stage1`` .. ``stage4``: one basic residual block each (two 3x3 convs with
  BatchNorm; a strided 1x1 conv + BatchNorm shortcut where the shape changes),
  widths 16, 32, 64, 128 at 32, 16, 8, 4 pixels;
- ``pool``: global average (128-D; not a tap: it equals ``stage4`` average-pooled);
- ``embedding``: Linear 128 -> 128 + BatchNorm1d (the "FC-BN" neck of
  ArcFace-style nets), compared by cosine.

About 16 M multiply-adds and 0.3 M parameters per network: a training step on
64 faces takes under a second on one CPU core. The tap layers are the stem's and
the stages' outputs and the embedding, so a probe sees the network coarse to fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .. import weights as weight_store
from ..errors import WeightFileError
from ..weight_files import existing_file, load_named_tensors, read_torch_state
from .registry import BackboneSpec, register_backbone

NAME = "small-facenet"
INPUT_SIZE = 64
WIDTHS = (16, 32, 64, 128)
EMBEDDING_SIZE = 128


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm with a residual shortcut (1x1 conv where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(y + self.shortcut(x))


class SmallFaceNet(nn.Module):
    """The network behind ``small-facenet``; every tap layer is a named submodule run once per forward."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, embedding_size: int = EMBEDDING_SIZE):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        cin = widths[0]
        for i, cout in enumerate(widths, start=1):
            self.add_module(f"stage{i}", BasicBlock(cin, cout, 1 if i == 1 else 2))
            cin = cout
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.embedding = nn.Sequential(nn.Linear(cin, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))
        self.n_stages = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return self.embedding(self.pool(x))


def read_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """The network's tensors from a training checkpoint (``models["backbone"]``) or a plain state dict.

    Read with ``torch.load(weights_only=True)``: no code in the file runs.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor files
        raise WeightFileError(f"{path} is not readable with torch.load(weights_only=True): {exc}") from exc
    models = state.get("models") if isinstance(state, Mapping) else None
    if isinstance(models, Mapping):
        if not isinstance(models.get("backbone"), Mapping):
            raise WeightFileError(f"{path} is a training checkpoint without a 'backbone' model "
                                  f"(it holds {', '.join(map(str, models)) or 'none'})")
        state = dict(models["backbone"])
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightFileError(f"{path}: models['backbone'] is not a state dict of named tensors")
        return state
    return read_torch_state(path)


def load_small_facenet(net: nn.Module, weights: Path | None) -> str:
    if weights is None:
        raise WeightFileError(
            f"backbone {NAME!r} needs weights=PATH: a checkpoint of your own training run "
            "(probes.training.identity.train_identity_network writes RUN/checkpoints/step_XXXXXXX.pt) "
            "or a state dict "
            "saved with torch.save(net.state_dict(), path); pass pretrained=False for random weights")
    path = existing_file(weights, NAME)
    load_named_tensors(net, read_backbone_state(path), str(path))
    return weight_store.sha256_of(path)


SPEC = register_backbone(BackboneSpec(
    name=NAME,
    builder=SmallFaceNet,
    loader=load_small_facenet,
    input_size=(INPUT_SIZE, INPUT_SIZE),
    mean=(127.5, 127.5, 127.5),
    std=(128.0, 128.0, 128.0),
    colour_order="RGB",
    embedding_size=EMBEDDING_SIZE,
    embedding_layer="embedding",
    # No "pool" tap: the average-pooled capture of stage4 is exactly its output.
    tap_layers=("stem", "stage1", "stage2", "stage3", "stage4", "embedding"),
    weight_files=(),
    source="faceprobe's own small ResNet (probes/backbones/small_facenet.py), trained by "
           "probes.training.identity; user-supplied checkpoints",
    licence="code: the project's licence; trained weights inherit the terms of the faces they were trained on",
    # dlib-resnet29's crops (chosen on LFW DevTrain and UTKFace): the face with little background.
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.3, 0.25, 0.5, 0.5), "utkface": (0.1, 0.1, 0.8, 0.8)},
    l2_normalise=True,
    notes="trained by the user (identity loss on their faces); embeddings compared by cosine",
))
